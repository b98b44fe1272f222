"""The study's answer across the grid: which regularizer helps, on how many architectures, and
how the regularizers rank against each other.

Built from the leaderboard's table (its cells, their per-seed validation accuracies, their
baselines and verdicts), one summary per protocol, never pooled across protocols:

- per regularizer (with its values) and architecture, the leaderboard's paired effect against
  the baseline and its verdict (the exact sign-flip test, Holm over the whole leaderboard);
- per regularizer, its pooled effect (grid_stats.pooled_effect: the mean over architectures
  of each one's mean paired difference, a stratified bootstrap 95% interval), how many of the
  architectures it helps or hurts significantly, its IQM over every seed with a stratified
  bootstrap interval and its probability of improvement P(reg > baseline);
- all against all: Friedman's test over the blocks (architecture x seed) in which every
  regularizer finished, mean ranks, Nemenyi's post-hoc p-values and critical difference;
- per comparison, the seeds a paired t-test needs to detect `detect` with 80% power (never
  fewer than the exact test needs to reach p < 0.05 at all).

Cells that lost seeds are left out, as the leaderboard leaves them unranked.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from regbench.results import grid_stats, stats
from regbench.results.format import number

DETECT = 0.01  # the difference in accuracy a seeds-needed estimate is for: one point
POWER = 0.8
POOLED_METHOD = (
    "mean over architectures of the mean paired difference (each architecture weighs the "
    "same); 95% stratified percentile bootstrap over each architecture's seeds"
)
RANKING_METHOD = (
    "Friedman test over blocks (architecture x seed) where every regularizer finished; "
    "Nemenyi post-hoc (all pairs, studentized range), alpha = 0.05"
)


@dataclass(frozen=True)
class Effect:
    """One regularizer on one architecture against its baseline, as the leaderboard has it."""

    diff: float | None
    ci95: float | None
    n: int
    verdict: str
    p_holm: float | None
    seeds_needed: int | None  # to detect DETECT at 80% power (None: no spread observed yet)


@dataclass(frozen=True)
class Regularizer:
    """A regularizer (with its values) across the architectures of one protocol."""

    name: str  # `dropout (rate=0.3)`
    effects: dict[str, Effect]  # by architecture
    pooled: grid_stats.Pooled | None
    helps: int  # architectures where it is `better`
    hurts: int  # ... `worse`
    tested: int  # architectures with a verdict (better, worse or no significant difference)
    iqm: grid_stats.Interval | None  # of its validation accuracies, every seed
    improvement: grid_stats.Interval | None  # P(reg > baseline), per architecture, averaged


@dataclass(frozen=True)
class Ranking:
    """All regularizers against each other over the complete blocks (architecture x seed)."""

    names: tuple[str, ...]
    mean_ranks: dict[str, float]
    blocks: int
    statistic: float | None
    p_value: float | None
    critical_difference: float | None
    groups: list[tuple[str, ...]]  # within the critical difference: not told apart
    nemenyi: dict[str, dict[str, float]]
    why_not: str | None = None  # why there is no ranking (fewer than 2 regularizers, blocks)


@dataclass(frozen=True)
class Summary:
    """One protocol's answer across architectures."""

    protocol: str
    baseline: str
    architectures: list[str]
    regularizers: list[Regularizer]
    ranking: Ranking
    detect: float = DETECT
    methods: dict[str, str] = field(
        default_factory=lambda: {"pooled": POOLED_METHOD, "ranking": RANKING_METHOD}
    )


def summarize(board: pd.DataFrame, baseline: str = "none", detect: float = DETECT) -> list[Summary]:
    """One Summary per protocol of the leaderboard's `board` (results.leaderboard.table)."""
    if board.empty:
        return []
    found = []
    for label, group in board.groupby("protocol", sort=False):
        cells = group[group["ranked"]]
        if cells.empty:
            continue
        found.append(_summary(str(label), cells, board.set_index("cell"), baseline, detect))
    return found


def to_jsonable(summaries: list[Summary]) -> list[dict[str, Any]]:
    """The summaries as JSON-ready dicts (NaN and infinities as null)."""
    return [_clean(asdict(s)) for s in summaries]


def name(row: Any) -> str:
    """A cell's regularizer as the summary names it: `dropout (rate=0.3)`, `none`."""
    params = row["params"] if isinstance(row["params"], str) else ""
    return f"{row['reg']} ({params})" if params and params != "-" else str(row["reg"])


def _summary(
    label: str, cells: pd.DataFrame, by_cell: pd.DataFrame, baseline: str, detect: float
) -> Summary:
    archs = sorted(dict.fromkeys(cells["arch"]), key=_natural)
    named = cells.assign(_name=[name(r) for _, r in cells.iterrows()])
    regs = []
    for reg_name, rows in named.groupby("_name", sort=False):
        if (rows["verdict"] == stats.BASELINE).all():
            continue
        regs.append(_regularizer(str(reg_name), rows, by_cell, detect))
    return Summary(label, baseline, archs, regs, _ranking(named), detect)


