"""The report's figures show what its tables show, under the same names: the clean train accuracy
and the kept epoch's validation accuracy where the tables print them, Keras's running figure
only under its own label; plugin metrics by their names; which plugin built each cell."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_report import ENVIRONMENT, fake_run

from regbench.reporting import board_figures, figures
from regbench.reporting.report import write_report
from regbench.reporting.tables import leaderboard
from regbench.results.format import MISSING, fmt
from regbench.results.leaderboard import LOST_NOTE, table
from regbench.results.reader import load
from regbench.results.store import Store

pytestmark = pytest.mark.xdist_group("report_figures")  # one worker writes the report fixture

EPOCHS = 3
CELLS = (("model1", "none"), ("model1", "dropout"), ("model2", "none"), ("model2", "dropout"))
SEEDS = (0, 1)
METRIC = "weight_norm"  # what a plugin's callback logs per epoch, only in dropout cells
RUNNING = "train (running, training mode)"
CLEAN = figures.END_LABELS["train"]
KEPT_VAL = figures.END_LABELS["val"]


def run_id(arch: str, reg: str, seed: int) -> str:
    return f"{arch}-{reg}-s{seed}-0000"


def trained(arch: str, reg: str, seed: int) -> tuple[dict, list[dict]]:
    """A run as the trainer now records it: a clean train accuracy far below Keras's running
    one (as with batch norm), dropout cells keep their second epoch's weights (a callback
    restored them) and log a metric of their own; no test accuracy outside `final`."""
    row, epochs = fake_run(run_id(arch, reg, seed), arch, reg, seed, EPOCHS)
    kept = 2 if reg == "dropout" else EPOCHS
    at = {(e["split"], e["metric"]): e["value"] for e in epochs if e["epoch"] == kept}
    row |= {
        "params": {},  # one setting per cell: lines are named without one
        "kept_epoch": kept,
        "val_accuracy": at[("val", "accuracy")],
        "val_loss": at[("val", "loss")],
        "train_accuracy": at[("train", "accuracy")] - 0.25,
        "train_loss": at[("train", "loss")] + 0.5,
        "train_accuracy_running": at[("train", "accuracy")],
        "reg_source": "regbench 0.2.0" if reg == "none" else "noisy-plugin 1.0",
        "reg_source_hash": f"{reg}-code",
    }
    if reg == "dropout":
        epochs += [
            {"epoch": e, "split": split, "metric": METRIC, "value": 10.0 + e + (split == "val")}
            | {"elapsed_s": float(e)}
            for e in range(1, EPOCHS + 1)
            for split in ("train", "val")
        ]
    return row, epochs


def failed(arch: str, reg: str, seed: int) -> dict:
    """A seed of the same cell and protocol that ended in an error."""
    row, _ = fake_run(run_id(arch, reg, seed), arch, reg, seed, EPOCHS)
    kept = ("run_id", "config_hash", "stage", "arch", "reg", "params", "seed", "dataset")
    kept += ("epochs", "batch_size", "optimizer", *ENVIRONMENT)
    return {k: row[k] for k in kept} | {"status": "error", "error": "boom"}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("experiment")
    store = Store(folder)
    try:
        for arch, reg in CELLS:
            for seed in SEEDS:
                store.record_run(*trained(arch, reg, seed))
        store.record_run(failed("model2", "none", 2), [])  # a lost seed
        combo, epochs = trained("model1", "dropout+l2", 0)
        source = {"reg_source": "noisy-plugin 1.0+regbench 0.2.0", "reg_source_hash": "d+l"}
        store.record_run(combo | source, epochs)
        # the same name built by other code (an upgraded plugin): listed twice
        newer, epochs = trained("model2", "dropout", 5)
        store.record_run(newer | {"reg_source": "noisy-plugin 1.1"}, epochs)
    finally:
        store.close()
    return folder


@pytest.fixture(scope="module")
def results(experiment):
    return load(experiment)


@pytest.fixture(scope="module")
def report(experiment, tmp_path_factory) -> dict[str, Path]:
    return write_report(experiment, tmp_path_factory.mktemp("report"))


def labelled(ax) -> dict[str, list]:
    """Every labelled line of a panel (curves and marks), label -> (xs, ys)."""
    found = {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines
    }
    for container in ax.containers:  # an error bar's mark: its data line carries no label
        data = container.lines[0]
        found[container.get_label()] = (list(data.get_xdata()), list(data.get_ydata()))
    return {k: v for k, v in found.items() if not k.startswith("_")}


def ok_runs(runs: pd.DataFrame) -> list[dict]:
    return runs[runs["status"] == "ok"].to_dict("records")


# ---------------------------------------------------------------- one run's figure


def test_a_runs_figure_marks_the_tables_figures_at_the_kept_epoch(results):
    runs, epochs = results
    for run in ok_runs(runs):
        figure = figures.accuracy_figure(epochs, run)
        accuracy, loss = figure.axes[:2]
        shown = labelled(accuracy)
        assert shown[CLEAN] == ([run["kept_epoch"]], [pytest.approx(run["train_accuracy"])])
        assert shown[KEPT_VAL] == ([run["kept_epoch"]], [pytest.approx(run["val_accuracy"])])
        assert labelled(loss)[CLEAN][1] == [pytest.approx(run["train_loss"])]
        # Keras's running figure stays, under its own label, and is not the table's figure
        mine = epochs[(epochs["run_id"] == run["run_id"]) & (epochs["split"] == "train")]
        running = mine[mine["metric"] == "accuracy"].sort_values("epoch")["value"]
        assert shown[RUNNING][1] == pytest.approx(list(running))
        assert run["train_accuracy"] not in shown[RUNNING][1]
        # the kept epoch is drawn where it is not the last
        assert (figures.KEPT_LABEL in shown) == (run["kept_epoch"] < EPOCHS)


@pytest.mark.slow
def test_the_html_prints_the_marked_clean_train_accuracy(report, results):
    runs, _ = results
    text = html.unescape(report["html"].read_text(encoding="utf-8"))
    for run in ok_runs(runs):
        clean = fmt(run["train_accuracy"], ".3f")
        assert f"val acc {fmt(run['val_accuracy'], '.3f')} · train acc (clean) {clean}" in text
        assert "test acc" not in text.split(run["run_id"])[1].split("</div>")[0]


# ---------------------------------------------------------------- the grid


def test_the_grid_marks_the_leaderboards_means(results):
    runs, epochs = results
    board = table(runs, epochs).set_index(["arch", "reg"])
    figure = figures.grid_figure(runs, epochs)
    for ax in figure.axes:
        _, arch, reg = ax.get_label().split(":")
        shown = labelled(ax)
        if (arch, reg) not in board.index:  # model2 never ran dropout+l2
            assert shown == {}
            continue
        cell = board.loc[(arch, reg)]
        assert shown[CLEAN][1] == [pytest.approx(cell["train_accuracy"])]
        assert shown[KEPT_VAL][1] == [pytest.approx(cell["val_accuracy"])]
        assert shown[CLEAN][0] == [2 if reg == "dropout" else EPOCHS]  # kept
        assert RUNNING in shown and "validation" in shown
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == [RUNNING, "validation", CLEAN, KEPT_VAL]


@pytest.mark.slow
def test_no_figure_calls_two_things_train(results):
    """Every line named train is either Keras's running figure or the clean one, said so."""
    runs, epochs = results
    drawn = [figures.grid_figure(runs, epochs), figures.metric_figure(runs, epochs, METRIC)]
    drawn += [figures.accuracy_figure(epochs, run) for run in ok_runs(runs)]
    names = set()
    for figure in drawn:
        names |= {t.get_text() for legend in figure.legends for t in legend.get_texts()}
        for ax in figure.axes:
            names |= set(labelled(ax))
    trains = {name for name in names if name.startswith("train")}
    assert {RUNNING, CLEAN} <= trains
    assert all(name.startswith((RUNNING, CLEAN)) for name in trains)


