"""Paired statistics: is a cell really better than its architecture's baseline?

Two cells trained on the same seed see the same data split and initialisation stream, so the
per-seed difference removes most of the seed-to-seed noise: a paired t-test on the shared
seeds, its 95% interval, and Holm's correction because an experiment makes many comparisons
at once. One shared seed gives a difference but no interval and no p-value (None, JSON null).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

ALPHA = 0.05
BETTER, WORSE, SAME, NA, BASELINE = (
    "better",
    "worse",
    "no significant difference",
    "n/a",
    "baseline",
)
# Columns that make two cells comparable: same data and training protocol, only the
# regularizer (and its values) differs. Those absent from a frame are ignored.
PROTOCOL_COLUMNS = (
    "dataset",
    "dataset_options",
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "target",
    "precision",
)
COLUMNS = ("baseline", "n_paired", "diff", "diff_ci95", "p_value", "p_holm", "verdict")


@dataclass(frozen=True)
class Paired:
    """The mean of `a - b` over shared seeds; `ci95` is the half-width of its t interval."""

    n: int
    diff: float | None
    ci95: float | None
    p_value: float | None


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """Paired difference of two cells' per-seed values over the seeds both have (NaN dropped).

    n=0: nothing; n=1: the difference alone; identical differences (zero spread): the interval
    is a point and no p-value exists.
    """
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(diffs)
    if n == 0:
        return Paired(0, None, None, None)
    mean = sum(diffs) / n
    if n == 1:
        return Paired(1, mean, None, None)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # the same difference on every seed: no test
        return Paired(n, mean, 0.0, None)
    error = sd / math.sqrt(n)
    half = t_quantile(1 - ALPHA / 2, n - 1) * error
    p = t_two_sided_p(mean / error, n - 1)  # the paired t-test
    return Paired(n, mean, half, p if math.isfinite(p) else None)


# Student's t from scipy.special: scipy.stats would add a second to every command that ranks.
def t_quantile(q: float, df: int) -> float:
    """The `q` quantile of Student's t with `df` degrees of freedom."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    from scipy.special import stdtr

    return float(2 * stdtr(df, -abs(t)))


def holm(p_values: Mapping[Any, float | None]) -> dict[Any, float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); None stays None."""
    tested = sorted(((p, k) for k, p in p_values.items() if p is not None), key=lambda x: x[0])
    m = len(tested)
    adjusted: dict[Any, float | None] = {k: None for k in p_values}
    running = 0.0
    for i, (p, key) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[key] = running
    return adjusted


def verdict(result: Paired, p_holm: float | None, higher_is_better: bool = True) -> str:
    if p_holm is None or result.diff is None:
        return NA
    if p_holm >= ALPHA:
        return SAME
    return BETTER if (result.diff > 0) == higher_is_better else WORSE


def versus_baseline(
    runs: pd.DataFrame,
    baseline: str = "none",
    metric: str = "val_accuracy",
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """One row per cell (indexed by `cell`): its paired comparison with the `baseline`
    regularizer's cell of the same architecture and protocol, Holm-corrected across all cells.

    `runs` holds one row per (cell, seed) with columns cell, arch, reg, seed and `metric`.
    A cell without a matching baseline cell (or with several, e.g. a swept baseline) is n/a.
    """
    protocol = [c for c in PROTOCOL_COLUMNS if c in runs]
    key = [tuple(map(str, values)) for values in runs[protocol].itertuples(index=False)]
    keyed = runs.assign(_protocol=key)
    by_cell = {
        cell: (group.iloc[0], dict(zip(group["seed"], group[metric], strict=True)))
        for cell, group in keyed.groupby("cell", sort=False)
    }
    baselines: dict[tuple[str, str], list[str]] = {}
    for cell, (first, _) in by_cell.items():
        if first["reg"] == baseline:
            baselines.setdefault((first["arch"], first["_protocol"]), []).append(cell)
    results: dict[str, tuple[str | None, Paired]] = {}
    for cell, (first, values) in by_cell.items():
        if first["reg"] == baseline:
            continue
        candidates = baselines.get((first["arch"], first["_protocol"]), [])
        if len(candidates) != 1:
            results[cell] = (None, Paired(0, None, None, None))
            continue
        results[cell] = (candidates[0], paired(values, by_cell[candidates[0]][1]))
    adjusted = holm({cell: r.p_value for cell, (_, r) in results.items()})
    rows = []
    for cell in by_cell:
        if cell not in results:
            rows.append({"cell": cell, "verdict": BASELINE})
            continue
        base, r = results[cell]
        rows.append(
            {
                "cell": cell,
                "baseline": base,
                "n_paired": r.n,
                "diff": r.diff,
                "diff_ci95": r.ci95,
                "p_value": r.p_value,
                "p_holm": adjusted[cell],
                "verdict": verdict(r, adjusted[cell], higher_is_better),
            }
        )
    frame = pd.DataFrame(rows, columns=["cell", *COLUMNS]).set_index("cell")
    return frame.astype({"n_paired": "Int64"})


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)
