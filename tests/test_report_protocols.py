"""The README's own order in one folder (run --epochs 1, tune --epochs 1, run --tuned, report)
trains two protocols: 1 epoch, and the tuned cells at the default 10. The tables rank each
apart; so does every figure: each draws one protocol's runs and names it in its title, file
name and caption, from the cells its table ranks (issues 29.1 and 33.6)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from test_report import fake_experiment

from regbench.reporting import board_figures, figures, gallery
from regbench.reporting.report import write_report
from regbench.reporting.tables import leaderboard as rankings
from regbench.results.leaderboard import table
from regbench.results.reader import load
from regbench.results.store import Store

pytestmark = pytest.mark.xdist_group("report_protocols")  # one worker trains the fixture

FAKE = ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
GRID = ["--dataset", "digits", "--seeds", "1", *FAKE]
PROTOCOLS = ("epochs=1", "epochs=10")


@pytest.fixture(scope="module")
def readme_order(tmp_path_factory) -> Path:
    """`run --epochs 1`, a tuning result (what `tune` records: one real search would take
    minutes here), then `run --tuned` at the default epochs, all in one folder."""
    from regbench.cli import main

    folder = tmp_path_factory.mktemp("digits")
    at = ["--experiment", str(folder)]
    first = ["run", *GRID, "--arch", "model1,model2", "--reg", "none,dropout", "--epochs", "1"]
    assert main([*first, *at]) == 0
    store = Store(folder)
    store.record_best("model1", "dropout", {"rate": 0.3}, 0.5, "search", "digits")
    store.close()
    assert main(["run", *GRID, "--arch", "model1", "--reg", "none,dropout", "--tuned", *at]) == 0
    return folder


@pytest.fixture(scope="module")
def report(readme_order, tmp_path_factory) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gallery, "MAX_RUN_FIGURES", 0)  # the overview is what is tested
        return write_report(readme_order, tmp_path_factory.mktemp("report"))


def titles(figure) -> list[str]:
    texts = [t.get_text() for t in figure.texts] + [ax.get_title() for ax in figure.axes]
    return texts + [t.get_text() for ax in figure.axes for t in ax.texts]  # cd: in its axes


@pytest.mark.slow
def test_each_figure_draws_one_protocol_and_names_it(readme_order):
    runs, epochs = load(readme_order)
    board = table(runs, epochs)
    assert list(dict.fromkeys(board["protocol"])) == list(PROTOCOLS)
    groups = gallery.by_protocol(runs, board)
    assert [(label, suffix) for label, suffix, *_ in groups] == [
        ("epochs=1", "-epochs_1"),
        ("epochs=10", "-epochs_10"),
    ]
    for label, _, mine, cells in groups:
        epochs_of = set(mine["epochs"])
        assert epochs_of == {int(label.split("=")[1])}  # one protocol's runs, no other's
        (ranking,) = [r for r in rankings(board, "none") if r.protocol == label]
        assert ranking.table is not None
        for name, _, figure in gallery.drawings(mine, epochs, cells, label):
            assert any(t.endswith(f"protocol: {label}") for t in titles(figure)), name
            if name == "ci_bars":  # the bars are this protocol's ranking, in its order
                (ax,) = [a for a in figure.axes if a.get_label() == "ci"]
                drawn = [t.get_text() for t in ax.get_yticklabels()]
                table_rows = [f"{r[1]} · {r[2]}" for r in ranking.table.rows]
                assert [d.split(" (")[0] for d in drawn] == table_rows
            if name == "accuracy_vs_time":
                (ax,) = figure.axes
                shown = sum(len(c.get_offsets()) for c in ax.collections)
                assert shown == sum(len(ids) for ids in cells["run_ids"])
            if name == "grid":  # the marks are the means its table prints
                for ax in figure.axes:
                    _, arch, reg = ax.get_label().split(":")
                    marks = [c for c in ax.containers if "validation" in str(c.get_label())]
                    mine_cells = cells[(cells["arch"] == arch) & (cells["reg"] == reg)]
                    assert len(marks) == len(mine_cells)
                    means = sorted(c.lines[0].get_ydata()[0] for c in marks)
                    assert means == pytest.approx(sorted(mine_cells["val_accuracy"]))


@pytest.mark.slow
def test_the_report_files_captions_and_headings_name_each_protocol(report):
    names = {p.name for p in report["figures"].glob("*.png")}
    for name in ("grid", "ci_bars", "accuracy_vs_time"):
        assert {f"{name}-epochs_1.png", f"{name}-epochs_10.png"} <= names
        assert f"{name}.png" not in names  # no figure of both protocols at once
    page = html.unescape(report["html"].read_text(encoding="utf-8"))
    drawn = page.split('<h2 id="figures">')[1].split('<h2 id="tables">')[0]
    assert re.findall(r"<h3>Protocol: (.*?)</h3>", drawn) == list(PROTOCOLS)
    for part, label in zip(drawn.split("<h3>")[1:], PROTOCOLS, strict=True):
        captions = re.findall(r"<figcaption>(.*?)</figcaption>", part)
        # grid, CI bars, time; and the critical-difference diagram where 2+ regularizers rank
        assert len(captions) >= 3 and all(c.endswith(f"protocol: {label}") for c in captions)
    md = report["markdown"].read_text(encoding="utf-8")
    for label in PROTOCOLS:
        slug = label.replace("=", "_")
        assert f"(figures/grid-{slug}.png)" in md and f"; protocol: {label}*" in md
    # a run's row in the lab's tables (and its figure's title) names its protocol too
    assert "model1 with dropout (rate=0.3), seed 0 · epochs=10" in page


def test_a_later_report_leaves_no_figure_an_earlier_one_drew(tmp_path):
    """Figures of an earlier report (each protocol's, or one of both) never linger beside
    the figures the report now draws; what `visualize` and `final` left stays."""
    folder = fake_experiment(tmp_path, archs=("model1",), regs=("none",), seeds=(0,), extras=False)
    stale = ["grid-epochs_1.png", "ci_bars-epochs_10.png", "metric-ece-epochs_1.png"]
    kept = ["final-model1-none-s0-0000.png", "notes.png"]
    (tmp_path / "figures").mkdir(exist_ok=True)
    for name in stale + kept:
        (tmp_path / "figures" / name).write_bytes(b"an earlier figure")
    write_report(folder)
    names = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"grid.png", "ci_bars.png", "accuracy_vs_time.png", *kept} <= names
    assert not names & set(stale)


def test_a_figure_refuses_runs_of_two_protocols(readme_order):
    runs, epochs = load(readme_order)
    with pytest.raises(ValueError, match="2 protocols"):
        figures.grid_figure(runs, epochs)
    with pytest.raises(ValueError, match="2 protocols"):
        board_figures.accuracy_vs_time_figure(runs)
    with pytest.raises(ValueError, match="2 protocols"):
        board_figures.ci_bar_figure(table(runs, epochs))
