"""Statistics for a grid of cells (regularizer x architecture x seed), higher-is-better metrics.

Each method, with what it assumes:

- `sign_flip_p`: exact two-sided sign-flip permutation test of a mean paired difference; assumes
  only that, under H0, each pair's difference is as likely to have either sign (symmetry).
- `smallest_p`: the smallest p-value that exact test can reach with n pairs (2 / 2**n).
- `friedman`: Friedman's rank test that k treatments perform alike over N blocks (rank 1 =
  best); assumes independent blocks, and its chi-square p-value is asymptotic in N.
- `nemenyi`: Nemenyi's all-pairs post-hoc test on Friedman's mean ranks, from the studentized
  range with infinite degrees of freedom; asymptotic like Friedman's, it controls the
  family-wise error over all k(k-1)/2 pairs.
- `critical_difference`: the difference of mean ranks above which Nemenyi calls two treatments
  different at `alpha` (Demsar 2006).
- `iqm`: the interquartile mean (25% trimmed from each end), rliable's robust aggregate.
- `iqm_interval`: a stratified percentile-bootstrap interval of the IQM; assumes the strata
  (architectures) are fixed and the values within each are exchangeable draws (seeds).
- `probability_of_improvement`: rliable's P(X > Y), the mean over strata of the chance that a
  random x beats a random y (ties count half), with a stratified bootstrap interval.
- `seeds_needed`: seeds a two-sided paired t-test needs to detect a given mean difference with
  a given power; assumes normal differences whose true spread is the observed one.
- `pooled_effect`: a regularizer's mean paired difference over architectures, each weighing
  the same, with a stratified bootstrap interval; assumes seeds are exchangeable within each.

scipy.stats is imported inside the functions that use it: importing it costs about a second,
which every command that only imports this module would otherwise pay.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_MAX_PAIRS = 20  # 2**20 sign patterns still enumerate in well under a second
SIGN_FLIP_RESAMPLES = 100_000
SEEDS_CAP = 100_000
RANK_TOLERANCE = 1e-9  # a mean rank a rounding error outside [1, k] is taken as the bound
TIE_RTOL = 1e-12  # sums equal in exact arithmetic may differ by rounding; much less than this

_CHUNK = 1 << 22  # elements per pairwise-comparison block in probability_of_improvement


@dataclass(frozen=True)
class Friedman:
    """Friedman's chi-square `statistic` (tie-corrected), its `p_value`, each treatment's mean
    rank over the `blocks` (1 = best), in the order of the score columns."""

    statistic: float
    p_value: float
    mean_ranks: tuple[float, ...]
    blocks: int


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval; `low`/`high` are None where nothing could
    be resampled (every stratum holds a single value)."""

    estimate: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Pooled:
    """The mean over `strata` of each stratum's mean paired difference, its bootstrap interval
    (None where every stratum holds one difference), and the number of `pairs` behind it."""

    estimate: float
    low: float | None
    high: float | None
    strata: int
    pairs: int


# --- sign-flip permutation test -------------------------------------------------------------


def sign_flip_p(diffs: Sequence[float]) -> float | None:
    """Two-sided p-value of the mean paired difference under random signs (None for no pairs).

    Exact for up to 20 pairs: all 2**n sign patterns, counting those whose |sum| reaches the
    observed |sum| less 1e-12 times sum(|d|), so sums equal in exact arithmetic but not in
    floating point (0.1 + 0.2 against 0.3) count as ties, as scipy.stats.permutation_test's
    relative tolerance intends. The tolerance is relative to the data's scale rather than to the
    observed sum so that a mean that is 0 in exact arithmetic also ties with its rounded
    equals. Above 20 pairs: 100,000 random patterns from default_rng(0) and the (count + 1) /
    (resamples + 1) estimate, which is never 0. All-zero differences give 1.0.
    """
    d = _finite_1d(diffs, "diffs")
    n = d.size
    if n == 0:
        return None
    scale = float(np.sum(np.abs(d)))
    if scale == 0.0:
        return 1.0
    tol = TIE_RTOL * scale
    if n <= EXACT_MAX_PAIRS:
        # The first sign fixed to +: a pattern and its negation have the same |sum|.
        sums = d[:1].copy()
        for x in d[1:]:
            sums = np.concatenate((sums + x, sums - x))
        observed = abs(float(sums[0]))  # index 0 holds the all-plus pattern
        count = int(np.count_nonzero(np.abs(sums) >= observed - tol))
        return count / sums.size
    observed = abs(float(np.sum(d)))
    rng = np.random.default_rng(0)
    count, done, batch = 0, 0, 10_000
    while done < SIGN_FLIP_RESAMPLES:
        size = min(batch, SIGN_FLIP_RESAMPLES - done)
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        count += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
        done += size
    return (count + 1) / (SIGN_FLIP_RESAMPLES + 1)


