"""The report: figures, one self-contained HTML file, Markdown and PNGs of an experiment folder.

Most tests read a synthetic experiment written straight into a Store (realistic rows, no
training) so they run in seconds; one test reports on a really trained tiny experiment.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regbench.errors import RegbenchError
from regbench.reporting import board_figures, figures
from regbench.reporting.report import write_report
from regbench.results.leaderboard import table
from regbench.results.reader import load
from regbench.results.store import Store

pytestmark = pytest.mark.xdist_group("report")  # one worker writes the module's experiment

ARCHS = ("model1", "model2")
REGS = ("none", "dropout")
SEEDS = (0, 1)
EPOCHS = 3
FAILED_ID = "model2-dropout-s2-deadbeef"
FAILED_ERROR = "ValueError: <script>alert('x')</script> | a&b"
FINAL_ID = "final-model2-none-s0-cafef00d"
FINAL_TEST = 0.6125
LAYERS = {
    "model1": [
        ("conv2d", "Conv2D", [None, 32, 32, 64], 1792),
        ("max_pooling2d", "MaxPooling2D", [None, 16, 16, 64], 0),
        ("conv2d_1", "Conv2D", [None, 8, 8, 64], 36928),
        ("max_pooling2d_1", "MaxPooling2D", [None, 4, 4, 64], 0),
        ("flatten", "Flatten", [None, 1024], 0),
        ("dense", "Dense", [None, 10], 10250),
    ],
    "model2": [
        ("conv2d", "Conv2D", [None, 30, 30, 64], 1792),
        ("max_pooling2d", "MaxPooling2D", [None, 15, 15, 64], 0),
        ("flatten", "Flatten", [None, 14400], 0),
        ("dense", "Dense", [None, 100], 1440100),
        ("dense_1", "Dense", [None, 10], 1010),
    ],
}
ENVIRONMENT = {
    "python_version": "3.11.7",
    "tf_version": "2.21.0",
    "keras_version": "3.15.1",
    "regbench_version": "0.1.0",
    "backend": "tensorflow",
    "device": "GPU: NVIDIA H100",
    "host": "lab-node-1",
    "git_revision": "0123456789abcdef",
}


def summary(arch: str) -> dict:
    layers = LAYERS.get(arch, LAYERS["model1"])
    total = sum(p for *_, p in layers)
    return {
        "total_params": total,
        "trainable_params": total,
        "non_trainable_params": 0,
        "layers": [{"name": n, "type": t, "output_shape": s, "params": p} for n, t, s, p in layers],
    }


def fake_run(run_id: str, arch: str, reg: str, seed: int, epochs: int, stage: str = "grid"):
    """One run row and its epochs, shaped like the trainer's (learning curves with noise)."""
    rng = np.random.default_rng(zlib.crc32(f"{arch}/{reg}/{seed}".encode()))
    base = 0.3 + 0.1 * (arch == "model2") + 0.05 * (reg != "none")
    train = [min(0.99, base + 0.12 * e + rng.normal(0, 0.01)) for e in range(epochs)]
    val = [t - 0.05 - 0.02 * e + rng.normal(0, 0.01) for e, t in enumerate(train)]
    splits = {"train": train} if stage == "final" else {"train": train, "val": val}
    rows = [
        {"epoch": e + 1, "split": split, "metric": metric, "value": value, "elapsed_s": e + 1.0}
        for split, accs in splits.items()
        for e, acc in enumerate(accs)
        for metric, value in (("accuracy", acc), ("loss", 2.5 * (1 - acc)))
    ]
    info = summary(arch)
    row = {
        "run_id": run_id,
        "config_hash": run_id,
        "stage": stage,
        "arch": arch,
        "reg": reg,
        "params": {"rate": 0.1} if reg == "dropout" else {},
        "seed": seed,
        "dataset": "cifar10",
        "epochs": epochs,
        "epochs_run": epochs,
        "batch_size": 64,
        "optimizer": "sgd",
        "n_train": 30000 if stage == "final" else 25000,
        "status": "ok",
        "train_accuracy": train[-1],
        "val_accuracy": None if stage == "final" else val[-1],
        "test_accuracy": FINAL_TEST if stage == "final" else None,  # only final reads test
        "train_loss": 2.5 * (1 - train[-1]),
        "val_loss": None if stage == "final" else 2.5 * (1 - val[-1]),
        "kept_epoch": epochs,
        "total_params": info["total_params"],
        "trainable_params": info["trainable_params"],
        "non_trainable_params": 0,
        "train_time_s": 20.0 + 5 * (arch == "model2") + rng.random(),
        "total_time_s": 25.0 + 5 * (arch == "model2"),
        "summary": info,
        "arch_source": "regbench 0.2.0",
        "reg_source": "regbench 0.2.0",
        "arch_source_hash": f"{arch}-code",
        "reg_source_hash": f"{reg}-code",
        "started_at": f"2026-01-01T00:{seed:02d}:00+00:00",
        **ENVIRONMENT,
    }
    return row, rows


