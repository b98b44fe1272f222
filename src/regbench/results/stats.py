"""Paired statistics: is a cell really better than its architecture's baseline?

Two cells trained on the same seed see the same data split and initialisation stream, so the
per-seed difference removes most of the seed-to-seed noise. The verdict's test is the exact
sign-flip permutation test of the mean difference (results.grid_stats.sign_flip_p: it assumes
only that, without an effect, a difference is as likely positive as negative), Holm-corrected
because an experiment makes many comparisons at once. It cannot claim certainty from a few
seeds: its smallest p with n pairs is 2 / 2**n, so below 6 shared seeds (0.0625 at 5) no
difference can reach p < 0.05, and the verdict says `underpowered` instead of testing. Its 95%
interval is the paired t interval; the paired t-test's own p (`scipy.stats.ttest_rel`,
computed as it does) is kept as `p_t`. One shared seed gives a difference but no interval and
no test (None, JSON null). A baseline is matched on the whole protocol (PROTOCOL_COLUMNS).

A cell that lost seeds (failed or diverged; the leaderboard's LOST_RULE) is neither tested nor
a baseline: its surviving seeds are a selection of its best, so a paired test on them would
favour it, and as a baseline it would favour itself against every cell compared with it. Its
comparisons are n/a, `why_na` says so, and Holm's correction does not count them, nor the
underpowered ones (whether a comparison is tested depends on its seed count alone).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from regbench.results import protocols
from regbench.results.grid_stats import sign_flip_p, smallest_p

ALPHA = 0.05
BETTER, WORSE, SAME, NA, BASELINE, UNDERPOWERED = (
    "better",
    "worse",
    "no significant difference",
    "n/a",
    "baseline",
    "underpowered",
)
UNTESTED = (NA, UNDERPOWERED)  # verdicts without a test, `why_na` saying why
COLUMNS = (
    "baseline",
    "n_paired",
    "diff",
    "diff_ci95",
    "p_value",
    "p_holm",
    "p_t",
    "verdict",
    "why_na",
)


@dataclass(frozen=True)
class Paired:
    """The mean of `a - b` over shared seeds; `ci95` is the half-width of its t interval,
    `p_value` the exact sign-flip test's, `t` and `p_t` the paired t-test's (None below two
    seeds, as are `ci95` and `p_value`)."""

    n: int
    diff: float | None
    ci95: float | None
    p_value: float | None
    t: float | None = None
    p_t: float | None = None

    @property
    def powered(self) -> bool:
        """Whether the exact test can reach p < ALPHA with this many pairs (6 or more)."""
        return self.n >= 2 and smallest_p(self.n) < ALPHA


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """Paired difference of two cells' per-seed values over the seeds both have (NaN dropped).

    n=0: nothing; n=1: the difference alone; n>=2: the exact sign-flip p, and
    `scipy.stats.ttest_rel`'s t and p computed in its order of operations (numpy's mean, the
    mean squared deviation times n/(n-1)), so a zero spread gives its t=+-inf, p_t=0, or
    t=p_t=NaN when every difference is 0 (whose sign-flip p is 1).
    """
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    diffs = np.array([float(a[s]) - float(b[s]) for s in seeds], dtype=np.float64)
    n = len(diffs)
    if n == 0:
        return Paired(0, None, None, None)
    mean = float(np.mean(diffs))
    if n == 1:
        return Paired(1, mean, None, None)
    exact = sign_flip_p(diffs.tolist())
    variance = float(np.mean((diffs - mean) ** 2) * (n / (n - 1)))
    error = math.sqrt(variance / n)
    if error == 0:  # the same difference on every seed
        t = math.copysign(math.inf, mean) if mean else math.nan
        return Paired(n, mean, 0.0, exact, t, 0.0 if mean else math.nan)
    t = mean / error
    half = t_quantile(1 - ALPHA / 2, n - 1) * error
    return Paired(n, mean, half, exact, t, t_two_sided_p(t, n - 1))


# Student's t from scipy.special: scipy.stats would add a second to every command that ranks.
def t_quantile(q: float, df: int) -> float:
    """The `q` quantile of Student's t with `df` degrees of freedom."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom (0 at t=+-inf, NaN at NaN)."""
    from scipy.special import stdtr

    return float(2 * stdtr(df, -abs(t)))