def smallest_p(n: int) -> float:
    """The smallest p the exact sign-flip test gives with `n` pairs: 2 / 2**n (1.0 for n <= 1),
    so fewer than 6 pairs can never reach p < 0.05. (Above 20 pairs `sign_flip_p` estimates by
    resampling, and its own floor is 1 / 100,001.)"""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return 1.0 if n <= 1 else 2.0 / 2.0**n


# --- Friedman and Nemenyi -------------------------------------------------------------------


def friedman(scores: np.ndarray) -> Friedman:
    """Friedman's test on a (blocks x treatments) array of higher-is-better scores.

    The statistic is scipy.stats.friedmanchisquare's, tie correction included, computed here
    because scipy refuses two treatments. Rank 1 is the best score in a block, ties share the
    average rank. When every block ties all its treatments the tie correction divides 0 by 0
    (scipy gives NaN): no treatment is ranked above another, so statistic 0 and p 1.0.
    """
    from scipy import stats

    x = _score_matrix(scores)
    n, k = x.shape
    ranks = stats.rankdata(-x, axis=1)  # rank 1 = the highest score
    # sum over tie groups of t**3 - t, as sum over values of (group size**2 - 1)
    group = np.count_nonzero(x[:, :, None] == x[:, None, :], axis=2)
    ties = int(np.sum(group * group - 1))
    c = 1.0 - ties / (k * (k * k - 1) * n)
    mean_ranks = tuple(float(r) for r in ranks.mean(axis=0))
    if ties == (k * k * k - k) * n:  # every block all tied
        return Friedman(0.0, 1.0, mean_ranks, n)
    ssbn = float(np.sum(np.sum(ranks, axis=0) ** 2))
    statistic = max(0.0, (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / c)
    p_value = float(stats.chi2.sf(statistic, k - 1))
    return Friedman(statistic, p_value, mean_ranks, n)


def nemenyi(scores: np.ndarray) -> np.ndarray:
    """The (k x k) matrix of Nemenyi p-values for each pair of treatments (diagonal 1).

    q = |R_i - R_j| / sqrt(k(k+1) / (6N)) * sqrt(2) for mean ranks R over N blocks, and p the
    upper tail of the studentized range for k means with infinite degrees of freedom, as
    scikit-posthocs' posthoc_nemenyi_friedman computes it. It assumes Friedman's test already
    found a difference.
    """
    from scipy import stats

    x = _score_matrix(scores)
    n, k = x.shape
    mean_ranks = stats.rankdata(-x, axis=1).mean(axis=0)
    q = np.abs(mean_ranks[:, None] - mean_ranks[None, :]) / math.sqrt(k * (k + 1) / (6.0 * n))
    upper = np.triu_indices(k, 1)
    values, inverse = np.unique(q[upper] * math.sqrt(2.0), return_inverse=True)
    p = np.ones((k, k))
    # the integral is costly: once per distinct q (mean ranks often tie)
    p[upper] = np.clip(stats.studentized_range.sf(values, k, np.inf), 0.0, 1.0)[inverse]
    p.T[upper] = p[upper]
    return p


def critical_difference(k: int, blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks (Demsar 2006): q_alpha / sqrt(2) *
    sqrt(k(k+1) / (6N)), where q_alpha is the studentized range's 1 - alpha quantile."""
    if k < 2 or blocks < 1:
        raise ValueError(f"need k >= 2 treatments and blocks >= 1, got k={k}, blocks={blocks}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return _q_alpha(k, alpha) / math.sqrt(2.0) * math.sqrt(k * (k + 1) / (6.0 * blocks))


@functools.lru_cache(maxsize=256)
def _q_alpha(k: int, alpha: float) -> float:
    """The studentized range's 1 - alpha quantile (k means, infinite df): a root of a numerical
    integral, some milliseconds, so kept for the same k and alpha."""
    from scipy import stats

    return float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf))


# --- IQM, probability of improvement, pooled effect -----------------------------------------


def cd_groups(mean_ranks: Mapping[str, float], cd: float) -> list[tuple[str, ...]]:
    """The maximal runs of 2+ consecutive treatments (rank order, best first) whose mean ranks
    differ by less than `cd`: the groups the Nemenyi test cannot separate, drawn as one bar each.

    A group contained in another says nothing more, so only maximal ones are kept. A CD of 0 or
    NaN (no post-hoc test run) joins nothing. Ties keep the mapping's order.
    """
    order = rank_order(mean_ranks)
    if not cd_drawn(cd):
        return []
    names = [name for name, _ in order]
    ranks = [rank for _, rank in order]
    groups: list[tuple[str, ...]] = []
    last_end = -1
    for start in range(len(ranks)):
        end = start
        while end + 1 < len(ranks) and ranks[end + 1] - ranks[start] < cd:
            end += 1
        if end > start and end > last_end:  # the end only grows: else inside the last one
            groups.append(tuple(names[start : end + 1]))
            last_end = end
    return groups


def rank_order(mean_ranks: Mapping[str, float]) -> list[tuple[str, float]]:
    """The treatments best first, refused where a diagram would lie: under two treatments, or a
    mean rank that is not one of k treatments' (outside [1, k])."""
    k = len(mean_ranks)
    if k < 2:
        raise ValueError(f"a critical-difference diagram needs 2 treatments or more, got {k}")
    order: list[tuple[str, float]] = []
    for name, value in mean_ranks.items():
        rank = float(value)
        if not (1 - RANK_TOLERANCE <= rank <= k + RANK_TOLERANCE):  # NaN fails too
            raise ValueError(
                f"mean rank of {name!r} is {value}: with {k} treatments a mean rank lies in "
                f"[1, {k}]"
            )
        order.append((str(name), min(max(rank, 1.0), float(k))))
    return sorted(order, key=lambda item: item[1])


def cd_drawn(cd: float) -> bool:
    """Whether a CD is drawn: a positive one (infinite included); 0 or NaN means no test."""
    if cd < 0:
        raise ValueError(f"a critical difference is never negative, got {cd}")
    return bool(cd > 0)  # NaN > 0 is False


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean as rliable defines it, scipy.stats.trim_mean(values, 0.25): robust to
    a diverged seed, yet less noisy than the median."""
    from scipy import stats

    v = _finite_1d(values, "values")
    if v.size == 0:
        raise ValueError("iqm of no values")
    return float(stats.trim_mean(v, 0.25))


def iqm_interval(
    strata: Sequence[Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """IQM of all values with a stratified percentile-bootstrap interval (rliable's): each
    stratum (an architecture's seeds) is resampled on its own, so every resample keeps each
    architecture's share. Empty strata are skipped; a single-value stratum has no spread, it
    enters every resample as is, and with only such strata low/high are None."""
    samples = [s for s in (_finite_1d(v, "stratum") for v in strata) if s.size]
    if not samples:
        raise ValueError("iqm_interval needs at least one value")

    def statistic(full: list[np.ndarray]) -> np.ndarray:
        from scipy import stats

        return np.asarray(stats.trim_mean(np.concatenate(full, axis=-1), 0.25, axis=-1))

    estimate = float(statistic(samples))
    low, high = _bootstrap(samples, statistic, estimate, confidence, resamples, seed)
    return Interval(estimate, low, high)


def probability_of_improvement(
    x_strata: Sequence[Sequence[float]],
    y_strata: Sequence[Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """rliable's P(X > Y): per stratum, P(x > y) + P(x == y) / 2 over all pairs of its x and y
    values; their mean over strata (each weighs the same); a stratified percentile-bootstrap
    interval, x and y of every stratum resampled independently (unpaired). A stratum needs
    values on both sides."""
    if len(x_strata) != len(y_strata):
        raise ValueError(f"{len(x_strata)} x strata against {len(y_strata)} y strata")
    if not x_strata:
        raise ValueError("probability_of_improvement needs at least one stratum")
    xs = [_finite_1d(v, "x stratum") for v in x_strata]
    ys = [_finite_1d(v, "y stratum") for v in y_strata]
    if any(s.size == 0 for s in xs + ys):
        raise ValueError("every stratum needs at least one x and one y value")
    m = len(xs)

    def statistic(full: list[np.ndarray]) -> np.ndarray:
        wins = [_win_rate(full[i], full[m + i]) for i in range(m)]
        return np.mean(np.stack(wins), axis=0)

    samples = xs + ys
    estimate = float(statistic(samples))
    low, high = _bootstrap(samples, statistic, estimate, confidence, resamples, seed)
    return Interval(estimate, low, high)


def pooled_effect(
    diffs_by_stratum: Mapping[str, Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Pooled:
    """A regularizer's effect over architectures: the mean of each architecture's mean paired
    difference (cell minus baseline on shared seeds), so an architecture with more seeds does
    not weigh more; stratified percentile-bootstrap interval (each architecture's differences
    resampled on their own). Empty strata are skipped; one difference everywhere: no interval."""
    samples = [s for s in (_finite_1d(v, "stratum") for v in diffs_by_stratum.values()) if s.size]
    if not samples:
        raise ValueError("pooled_effect needs at least one stratum with a difference")

    def statistic(full: list[np.ndarray]) -> np.ndarray:
        return np.mean(np.stack([np.mean(s, axis=-1) for s in full]), axis=0)

    estimate = float(statistic(samples))
    low, high = _bootstrap(samples, statistic, estimate, confidence, resamples, seed)
    return Pooled(estimate, low, high, len(samples), sum(s.size for s in samples))


# --- sample size ----------------------------------------------------------------------------


def seeds_needed(
    diffs: Sequence[float], detect: float, power: float = 0.8, alpha: float = 0.05
) -> int | None:
    """Seeds (pairs) a two-sided paired t-test at `alpha` needs to detect a mean difference of
    `detect` with `power`, taking the observed spread (sd, ddof=1) of `diffs` as the truth.

    The smallest n >= 2 whose noncentral-t power (df = n - 1, nc = sqrt(n) * detect / sd)
    reaches `power`. None below 2 diffs or for detect <= 0; None for sd = 0, where any
    difference would be certain and the estimate means nothing; None when even 100,000 seeds
    fall short.
    """
    if not 0.0 < power < 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"power and alpha must lie in (0, 1), got {power}, {alpha}")
    d = _finite_1d(diffs, "diffs")
    if d.size < 2 or not detect > 0:
        return None
    sd = float(np.std(d, ddof=1))
    if not sd > 0:
        return None
    effect = detect / sd

    def reaches(n: int) -> bool:
        return _t_power(effect, n, alpha) >= power

    if reaches(2):
        return 2
    low, high = 2, 4  # power(low) < target; search doubles high until it reaches the target
    while not reaches(high):
        if high >= SEEDS_CAP:
            return None
        low, high = high, min(2 * high, SEEDS_CAP)
    while high - low > 1:  # power rises with n
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def _t_power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test with n observations and standardized effect."""
    from scipy import special, stats

    df = n - 1
    crit = float(stats.t.isf(alpha / 2.0, df))
    nc = math.sqrt(n) * effect
    upper = float(stats.nct.sf(crit, df, nc))
    # P(T < -crit) as the mirrored upper tail: scipy 1.17's nct.cdf gives NaN far in the left
    # tail (nc above about 7.6), where its sf at -nc gives the value, tiny by then
    lower = float(stats.nct.sf(crit, df, -nc))
    if math.isnan(lower) and special.ndtr(-nc) < 1e-12:  # P(T < -crit) <= P(T < 0) = Phi(-nc)
        lower = 0.0
    if not math.isfinite(upper + lower):
        raise FloatingPointError(f"noncentral t power undefined at n={n}, effect={effect}")
    return upper + lower


# --- helpers --------------------------------------------------------------------------------


def _finite_1d(values: Sequence[float], what: str) -> np.ndarray:
    """A float64 vector; NaN or infinity raise (they would poison every resample)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} holds a non-finite value")
    return v


def _score_matrix(scores: np.ndarray) -> np.ndarray:
    """A (blocks x treatments) float array with at least 2 of each and no NaN."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"scores must be 2-D (blocks x treatments), got shape {x.shape}")
    if x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"need at least 2 blocks and 2 treatments, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("scores hold NaN")
    return x


def _win_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + P(x == y) / 2 over all pairs along the last axes, in bounded-memory blocks."""
    lead = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    nx, ny = x.shape[-1], y.shape[-1]
    xb = np.broadcast_to(x, (*lead, nx)).reshape(-1, nx)
    yb = np.broadcast_to(y, (*lead, ny)).reshape(-1, ny)
    out = np.empty(xb.shape[0])
    step = max(1, _CHUNK // (nx * ny))
    for start in range(0, xb.shape[0], step):
        a = xb[start : start + step, :, None]
        b = yb[start : start + step, None, :]
        wins = np.count_nonzero(a > b, axis=(1, 2)) + 0.5 * np.count_nonzero(a == b, axis=(1, 2))
        out[start : start + step] = wins / (nx * ny)
    return out.reshape(lead)


def _bootstrap(
    samples: list[np.ndarray],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    estimate: float,
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float | None, float | None]:
    """Percentile interval of `statistic(samples)`, each sample resampled independently by
    scipy.stats.bootstrap with default_rng(seed). A single-value sample is passed as a constant
    (scipy needs two values to resample; resampling one value gives it back anyway); none with
    two or more: (None, None). All resampled statistics equal: (estimate, estimate)."""
    from scipy import stats

    moving = [i for i, s in enumerate(samples) if s.size >= 2]
    if not moving:
        return None, None

    def vectorized(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = resampled[0].shape[:-1]
        full = [np.broadcast_to(s, (*batch, s.size)) for s in samples]
        for i, r in zip(moving, resampled, strict=True):
            full[i] = r
        return statistic(full)

    result = stats.bootstrap(
        [samples[i] for i in moving],
        vectorized,
        paired=False,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        confidence_level=confidence,
        **_rng_keyword(seed),
    )
    spread = result.bootstrap_distribution
    if np.all(spread == spread[0]):
        return estimate, estimate
    ci = result.confidence_interval
    return float(ci.low), float(ci.high)


def _rng_keyword(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 names the generator `rng`; the project allows scipy 1.11 (`random_state`)."""
    from scipy import stats

    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}