def fake_experiment(
    folder: Path, archs=ARCHS, regs=REGS, seeds=SEEDS, epochs: int = EPOCHS, extras: bool = True
) -> Path:
    """A grid of ok runs; with `extras`, also a failed run, a final run and tuning results."""
    store = Store(folder)
    try:
        for arch in archs:
            for reg in regs:
                for seed in seeds:
                    store.record_run(
                        *fake_run(f"{arch}-{reg}-s{seed}-0000", arch, reg, seed, epochs)
                    )
        if extras:
            store.record_run(
                {
                    "run_id": FAILED_ID,
                    "config_hash": FAILED_ID,
                    "stage": "grid",
                    "arch": "model2",
                    "reg": "dropout",
                    "params": {"rate": 0.1},
                    "seed": 2,
                    "status": "error",
                    "error": FAILED_ERROR,
                    **ENVIRONMENT,
                },
                [],
            )
            store.record_run(*fake_run(FINAL_ID, "model2", "none", 0, 2 * epochs, stage="final"))
            for i, rate in enumerate((0.1, 0.3)):
                store.record_trial(
                    {
                        "trial_id": f"t{i}",
                        "search_hash": "abc",
                        "arch": "model1",
                        "reg": "dropout",
                        "status": "ok",
                        "score": 0.5 - rate / 10,
                        "values": {"rate": rate},
                        "train_time_s": 12.0,
                    }
                )
            store.record_best("model1", "dropout", {"rate": 0.1}, 0.49, "abc")
    finally:
        store.close()
    return folder


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    return fake_experiment(tmp_path_factory.mktemp("experiment"))


