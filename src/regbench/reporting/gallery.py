"""The report's pictures: every figure rendered once to PNG bytes, which the HTML embeds as a data
URI and the Markdown links as a file, plus the PNGs `regbench visualize` left in the folder."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.reporting import board_figures, figures
from regbench.reporting.tables import final_runs, grid_runs, records, run_title
from regbench.results import across
from regbench.results.leaderboard import protocol_labels

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


@dataclass
class FigureSet:
    """The overview figures of one protocol, drawn from its runs only, as its ranking is; the
    protocol is the ranking's label ('' when the experiment has one protocol)."""

    protocol: str
    figures: list[Figure]


OVERVIEW = {
    "grid": "Mean accuracy per epoch per cell (rows: architectures, columns: regularizers; "
    "band: range across seeds): validation and Keras's running train accuracy in training "
    "mode; the diamonds are the leaderboard's means at the kept epoch, clean train accuracy "
    "and validation accuracy (bars: range across seeds)",
    "ci_bars": "Mean validation accuracy per ranked cell: one dot per seed, 95% confidence "
    "interval of the mean where a cell has two seeds or more, cut at 0 or 1 with an arrowhead "
    "(a cell that lost seeds is not ranked, and named under the axis); each regularizer keeps "
    "its colour in every report",
    "accuracy_vs_time": "Validation accuracy against train time, one marker per run",
    "cd": "Critical-difference diagram: every regularizer's mean rank (1 = best) over the "
    "blocks (architecture × seed) in which all of them finished; a bar joins those whose mean "
    "ranks differ by less than the Nemenyi critical difference (not told apart at α = 0.05)",
}
METRIC = "{metric} as logged per epoch, mean per cell across seeds (band: range across seeds)"
SLUG = 60  # characters of a protocol's label at most in a figure's file name


def overview(runs: pd.DataFrame, epochs: pd.DataFrame, board: pd.DataFrame) -> list[FigureSet]:
    """Per protocol, in the leaderboard's order: the grid, the CI bars, accuracy against time,
    then a grid per metric a plugin logged, each drawn from that protocol's runs and cells
    only; none without grid runs. With several protocols, each figure's file name and
    caption carry its protocol (`grid-epochs_10.png`)."""
    if grid_runs(runs).empty:
        return []
    sets = []
    for protocol, suffix, mine, cells in by_protocol(runs, board):
        drawn = drawings(mine, epochs, cells, protocol)
        found = [
            Figure(name + suffix, _caption(caption, protocol, suffix), figures.png_bytes(drawing))
            for name, caption, drawing in drawn
        ]
        sets.append(FigureSet(protocol if suffix else "", found))
    return sets


def by_protocol(
    runs: pd.DataFrame, board: pd.DataFrame
) -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """Each ranked protocol's label, file-name suffix ('' when there is one), grid runs and
    board cells, in the board's order: the ok runs are those its cells average (their
    `run_ids`), the others those of its label that did not finish. Where no run finished,
    each protocol trained (its figures say there is nothing to draw)."""
    labels = protocol_labels(runs)
    order = list(dict.fromkeys(board["protocol"] if len(board) else labels.dropna()))
    suffixes: dict[str, str] = {}
    for label in order:
        slug = _file_name(label)[:SLUG] if len(order) > 1 else ""
        while slug and f"-{slug}" in suffixes.values():  # two labels cut alike
            slug += "_"
        suffixes[label] = f"-{slug}" if slug else ""
    found = []
    for label in order:
        cells = board[board["protocol"] == label]
        averaged = {run_id for ids in cells["run_ids"] for run_id in ids}
        mine = runs["run_id"].isin(averaged) | ((labels == label) & (runs["status"] != "ok"))
        found.append((label, suffixes[label], runs[mine], cells))
    return found


