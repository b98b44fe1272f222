"""The report as data: everything it shows, computed once from the results and handed to the
HTML and Markdown templates, which only lay it out.

It follows the lab's report: the leaderboard, then the lab's Tables 1-3 (time, accuracy plot
and model summary per run), the final-stage runs, what it was measured on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.reporting import across_section, tables
from regbench.reporting.across_section import AcrossSection
from regbench.reporting.board_text import LOST_TITLE
from regbench.reporting.figures import cell_order
from regbench.reporting.gallery import Figure, FigureSet, Visualization, run_protocols
from regbench.reporting.tables import Ranking, Table, records, run_title
from regbench.results.across import Summary as AcrossSummary
from regbench.results.format import MISSING, fmt, missing, params_label
from regbench.results.leaderboard import LOST_NOTE, TIE_NOTE

PARAM_COUNTS = ("total_params", "trainable_params", "non_trainable_params")
# what the leaderboard's marks mean, said under it when a board column (`tied`, `failed`) is
# set: the terminal leaderboard's own words, since the report marks ranks and seeds as it does
MARKS = {"tied": TIE_NOTE, "failed": LOST_NOTE}


@dataclass
class Summary:
    """The lab's model summary: a row per layer, then the Total/Trainable/Non-trainable lines."""

    layers: list[list[str]]
    totals: list[str]


@dataclass
class LabRun:
    """One row of a lab table: a grid run's time, accuracies, curves and model."""

    run_id: str
    title: str
    problem: str  # "status: error" of a run that did not finish ok, else ""
    train_minutes: str
    total_minutes: str
    val_accuracy: str
    train_accuracy: str  # the clean figure, as in the leaderboard
    test_accuracy: str  # "" for a grid run that never read the test split (all of today's)
    param_counts: str  # total / trainable / non-trainable
    figure: Figure | None
    summary: Summary | None


@dataclass
class Variant:
    """One model variant (a cell's regularizer and values) and the runs that built it; the
    seeds of a cell share one summary, cells never do."""

    title: str
    run_ids: list[str]
    summary: Summary | None


@dataclass
class LabTable:
    """The lab's Table n: the grid runs of one architecture."""

    number: int
    arch: str
    runs: list[LabRun]
    variants: list[Variant]


@dataclass
class FinalFigure:
    figure: Figure
    test_accuracy: str


@dataclass
class Report:
    """Everything the report shows, in display-ready text; a missing table is None."""

    title: str
    header: list[str]
    baseline: str
    leaderboard: list[Ranking]  # one per protocol; none without an ok grid run
    marks: list[str]
    across: list[AcrossSection]  # one per protocol: each regularizer across architectures
    across_note: str
    overview: list[FigureSet]  # one per protocol, in the leaderboard's order
    curves_note: str
    lab_tables: list[LabTable]
    final: Table | None
    final_figures: list[FinalFigure]
    visualizations: list[Visualization]
    failed: Table | None
    skipped: Table | None
    best: Table | None
    trials: Table | None
    plugins: Table | None
    environment: Table
    lost_title: str = LOST_TITLE  # the heading of a protocol's cells that lost seeds


@dataclass
class ReportInputs:
    """What the report is built from: an experiment's results and its rendered figures."""

    folder: Path
    runs: pd.DataFrame
    epochs: pd.DataFrame
    board: pd.DataFrame
    trials: pd.DataFrame
    best: pd.DataFrame
    generated: str
    baseline: str
    overview: list[FigureSet]
    per_run: dict[str, Figure]
    visualizations: list[Visualization]
    curves_note: str
    across: list[AcrossSummary] = field(default_factory=list)