@pytest.fixture(scope="module")
def report(experiment, tmp_path_factory) -> dict[str, Path]:
    return write_report(experiment, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def results(experiment):
    return load(experiment)


def grid_ids() -> list[str]:
    return [f"{a}-{r}-s{s}-0000" for a in ARCHS for r in REGS for s in SEEDS]


def png_is_drawn(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 5, f"{path.name} looks blank"


def lines(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


# ---------------------------------------------------------------- files


@pytest.mark.slow
def test_report_writes_html_markdown_and_one_png_per_figure(report):
    assert set(report) == {"html", "markdown", "figures"}
    assert report["html"].name == "report.html" and report["html"].is_file()
    assert report["markdown"].name == "report.md" and report["markdown"].is_file()
    names = {p.name for p in report["figures"].glob("*.png")}
    assert {"grid.png", "ci_bars.png", "accuracy_vs_time.png"} <= names
    # every run that recorded epochs gets its plot; the failed run recorded none
    assert {f"{r}.png" for r in [*grid_ids(), FINAL_ID]} <= names
    assert f"{FAILED_ID}.png" not in names


def test_every_png_is_a_non_blank_image(report):
    pngs = sorted(report["figures"].glob("*.png"))
    assert pngs
    for path in pngs:
        png_is_drawn(path)


def test_html_is_one_self_contained_file(report):
    text = report["html"].read_text(encoding="utf-8")
    for forbidden in ('src="http', "src='http", 'href="http', "<link", "<script src", "url("):
        assert forbidden not in text.lower(), forbidden
    images = re.findall(r"<img [^>]*>", text)
    assert len(images) >= 3 + len(grid_ids()) + 1  # overview, one per run, the final run
    assert all('src="data:image/png;base64,' in img for img in images)


def test_html_names_every_run_and_escapes_the_failed_runs_error(report):
    text = report["html"].read_text(encoding="utf-8")
    for run_id in [*grid_ids(), FAILED_ID, FINAL_ID]:
        assert run_id in text
    assert FAILED_ERROR in html.unescape(text)  # shown as written...
    assert "<script>alert" not in text  # ...but never as markup


def test_html_follows_the_lab_reports_order(report):
    text = report["html"].read_text(encoding="utf-8")
    order = [
        "Leaderboard",
        "not used for ranking",
        'alt="Mean accuracy per epoch per cell',
        "Table 1: model1",
        "Table 2: model2",
        "Final-stage runs",
        "Failed runs",
        "Tuning",
        "Environment",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_html_reproduces_the_lab_tables_with_model_summaries(report):
    text = report["html"].read_text(encoding="utf-8")
    assert "conv2d_1 (Conv2D)" in text and "(None, 8, 8, 64)" in text
    assert "Total params: 48,970" in text
    assert "Trainable params: 1,442,902" in text
    assert "Non-trainable params: 0" in text
    assert " min" in text  # wall time in minutes, as in the lab


def test_html_shows_final_run_tuning_and_environment(report):
    text = report["html"].read_text(encoding="utf-8")
    assert f"{FINAL_TEST:.4f}" in text
    assert "Best values per cell" in text and "Trials" in text
    for value in ENVIRONMENT.values():
        assert html.escape(value) in text


def test_markdown_names_every_run_and_links_existing_pngs(report):
    text = report["markdown"].read_text(encoding="utf-8")
    for run_id in [*grid_ids(), FAILED_ID, FINAL_ID]:
        assert run_id in text
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert len(links) >= 3 + len(grid_ids())
    for link in links:
        assert (report["markdown"].parent / link).is_file()
    assert "Total params: 48,970" in text
    assert "<script>" not in text


@pytest.mark.slow
def test_report_defaults_to_the_experiment_folder(tmp_path):
    folder = fake_experiment(tmp_path, archs=("model1",), regs=("none",), seeds=(0,), extras=False)
    paths = write_report(folder)
    assert paths["html"] == folder / "report.html" and paths["html"].is_file()
    assert "No tuning results" in paths["html"].read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_folder_name_with_markup_stays_text_in_both_reports(tmp_path):
    name = "exp <b>bold<b> & | pipes"
    folder = fake_experiment(
        tmp_path / name, archs=("model1",), regs=("none",), seeds=(0,), extras=False
    )
    paths = write_report(folder)
    page = paths["html"].read_text(encoding="utf-8")
    assert f"<h1>regbench report: {html.escape(name)}</h1>" in page and "<b>" not in page
    md = paths["markdown"].read_text(encoding="utf-8")
    assert md.startswith(f"# regbench report: {html.escape(name, quote=False)}\n")


def test_a_folder_without_results_is_one_clear_error(tmp_path):
    with pytest.raises(RegbenchError, match="no regbench results"):
        write_report(tmp_path)
    Store(tmp_path).close()  # a database, but no runs yet
    with pytest.raises(RegbenchError, match="no runs"):
        write_report(tmp_path)


@pytest.mark.slow  # draws 28 figures
def test_a_lab_sized_report_renders_in_seconds(tmp_path):
    folder = fake_experiment(
        tmp_path / "exp",
        archs=("model1", "model2", "model3"),
        regs=("none", "l2", "dropout", "batchnorm"),
        seeds=(0, 1),
        epochs=10,
    )
    start = time.perf_counter()
    paths = write_report(folder, tmp_path / "out")
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"report took {elapsed:.1f} s"
    assert len(list(paths["figures"].glob("*.png"))) == 4 + 24 + 1  # cd.png: the ranking


# ---------------------------------------------------------------- figures


def test_accuracy_figure_has_train_and_validation_accuracy_and_loss(results):
    _, epochs = results
    figure = figures.accuracy_figure(epochs, grid_ids()[0])
    accuracy, loss = figure.axes
    assert accuracy.get_label() == "accuracy" and loss.get_label() == "loss"
    # Keras's per-epoch train figure is its running one in training mode, and says so
    assert lines(accuracy) == ["train (running, training mode)", "validation"]
    assert lines(loss) == ["train (running, training mode)", "validation"]
    assert accuracy.get_xlabel() == "epoch" and accuracy.get_ylabel() == "accuracy"
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == lines(accuracy)
    assert len(accuracy.get_lines()[0].get_xdata()) == EPOCHS


def test_final_figure_has_only_train_curves_and_the_test_accuracy_in_its_title(results):
    runs, epochs = results
    figure = figures.final_figure(epochs, FINAL_ID, FINAL_TEST)
    assert lines(figure.axes[0]) == ["train (running, training mode)", figures.TEST_LABEL]
    assert f"test accuracy {FINAL_TEST:.4f}" in figure.get_suptitle()
    # given the run's row, it reads the test accuracy there and marks the clean train figure
    (row,) = runs[runs["run_id"] == FINAL_ID].to_dict("records")
    figure = figures.final_figure(epochs, row)
    assert f"test accuracy {FINAL_TEST:.4f}" in figure.get_suptitle()
    assert lines(figure.axes[0]) == [
        "train (running, training mode)",
        figures.END_LABELS["train"],
        figures.TEST_LABEL,
    ]
    # and the one test evaluation is drawn too, a star after the last epoch
    stars = [line for line in figure.axes[0].lines if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_ydata()[0] == pytest.approx(FINAL_TEST)
    low, high = figure.axes[0].get_ylim()
    assert low < FINAL_TEST < high


def test_a_run_without_epochs_cannot_be_plotted(results):
    _, epochs = results
    with pytest.raises(RegbenchError, match="no epochs"):
        figures.accuracy_figure(epochs, FAILED_ID)


def test_grid_figure_has_one_panel_per_cell_with_mean_curves(results):
    runs, epochs = results
    figure = figures.grid_figure(runs, epochs)
    assert len(figure.axes) == len(ARCHS) * len(REGS)
    assert [ax.get_label() for ax in figure.axes] == [f"cell:{a}:{r}" for a in ARCHS for r in REGS]
    for ax in figure.axes:
        # one setting per cell here, so two curves; the label names the hyperparameters
        curves = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert [line.get_label().split()[0] for line in curves] == ["train", "validation"]
        # the mean across seeds: one point per epoch, not one per run
        assert len(curves[0].get_xdata()) == EPOCHS
    assert len({ax.get_ylim() for ax in figure.axes}) == 1  # shared y axis


def test_ci_bar_figure_has_one_bar_per_leaderboard_row(results):
    runs, epochs = results
    board = table(runs, epochs)
    figure = board_figures.ci_bar_figure(board)
    (ax,) = [a for a in figure.axes if a.get_label() == "ci"]
    assert len(ax.patches) == len(board) == len(ARCHS) * len(REGS)
    assert sorted(p.get_width() for p in ax.patches) == pytest.approx(sorted(board["val_accuracy"]))


def test_accuracy_vs_time_figure_has_one_marker_per_ok_grid_run(results):
    runs, _ = results
    figure = board_figures.accuracy_vs_time_figure(runs)
    (ax,) = figure.axes
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(grid_ids())
    assert ax.get_xlabel() == "train time (s)"  # the leaderboard's name for train_time_s


def test_empty_leaderboard_and_runs_draw_a_note_instead_of_failing(results):
    runs, epochs = results
    failed = runs[runs["status"] != "ok"]
    for figure in (
        board_figures.ci_bar_figure(table(failed, epochs)),
        board_figures.accuracy_vs_time_figure(failed),
    ):
        assert "no successful grid runs" in [t.get_text() for t in figure.axes[0].texts]


def test_importing_the_report_does_not_import_matplotlib():
    code = "import sys, regbench.reporting.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- a real experiment


@pytest.mark.slow
def test_report_on_a_really_trained_experiment(tmp_path):
    from regbench.cli import main

    argv = ["run", "--arch", "model1", "--reg", "none,batchnorm", "--dataset", "digits"]
    argv += ["--epochs", "1", "--experiment", str(tmp_path), "--executor", "inprocess"]
    assert main(argv) == 0
    runs, _ = load(tmp_path)
    paths = write_report(tmp_path)
    text = paths["html"].read_text(encoding="utf-8")
    for run_id in runs["run_id"]:
        assert run_id in text
        png_is_drawn(paths["figures"] / f"{run_id}.png")
    assert "Non-trainable params: 2,176" in text  # model1 + batch norm, as in the lab
    assert "BatchNormalization" in text
    png_is_drawn(paths["figures"] / "grid.png")


def test_grid_figure_tells_hyperparameter_settings_of_one_cell_apart(tmp_path):
    folder = fake_experiment(tmp_path, archs=("model1",), regs=("dropout",), extras=False)
    store = Store(folder)
    for seed in SEEDS:
        row, epochs = fake_run(f"model1-dropout-s{seed}-r3", "model1", "dropout", seed, EPOCHS)
        store.record_run({**row, "params": {"rate": 0.3}}, epochs)
    store.close()
    runs, epochs = load(folder)
    (ax,) = figures.grid_figure(runs, epochs).axes
    assert sorted(label for label in lines(ax) if not label.startswith("_")) == [
        "train (running, training mode) rate=0.1",
        "train (running, training mode) rate=0.3",
        "validation rate=0.1",
        "validation rate=0.3",
    ]
    # the column's key names each setting's line style and end-mark shape, above the cell
    key = ax.get_legend()
    assert [t.get_text() for t in key.get_texts()] == ["rate=0.1", "rate=0.3"]
    assert [h.get_marker() for h in key.legend_handles] == ["D", "s"]
    figure = ax.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert key.get_window_extent(renderer).y0 >= ax.get_window_extent(renderer).y1 - 1
    title = ax.title.get_window_extent(renderer)
    assert title.y0 >= key.get_window_extent(renderer).y1 - 1  # the title above the key
    marks = {bars.get_label(): bars.lines[0].get_marker() for bars in ax.containers}
    assert marks["validation (kept weights) rate=0.1"] == "D"
    assert marks["validation (kept weights) rate=0.3"] == "s"
    png = figures.png_bytes(figures.grid_figure(runs, epochs))
    (tmp_path / "grid.png").write_bytes(png)
    png_is_drawn(tmp_path / "grid.png")


def test_an_experiment_whose_runs_all_failed_still_reports_them(tmp_path):
    store = Store(tmp_path)
    for seed in SEEDS:
        run_id = f"model1-none-s{seed}-bad"
        row = {"run_id": run_id, "config_hash": run_id, "arch": "model1", "reg": "none"}
        store.record_run({**row, "seed": seed, "status": "error", "error": "out of memory"}, [])
    store.close()
    paths = write_report(tmp_path)
    text = paths["html"].read_text(encoding="utf-8")
    assert "No successful grid runs to rank." in text
    assert text.count("out of memory") >= len(SEEDS)
    png_is_drawn(paths["figures"] / "grid.png")