def holm(p_values: Mapping[Any, float | None]) -> dict[Any, float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1). None (no test)
    stays None and NaN (no difference to test) stays NaN; neither counts as a comparison."""
    tested = sorted(
        ((p, k) for k, p in p_values.items() if p is not None and not math.isnan(p)),
        key=lambda x: x[0],
    )
    m = len(tested)
    adjusted: dict[Any, float | None] = dict(p_values)
    running = 0.0
    for i, (p, key) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[key] = running
    return adjusted


def verdict(result: Paired, p_holm: float | None, higher_is_better: bool = True) -> str:
    """better / worse (p_holm < ALPHA), no significant difference, underpowered (too few
    shared seeds for the exact test ever to reach ALPHA), or n/a where no test exists (below
    two shared seeds)."""
    if result.diff is None or result.n < 2:
        return NA
    if not result.powered:
        return UNDERPOWERED
    if p_holm is None:
        return NA
    if math.isnan(p_holm) or p_holm >= ALPHA:
        return SAME
    return BETTER if (result.diff > 0) == higher_is_better else WORSE


def versus_baseline(
    runs: pd.DataFrame,
    baseline: str = "none",
    metric: str = "val_accuracy",
    higher_is_better: bool = True,
    attempted: pd.DataFrame | None = None,
    lost: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per cell (indexed by `cell`): its paired comparison with the `baseline`
    regularizer's cell of the same architecture and the same whole protocol, Holm-corrected
    across all cells; `why_na` says why a comparison is n/a.

    `runs` holds one row per (cell, seed) with columns cell, arch, reg, seed and `metric`.
    `attempted` (every grid run, whatever its status) tells a baseline never run in a protocol
    from one that was run and did not finish. `lost` names the cells that lost seeds, with how
    (`"1 diverged"`): they are not compared, nor compared against.
    """
    lost = lost or {}
    present = protocols.columns(runs)
    keyed = runs.assign(_protocol=[protocols.key(v) for v in protocols.values(runs, present)])
    by_cell = {
        cell: (group.iloc[0], dict(zip(group["seed"], group[metric], strict=True)))
        for cell, group in keyed.groupby("cell", sort=False)
    }
    baselines: dict[tuple[str, tuple], list[str]] = {}
    for cell, (first, _) in by_cell.items():
        if first["reg"] == baseline:
            baselines.setdefault((first["arch"], first["_protocol"]), []).append(cell)
    tried = _baseline_statuses(attempted, baseline, present)
    results: dict[str, tuple[str | None, Paired, str | None]] = {}
    untested = Paired(0, None, None, None)
    for cell, (first, values) in by_cell.items():
        if first["reg"] == baseline:
            continue
        if cell in lost:
            results[cell] = (None, untested, f"lost seeds ({lost[cell]}): not ranked")
            continue
        place = (first["arch"], first["_protocol"])
        candidates = baselines.get(place, [])
        if len(candidates) != 1:
            why = _why_no_baseline(baseline, len(candidates), tried.get(place))
            results[cell] = (None, untested, why)
            continue
        if candidates[0] in lost:
            why = f"{baseline} lost seeds ({lost[candidates[0]]}): no baseline"
            results[cell] = (None, untested, why)
            continue
        result = paired(values, by_cell[candidates[0]][1])
        results[cell] = (candidates[0], result, why_untested(result))
    adjusted = holm({cell: tested(r) for cell, (_, r, _) in results.items()})
    rows = []
    for cell in by_cell:
        if cell not in results and cell in lost:
            why = f"lost seeds ({lost[cell]}): not ranked, no baseline"
            rows.append({"cell": cell, "verdict": NA, "why_na": why})
            continue
        if cell not in results:
            rows.append({"cell": cell, "verdict": BASELINE})
            continue
        base, r, reason = results[cell]
        rows.append(
            {
                "cell": cell,
                "baseline": base,
                "n_paired": r.n,
                "diff": r.diff,
                "diff_ci95": r.ci95,
                "p_value": r.p_value,
                "p_holm": adjusted[cell],
                "p_t": r.p_t,
                "verdict": verdict(r, adjusted[cell], higher_is_better),
                "why_na": reason,
            }
        )
    frame = pd.DataFrame(rows, columns=["cell", *COLUMNS]).set_index("cell")
    return frame.astype({"n_paired": "Int64"})


def _baseline_statuses(
    attempted: pd.DataFrame | None, baseline: str, present: list[str]
) -> dict[tuple[str, tuple], Counter]:
    """(arch, protocol) -> how the baseline's attempted runs ended there."""
    if attempted is None or attempted.empty:
        return {}
    rows = attempted[attempted["reg"] == baseline]
    found: dict[tuple[str, tuple], Counter] = {}
    places = zip(rows["arch"], protocols.values(rows, present), rows["status"], strict=True)
    for arch, protocol, status in places:
        found.setdefault((arch, protocols.key(protocol)), Counter())[str(status)] += 1
    return found


def _why_no_baseline(baseline: str, cells: int, statuses: Counter | None) -> str:
    if cells > 1:
        return f"{cells} {baseline} cells in this protocol (a swept baseline)"
    if not statuses:
        return f"no {baseline} run in this protocol"
    ended = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()) if status != "ok")
    return f"{baseline} not run: {ended}" if ended else f"{baseline} not run"


def fewest_tested(comparisons: int = 1) -> int:
    """The fewest shared seeds whose exact test can reach p < ALPHA (6 at 0.05), or, among
    `comparisons` Holm-corrected ones, whose smallest p times their number can (9 for 9)."""
    return next(n for n in range(2, 64) if max(comparisons, 1) * smallest_p(n) < ALPHA)


def tested(result: Paired) -> float | None:
    """The p-value Holm's correction counts: None for a comparison that makes no test."""
    return result.p_value if result.powered else None


def why_untested(result: Paired) -> str | None:
    """Why a paired comparison has no test (below two shared seeds, or too few for the exact
    test to reach ALPHA); None when it has one."""
    if result.n >= 2 and not result.powered:
        return f"{result.n} seeds: underpowered"
    return {0: "no shared seeds", 1: "n=1: one shared seed"}.get(result.n)


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)