def drawings(
    runs: pd.DataFrame, epochs: pd.DataFrame, cells: pd.DataFrame, protocol: str
) -> list[tuple[str, str, Any]]:
    """One protocol's overview figures (name, caption, matplotlib Figure) from its grid runs
    and its board cells: what `overview` renders, and what a test can look into."""
    drawn = [
        ("grid", OVERVIEW["grid"], figures.grid_figure(runs, epochs, protocol)),
        ("ci_bars", OVERVIEW["ci_bars"], board_figures.ci_bar_figure(cells)),
        (
            "accuracy_vs_time",
            OVERVIEW["accuracy_vs_time"],
            board_figures.accuracy_vs_time_figure(runs, protocol),
        ),
    ]
    ranked = across.ranking(cells) if len(cells) else None
    if ranked is not None and not ranked.why_not:
        drawn.append(("cd", OVERVIEW["cd"], _cd_drawing(ranked, protocol)))
    ok_epochs = epochs[epochs["run_id"].isin(figures.ok_grid(runs)["run_id"])]
    for metric in figures.plugin_metrics(ok_epochs):
        drawing = figures.metric_figure(runs, epochs, metric, protocol)
        drawn.append((_file_name(f"metric-{metric}"), METRIC.format(metric=metric), drawing))
    return drawn


def _cd_drawing(ranked: across.Ranking, protocol: str) -> Any:
    from regbench.reporting.cd_diagram import cd_figure

    caption = (
        f"Friedman p = {ranked.p_value:.2g} · Nemenyi, α = 0.05 · {ranked.blocks} blocks "
        "(architecture × seed)"
    )
    title = "Regularizers ranked" + (f" · protocol: {protocol}" if protocol else "")
    return cd_figure(ranked.mean_ranks, ranked.critical_difference or 0.0, title, caption)


def is_overview(name: str) -> bool:
    """Whether a file name under figures/ is one `overview` writes (`grid.png`,
    `grid-epochs_10.png`, `metric-ece.png`): a report removes those it did not write again,
    so a figure of an earlier report (all protocols in one, say) never lingers beside them."""
    stem = name.removesuffix(".png")
    return name.endswith(".png") and (
        stem.startswith("metric-") or any(stem == n or stem.startswith(f"{n}-") for n in OVERVIEW)
    )


def _caption(caption: str, protocol: str, suffix: str) -> str:
    """A figure's caption, naming its protocol where the experiment has several."""
    return f"{caption}; protocol: {protocol}" if suffix else caption


def per_run(runs: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Figure]:
    """Each drawn run's curves (see `drawn`) and every final run's, by run id."""
    every = pd.concat([drawn(grid_runs(runs)), final_runs(runs)])
    # the finished runs of one architecture share their y axes, so their curves compare at a
    # glance; a run that failed or diverged (a loss of 20) keeps scales of its own
    finished = every[every["status"] == "ok"]
    limits = {
        arch: figures.shared_limits(epochs, group) for arch, group in finished.groupby("arch")
    }
    recorded = set(epochs["run_id"])
    protocols = run_protocols(runs)
    found = {}
    for run in records(every):
        if run["run_id"] not in recorded:
            continue
        title = run_title(run)
        ylims = limits.get(run["arch"]) if run["status"] == "ok" else None
        if run["run_id"] in protocols:
            title += f" · {protocols[run['run_id']]}"
        if run["stage"] == "final":
            title = f"final: {title}"
            caption = f"{title}: {_shown(epochs, run['run_id'])} per epoch (train only)"
            figure = figures.final_figure(epochs, run, title=title, ylims=ylims)
        else:
            caption = f"{title}: {_shown(epochs, run['run_id'])} per epoch"
            figure = figures.accuracy_figure(epochs, run, title, ylims)
        found[run["run_id"]] = Figure(_file_name(run["run_id"]), caption, figures.png_bytes(figure))
    return found


def run_protocols(runs: pd.DataFrame) -> dict[str, str]:
    """Each grid run's protocol label by run id, where the experiment ranks several (a run's
    title then names it); empty where it ranks one."""
    labels = protocol_labels(runs).dropna()
    if labels[runs.loc[labels.index, "status"] == "ok"].nunique() < 2:
        return {}
    return dict(zip(runs.loc[labels.index, "run_id"], labels, strict=True))


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