def ranking(cells: pd.DataFrame) -> Ranking:
    """All against all over one protocol's ranked `cells` (rows of the leaderboard's table):
    what the report's critical-difference diagram draws."""
    ranked = cells[cells["ranked"]]
    return _ranking(ranked.assign(_name=[name(r) for _, r in ranked.iterrows()]))


def _regularizer(
    reg_name: str, rows: pd.DataFrame, by_cell: pd.DataFrame, detect: float
) -> Regularizer:
    effects: dict[str, Effect] = {}
    diffs: dict[str, list[float]] = {}
    mine: list[list[float]] = []
    against: list[tuple[list[float], list[float]]] = []  # (its seeds, the baseline's) by arch
    for _, row in rows.iterrows():
        values = _values(row["val_by_seed"])
        mine.append(list(values.values()))
        base = row.get("baseline")
        if not isinstance(base, str) or base not in by_cell.index:
            effects[row["arch"]] = _effect(row, [], detect)
            continue
        base_values = _values(by_cell.loc[base, "val_by_seed"])
        shared = sorted(set(values) & set(base_values))
        diffs[row["arch"]] = [values[s] - base_values[s] for s in shared]
        if values and base_values:
            against.append((list(values.values()), list(base_values.values())))
        effects[row["arch"]] = _effect(row, diffs[row["arch"]], detect)
    paired = {arch: d for arch, d in diffs.items() if d}
    verdicts = [e.verdict for e in effects.values()]
    return Regularizer(
        name=reg_name,
        effects=effects,
        pooled=grid_stats.pooled_effect(paired) if paired else None,
        helps=verdicts.count(stats.BETTER),
        hurts=verdicts.count(stats.WORSE),
        tested=sum(v in (stats.BETTER, stats.WORSE, stats.SAME) for v in verdicts),
        iqm=grid_stats.iqm_interval(mine) if any(mine) else None,
        improvement=_improvement(against),
    )


def _effect(row: Any, diffs: list[float], detect: float) -> Effect:
    needed = grid_stats.seeds_needed(diffs, detect, power=POWER, alpha=stats.ALPHA)
    if needed is not None:
        needed = max(needed, stats.fewest_tested())
    return Effect(
        diff=number(row.get("diff")),
        ci95=number(row.get("diff_ci95")),
        n=len(diffs),
        verdict=str(row["verdict"]),
        p_holm=number(row.get("p_holm")),
        seeds_needed=needed,
    )


def _improvement(against: list[tuple[list[float], list[float]]]) -> grid_stats.Interval | None:
    """P(reg > baseline): per architecture, every seed of one against every seed of the
    other (ties count half), averaged over the architectures that have both."""
    if not against:
        return None
    return grid_stats.probability_of_improvement([x for x, _ in against], [y for _, y in against])


def _ranking(named: pd.DataFrame) -> Ranking:
    """Friedman and Nemenyi over the blocks (arch, seed) in which every regularizer of the
    protocol (the baseline included) has a ranked, finished run."""
    names = tuple(dict.fromkeys(named["_name"]))
    values: dict[tuple[str, int], dict[str, float]] = {}
    for _, row in named.iterrows():
        for seed, value in _values(row["val_by_seed"]).items():
            values.setdefault((row["arch"], seed), {})[row["_name"]] = value
    blocks = [block for block in values.values() if len(block) == len(names)]
    if len(names) < 2:
        return _no_ranking(names, "one regularizer: nothing to rank it against")
    if len(blocks) < 2:
        why = f"{len(blocks)} block(s) (architecture x seed) where every regularizer finished"
        return _no_ranking(names, why + "; the ranking needs 2")
    scores = np.array([[block[n] for n in names] for block in blocks])
    found = grid_stats.friedman(scores)
    cd = grid_stats.critical_difference(len(names), len(blocks), stats.ALPHA)
    ranks = dict(zip(names, found.mean_ranks, strict=True))
    p = grid_stats.nemenyi(scores)
    return Ranking(
        names=names,
        mean_ranks=ranks,
        blocks=len(blocks),
        statistic=found.statistic,
        p_value=found.p_value,
        critical_difference=cd,
        groups=grid_stats.cd_groups(ranks, cd),
        nemenyi={a: {b: float(p[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
    )


def _natural(text: str) -> list[Any]:
    """`model2` before `model10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _no_ranking(names: tuple[str, ...], why: str) -> Ranking:
    return Ranking(names, {}, 0, None, None, None, [], {}, why)


def _values(by_seed: Any) -> dict[int, float]:
    """A cell's finite per-seed validation accuracies."""
    if not isinstance(by_seed, dict):
        return {}
    return {
        int(s): float(v)
        for s, v in by_seed.items()
        if isinstance(v, int | float) and math.isfinite(v)
    }


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating | np.integer):
        return _clean(value.item())
    return value