# ---------------------------------------------------------------- the cells' figures


def test_ci_bars_print_each_cell_as_the_leaderboard_does(results):
    runs, epochs = results
    board = table(runs, epochs)
    (ranking,) = leaderboard(board, "none")
    column = ranking.table.headers.index("val acc ± 95% CI")
    printed = [row[column] for row in ranking.table.rows]
    figure = board_figures.ci_bar_figure(board)
    (ax,) = [a for a in figure.axes if a.get_label() == "ci"]
    labels = [t.get_text() for t in ax.child_axes[0].get_yticklabels()]
    assert [label.rsplit(" (n=", 1)[0] for label in labels] == printed


# ---------------------------------------------------------------- plugin metrics


def test_a_plugins_metric_gets_its_own_figure_and_panels_by_its_name(report, results):
    runs, epochs = results
    assert figures.plugin_metrics(epochs) == [METRIC]
    assert (report["figures"] / f"metric-{METRIC}.png").is_file()
    text = report["html"].read_text(encoding="utf-8")
    assert f'alt="{METRIC} as logged per epoch' in text
    md = report["markdown"].read_text(encoding="utf-8")
    assert f"](figures/metric-{METRIC}.png)" in md
    figure = figures.metric_figure(runs, epochs, METRIC)
    for ax in figure.axes:
        shown = labelled(ax)
        if ax.get_label().endswith(":dropout"):
            assert len(shown) == 2 and shown[f"val_{METRIC}"]
            assert shown[METRIC] == ([1, 2, 3], [11.0, 12.0, 13.0])
        else:
            empty = "no ok runs" if ax.get_label() == "cell:model2:dropout+l2" else None
            assert shown == {} and [t.get_text() for t in ax.texts] == [
                empty or f"no {METRIC} logged"
            ]
    # and in the run's own figure, a third panel under its name
    (run,) = [r for r in ok_runs(runs) if r["run_id"] == run_id("model1", "dropout", 0)]
    panel = figures.accuracy_figure(epochs, run).axes[2]
    assert panel.get_label() == METRIC and panel.get_ylabel() == METRIC
    assert set(labelled(panel)) >= {METRIC, f"val_{METRIC}"}


