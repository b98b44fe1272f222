"""The report's pictures: every figure rendered once to PNG bytes, which the HTML embeds as a data
URI and the Markdown links as a file, plus the PNGs `regbench visualize` left in the folder."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from regbench.reporting import board_figures, figures
from regbench.reporting.tables import final_runs, grid_runs, records, run_title

VISUALIZE_DIR = ("figures", "visualize")  # where `regbench visualize` writes, per run id
MAX_RUN_FIGURES = 48  # per-run curves drawn at most; every run's epochs stay in epochs.csv


@dataclass
class Figure:
    """One picture: `file` is where the Markdown links it (relative to the report), `alt` its
    Markdown text when that differs from the caption."""

    name: str
    caption: str
    png: bytes
    file: str = ""
    alt: str = ""

    def __post_init__(self) -> None:
        self.file = self.file or f"figures/{self.name}.png"
        self.alt = self.alt or self.caption

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Visualization:
    """The visualize figures of one run (feature maps, filters, Grad-CAM)."""

    run_id: str
    figures: list[Figure]


OVERVIEW = {
    "grid": "Mean accuracy per epoch per cell (rows: architectures, columns: regularizers; "
    "band: range across seeds): validation and Keras's running train accuracy in training "
    "mode; the diamonds are the leaderboard's means at the kept epoch, clean train accuracy "
    "and validation accuracy (bars: range across seeds)",
    "ci_bars": "Mean validation accuracy per cell: one dot per seed, 95% confidence interval of "
    "the mean where a cell has two seeds or more",
    "accuracy_vs_time": "Validation accuracy against train time, one marker per run",
}
METRIC = "{metric} as logged per epoch, mean per cell across seeds (band: range across seeds)"


def overview(runs: pd.DataFrame, epochs: pd.DataFrame, board: pd.DataFrame) -> list[Figure]:
    """The grid, the CI bars, accuracy against time, then a grid per metric a plugin logged;
    none without grid runs."""
    if grid_runs(runs).empty:
        return []
    drawn = {
        "grid": figures.grid_figure(runs, epochs),
        "ci_bars": board_figures.ci_bar_figure(board),
        "accuracy_vs_time": board_figures.accuracy_vs_time_figure(runs),
    }
    found = [Figure(n, OVERVIEW[n], figures.png_bytes(f)) for n, f in drawn.items()]
    ok_epochs = epochs[epochs["run_id"].isin(figures.ok_grid(runs)["run_id"])]
    for metric in figures.plugin_metrics(ok_epochs):
        drawing = figures.metric_figure(runs, epochs, metric)
        name = _file_name(f"metric-{metric}")
        found.append(Figure(name, METRIC.format(metric=metric), figures.png_bytes(drawing)))
    return found


def per_run(runs: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Figure]:
    """Each drawn run's curves (see `drawn`) and every final run's, by run id."""
    every = pd.concat([drawn(grid_runs(runs)), final_runs(runs)])
    # the runs of one architecture share their y axes, so their curves compare at a glance
    limits = {arch: figures.shared_limits(epochs, group) for arch, group in every.groupby("arch")}
    recorded = set(epochs["run_id"])
    found = {}
    for run in records(every):
        if run["run_id"] not in recorded:
            continue
        title, ylims = run_title(run), limits[run["arch"]]
        if run["stage"] == "final":
            title = f"final: {title}"
            caption = f"{title}: {_shown(epochs, run['run_id'])} per epoch (train only)"
            figure = figures.final_figure(epochs, run, title=title, ylims=ylims)
        else:
            caption = f"{title}: {_shown(epochs, run['run_id'])} per epoch"
            figure = figures.accuracy_figure(epochs, run, title, ylims)
        found[run["run_id"]] = Figure(_file_name(run["run_id"]), caption, figures.png_bytes(figure))
    return found


def drawn(grid: pd.DataFrame) -> pd.DataFrame:
    """The grid runs that get a curve figure: all of them up to MAX_RUN_FIGURES, none beyond,
    so a report of a 1,000-run sweep stays within seconds (the grid figure shows every cell's
    mean and spread across seeds; epochs.csv holds every epoch)."""
    return grid if len(grid) <= MAX_RUN_FIGURES else grid.iloc[:0]


def curves_note(runs: pd.DataFrame) -> str:
    """Why a large grid's runs have no curve figure of their own ('' when they do)."""
    count = len(grid_runs(runs))
    if count <= MAX_RUN_FIGURES:
        return ""
    return (
        f"Per-run curves are drawn for grids of up to {MAX_RUN_FIGURES} runs; this one has "
        f"{count:,}. The grid figure shows each cell's mean and spread across seeds, and "
        "epochs.csv holds every run's epochs."
    )


def visualized(folder: Path, out: Path) -> list[Visualization]:
    """The PNGs `regbench visualize` left in the folder, per run id (its subfolder), linked
    from the report's folder `out`."""
    root = folder.joinpath(*VISUALIZE_DIR)
    found: dict[str, list[Figure]] = {}
    for path in sorted(root.glob("*/**/*.png")):
        run_id = path.relative_to(root).parts[0]
        label = f"{path.parent.name} / {path.stem}"
        link = Path(os.path.relpath(path, out)).as_posix()
        shot = Figure(path.stem, f"{run_id}: {label}", path.read_bytes(), link, label)
        found.setdefault(run_id, []).append(shot)
    return [Visualization(run_id, shots) for run_id, shots in found.items()]


def _shown(epochs: pd.DataFrame, run_id: str) -> str:
    """The metrics a run's figure draws, named: accuracy, loss and any a plugin logged."""
    *first, last = [
        *figures.CORE_METRICS,
        *figures.plugin_metrics(epochs[epochs["run_id"] == run_id]),
    ]
    return f"{', '.join(first)} and {last}"


def _file_name(run_id: str) -> str:
    """A run id as a safe file name (ids are plain, but a store may hold anything)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id).lstrip(".") or "run"