def build(results: ReportInputs) -> Report:
    """Every table, figure and note of the report, as text ready for either template."""
    runs = results.runs
    return Report(
        title=results.folder.name,
        header=[
            f"Experiment folder: {results.folder.resolve()}",
            f"Report generated: {results.generated}",
            *tables.header_lines(runs),
        ],
        baseline=results.baseline,
        leaderboard=tables.leaderboard(results.board, results.baseline)
        if len(results.board)
        else [],
        marks=[note for column, note in MARKS.items() if _any(results.board, column)],
        across=across_section.sections(results.across),
        across_note=across_section.note(results.across),
        overview=results.overview,
        curves_note=results.curves_note,
        lab_tables=lab_tables(runs, results.per_run),
        final=tables.final(runs),
        final_figures=[
            FinalFigure(results.per_run[r["run_id"]], fmt(r["test_accuracy"], ".4f", MISSING))
            for r in records(tables.final_runs(runs))
            if r["run_id"] in results.per_run
        ],
        visualizations=results.visualizations,
        failed=tables.failed(runs),
        skipped=tables.skipped(runs),
        best=tables.best(results.best),
        trials=tables.trials(results.trials),
        plugins=tables.plugins(runs),
        environment=tables.environment(runs),
    )


def _any(board: pd.DataFrame, column: str) -> bool:
    """Whether a board column (a flag or a count) is set for any cell."""
    if column not in board:
        return False
    return bool((pd.to_numeric(board[column], errors="coerce").fillna(0) > 0).any())


def lab_tables(runs: pd.DataFrame, per_run: dict[str, Figure]) -> list[LabTable]:
    """One table per architecture in natural order, its runs in the lab's order; each run's
    title names its protocol where the experiment trained several."""
    grid = tables.grid_runs(runs)
    archs, _ = cell_order(grid)
    protocols = run_protocols(runs)
    found = []
    for number, arch in enumerate(archs, start=1):
        mine = grid[grid["arch"] == arch]
        rows = [
            _lab_run(r, per_run.get(r["run_id"]), protocols.get(r["run_id"])) for r in records(mine)
        ]
        found.append(LabTable(number, arch, rows, _variants(mine)))
    return found


def _lab_run(run: dict[str, Any], figure: Figure | None, protocol: str | None) -> LabRun:
    return LabRun(
        run_id=run["run_id"],
        title=run_title(run) + (f" · {protocol}" if protocol else ""),
        problem=tables.problem(run),
        train_minutes=fmt(tables.minutes(run["train_time_s"]), ".2f", MISSING),
        total_minutes=fmt(tables.minutes(run["total_time_s"]), ".2f", MISSING),
        val_accuracy=fmt(run["val_accuracy"], ".3f", MISSING),
        train_accuracy=fmt(run["train_accuracy"], ".3f", MISSING),
        test_accuracy="" if missing(run["test_accuracy"]) else fmt(run["test_accuracy"], ".3f"),
        param_counts=" / ".join(fmt(run[c], ",.0f", MISSING) for c in PARAM_COUNTS),
        figure=figure,
        summary=summary(run["summary"]),
    )


def _variants(mine: pd.DataFrame) -> list[Variant]:
    key = [mine["reg"], mine["params"].map(params_label), mine["summary"].fillna("")]
    return [
        Variant(run_title(group.iloc[0], seed=False), list(group["run_id"]), summary(text))
        for (_, _, text), group in mine.groupby(key, sort=False)
    ]


def summary(text: Any) -> Summary | None:
    """The model summary a run recorded as JSON; None when it recorded none (or garbage)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    layers = [
        [
            f"{layer.get('name', '')} ({layer.get('type', '')})",
            _shape(layer.get("output_shape")),
            fmt(layer.get("params"), ",.0f", MISSING),
        ]
        for layer in found.get("layers", [])
    ]
    totals = [
        f"Total params: {fmt(found.get('total_params'), ',.0f', MISSING)}",
        f"Trainable params: {fmt(found.get('trainable_params'), ',.0f', MISSING)}",
        f"Non-trainable params: {fmt(found.get('non_trainable_params'), ',.0f', MISSING)}",
    ]
    return Summary(layers, totals)


def _shape(shape: Any) -> str:
    if not isinstance(shape, list | tuple):
        return MISSING
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