@pytest.mark.slow
def test_runs_without_plugin_metrics_draw_no_metric_figure(tmp_path):
    store = Store(tmp_path)
    store.record_run(*fake_run("model1-none-s0", "model1", "none", 0, 2))
    store.close()
    paths = write_report(tmp_path)
    assert not list(paths["figures"].glob("metric-*.png"))
    assert len(figures.accuracy_figure(load(tmp_path).epochs, "model1-none-s0").axes) == 2


# ---------------------------------------------------------------- provenance


def test_the_report_says_which_plugin_built_each_cell(report):
    md = report["markdown"].read_text(encoding="utf-8")
    section = md[md.index("## Plugins") : md.index("## Environment")]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == ["| kind", "name", "distribution", "source hash", "runs |"]
    found = {tuple(r[:4]) + (r[4].rstrip(" |"),) for r in rows[1:]}
    assert found == {
        ("| architecture", "model1", "regbench 0.2.0", "model1-code", "5"),
        ("| architecture", "model2", "regbench 0.2.0", "model2-code", "5"),
        ("| regularizer", "none", "regbench 0.2.0", "none-code", "4"),
        ("| regularizer", "dropout", "noisy-plugin 1.0", "dropout-code", "4"),
        ("| regularizer", "dropout", "noisy-plugin 1.1", "dropout-code", "1"),
        ("| regularizer", "dropout+l2", "noisy-plugin 1.0+regbench 0.2.0", "d+l", "1"),
    }
    page = html.unescape(report["html"].read_text(encoding="utf-8"))
    assert '<h2 id="plugins">Plugins</h2>' in page and "noisy-plugin 1.0+regbench 0.2.0" in page


@pytest.mark.slow
def test_an_experiment_without_provenance_says_so(tmp_path):
    store = Store(tmp_path)
    row, epochs = fake_run("model1-none-s0", "model1", "none", 0, 2)
    store.record_run({k: v for k, v in row.items() if "source" not in k}, epochs)
    store.close()
    text = write_report(tmp_path)["markdown"].read_text(encoding="utf-8")
    assert "No run recorded which plugin built it" in text


# ---------------------------------------------------------------- the leaderboard's words


def test_a_lost_seed_is_marked_as_the_terminal_marks_it(report):
    text = html.unescape(report["html"].read_text(encoding="utf-8"))
    assert LOST_NOTE in text
    md = report["markdown"].read_text(encoding="utf-8").split("## Figures")[0]
    (row,) = [
        line for line in md.splitlines() if line.startswith("| ") and " model2 | none " in line
    ]
    assert " | 2/3! | " in row  # ok/planned, as LOST_NOTE says


@pytest.mark.slow
def test_grid_runs_without_test_accuracy_show_no_test_column(report, tmp_path):
    assert "test acc" not in report["markdown"].read_text(encoding="utf-8").split("## Figures")[0]
    # an older experiment whose grid runs were evaluated on test still shows it
    store = Store(tmp_path)
    row, epochs = fake_run("model1-none-s0", "model1", "none", 0, 2)
    store.record_run({**row, "test_accuracy": 0.4321}, epochs)
    store.close()
    text = write_report(tmp_path)["html"].read_text(encoding="utf-8")
    assert "test acc (not used for ranking)" in text and "0.432" in text


# ---------------------------------------------------------------- fmt


@given(
    st.one_of(st.none(), st.just(math.nan), st.floats(-1e6, 1e6)),
    st.sampled_from([".3f", "+.3f", ",.0f", ".2e"]),
    st.sampled_from([MISSING, "-", "n/a"]),
)
def test_fmt_says_missing_as_asked(value, spec, missing):
    text = fmt(value, spec, missing=missing)
    if value is None or math.isnan(value):
        assert text == missing and fmt(value, spec) == "-"
    else:
        assert text == fmt(value, spec)  # a value prints the same whatever `missing` says
        assert float(text.replace(",", "")) != 0 or not text.startswith("-")


def test_a_regularizers_colour_is_its_own_in_every_report():
    """batchnorm was green in one report and red in another: colours came from each report's
    own list of regularizers."""
    from regbench.reporting import board_figures

    one = board_figures._colors(["none", "batchnorm"])
    other = board_figures._colors(["dropout", "mixup", "batchnorm", "l2", "none"])
    assert one["batchnorm"] == other["batchnorm"] == board_figures.LAB_COLORS["batchnorm"]
    assert board_figures.reg_color("mixup") == board_figures.reg_color("mixup")
    assert board_figures.reg_color("mixup") not in board_figures.LAB_COLORS.values()


def test_an_interval_past_the_axis_is_cut_with_an_arrowhead():
    import pandas as pd

    from regbench.reporting import board_figures

    board = pd.DataFrame(
        [
            {
                "arch": "model1",
                "reg": "none",
                "params": "",
                "val_accuracy": 0.1,
                "val_ci95": 0.5,
                "val_by_seed": {0: 0.0, 1: 0.2},
                "seeds": 2,
                "planned": 2,
                "ranked": True,
                "protocol": "",
                "failed": 0,
            },
            {
                "arch": "model1",
                "reg": "l2",
                "params": "",
                "val_accuracy": 0.5,
                "val_ci95": 0.1,
                "val_by_seed": {0: 0.45, 1: 0.55},
                "seeds": 2,
                "planned": 2,
                "ranked": True,
                "protocol": "",
                "failed": 0,
            },
        ]
    )
    (ax,) = [a for a in board_figures.ci_bar_figure(board).axes if a.get_label() == "ci"]
    cut = [c for c in ax.collections if c.get_label() == "_interval cut at the axis"]
    assert len(cut) == 1 and cut[0].get_offsets()[0][0] == 0.0  # none's: 0.1 - 0.5 < 0
