"""grid_stats against independent oracles, each on at least 1,000 random cases (fixed seeds).

Oracles: scipy.stats.permutation_test (sign flips), hand formulas (Friedman, Conover's form),
scikit-posthocs (Nemenyi), Demsar 2006's table (critical difference), scipy.stats.trim_mean and
a hand trimmed mean (IQM), scipy.stats.bootstrap called directly with the same seed and a
statistic written here (intervals), scipy.stats.mannwhitneyu (probability of improvement),
statsmodels' TTestPower (seeds needed).
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import pytest
import scikit_posthocs
from scipy import special, stats
from statsmodels.stats.power import TTestPower

from regbench.results import grid_stats as gs

# Every warning fails here, scipy's and statsmodels' included: the fast tier treats regbench's
# warnings as errors, and a degenerate sample must not make scipy warn through these functions.
# Thousands of oracle cases each take tens of seconds, so these are the slow tier's (the fast
# tier checks the same figures through tests/test_across.py).
pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.slow]

CASES = 1000


def _rng_kw(seed: int) -> dict[str, Any]:
    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


def _scipy_bootstrap(
    samples: list[np.ndarray], statistic: Any, resamples: int, seed: int, confidence: float
) -> tuple[float, float]:
    res = stats.bootstrap(
        samples,
        statistic,
        paired=False,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        confidence_level=confidence,
        **_rng_kw(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _values(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    """Continuous values, or coarse ones with many ties (and zeros, for differences)."""
    if kind == 0:
        return rng.normal(0.0, 1.0, n)
    if kind == 1:
        return rng.integers(-3, 4, n).astype(np.float64)
    return rng.integers(0, 5, n) / 4.0  # quarters: exact in binary, ties by design


# --- sign flip ------------------------------------------------------------------------------


def _scipy_sign_flip(d: np.ndarray) -> float:
    res = stats.permutation_test(
        (d,),
        np.mean,
        vectorized=True,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=np.inf,
    )
    return float(res.pvalue)


def test_sign_flip_matches_scipys_exact_test() -> None:
    # Tolerance 1e-15 absolute: both p-values are a count of sign patterns over 2**(n-1) or
    # 2**n, exact in floating point, so any miscounted pattern (>= 2**-11) would show.
    # scipy needs n >= 2; n = 1 is checked below (one pair: both signs are as extreme).
    rng = np.random.default_rng(101)
    for case in range(1100):
        n = 2 + case % 11  # 2..12
        kind = case % 4
        if kind == 3:  # hundredths: ties that floating point breaks (0.1 + 0.2 != 0.3)
            k = rng.integers(-4, 5, n)
            d, exact = k / 100.0, k.astype(np.float64)
        else:
            d = _values(rng, n, kind)
            if kind == 0 and case % 8 == 0:
                d[: n // 2] = d[0]  # repeated values in continuous data
            exact = d
        # for hundredths the oracle runs on the integers: same p in exact arithmetic, and
        # integer sums are exact, so scipy's own relative tolerance cannot be fooled
        assert gs.sign_flip_p(d) == pytest.approx(_scipy_sign_flip(exact), rel=0, abs=1e-15), d


def test_sign_flip_edge_cases() -> None:
    # Exact values (no tolerance): these are counts of patterns by hand.
    assert gs.sign_flip_p([]) is None
    assert gs.sign_flip_p([0.7]) == 1.0
    assert gs.sign_flip_p([0.0, 0.0, 0.0]) == 1.0
    assert gs.sign_flip_p([0.3, 0.1]) == 0.5  # the smallest p at n = 2
    assert gs.sign_flip_p([0.2, 0.2, -0.2]) == 1.0  # |mean| 0.2/3: 8 of 8 patterns reach it
    # 0 in exact arithmetic, not in floating point; scipy gives 0.9375 on these floats
    assert gs.sign_flip_p([0.1, 0.2, -0.3, 0.1, 0.2, -0.3]) == 1.0
    with pytest.raises(ValueError):
        gs.sign_flip_p([0.1, math.nan])


def _exact_integer_p(k: np.ndarray) -> float:
    """Exact two-sided sign-flip p for integer data by counting subset sums (dynamic
    programming), independent of any enumeration: sum(s * k) = 2 * sum(k[plus]) - sum(k)."""
    observed = abs(int(k.sum()))
    k = np.abs(k)
    total = int(k.sum())
    counts = np.zeros(total + 1, dtype=np.float64)
    counts[0] = 1.0
    for v in k:
        v = int(v)
        if v:
            counts[v:] = counts[v:] + counts[: total + 1 - v].copy()
        else:
            counts *= 2.0
    sums = 2 * np.arange(total + 1) - total
    return float(counts[np.abs(sums) >= observed].sum() / 2.0 ** len(k))


def test_sign_flip_above_20_pairs_estimates_the_exact_p() -> None:
    # Tolerance: 5 binomial standard errors of a 100,000-resample estimate plus 1/100,001 for
    # the (count + 1) / (resamples + 1) shift; seeded, so not flaky. Oracle: exact counting.
    rng = np.random.default_rng(7)
    for case in range(12):
        n = 21 + case
        k = rng.integers(-3, 6, n)
        p = gs.sign_flip_p(k.astype(np.float64))
        exact = _exact_integer_p(k)
        assert p is not None
        assert abs(p - exact) <= 5 * math.sqrt(exact * (1 - exact) / 1e5) + 1 / 100_001, (k, p)
    # all positive: no random pattern reaches the observed sum but the all-plus one (1 in 2**n)
    p = gs.sign_flip_p(rng.uniform(0.1, 1.0, 25))
    assert p is not None and p <= 2 / 100_001
    # the DP oracle itself agrees with the exact path at n <= 20 (exact: both are counts)
    for n in (5, 13, 20):
        k = rng.integers(-3, 6, n)
        assert gs.sign_flip_p(k.astype(np.float64)) == _exact_integer_p(k)


def test_smallest_p() -> None:
    # Exact equality: powers of two. Oracle: all-positive distinct differences, whose only
    # patterns as extreme are all-plus and all-minus, through scipy where it can (n >= 2).
    assert gs.smallest_p(0) == 1.0 and gs.smallest_p(1) == 1.0
    rng = np.random.default_rng(3)
    for n in range(2, 21):
        d = rng.uniform(0.1, 1.0, n)
        assert gs.smallest_p(n) == 2.0 / 2.0**n == gs.sign_flip_p(d)
        if n <= 12:
            assert _scipy_sign_flip(d) == gs.smallest_p(n)
    assert gs.smallest_p(6) < 0.05 < gs.smallest_p(5)
    with pytest.raises(ValueError):
        gs.smallest_p(-1)


# --- Friedman -------------------------------------------------------------------------------


def _scores(rng: np.random.Generator, n: int, k: int, case: int) -> np.ndarray:
    kind = case % 4
    effect = rng.normal(0.0, 0.5, k)  # some treatments better than others
    if kind == 0:
        return rng.normal(0.0, 1.0, (n, k)) + effect
    if kind == 1:  # accuracy-like, many ties within blocks
        return np.round(rng.uniform(0.6, 0.65, (n, k)) + effect / 50, 2)
    if kind == 2:  # heavy ties
        return rng.integers(0, 3, (n, k)).astype(np.float64)
    x = rng.normal(0.0, 1.0, (n, k)) + effect
    x[: n // 2] = 0.5  # whole blocks tied
    return x


def _hand_friedman(x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Conover's form (Practical Nonparametric Statistics, 3rd ed., 5.8): with average ranks
    r_ij, A = sum r_ij**2, C = N k (k+1)**2 / 4, T = (k-1) sum_j (R_j - N(k+1)/2)**2 / (A - C);
    its tie handling is through A, not the sum of t**3 - t that scipy uses. p from the
    regularized upper incomplete gamma (the chi-square tail, k - 1 df)."""
    n, k = x.shape
    ranks = np.array([stats.rankdata(-row) for row in x])  # per row, 1 = best
    a = float(np.sum(ranks**2))
    c = n * k * (k + 1) ** 2 / 4.0
    rank_sums = ranks.sum(axis=0)
    t = (k - 1) * float(np.sum((rank_sums - n * (k + 1) / 2.0) ** 2)) / (a - c)
    return t, float(special.gammaincc((k - 1) / 2.0, t / 2.0)), ranks.mean(axis=0)


def test_friedman_matches_the_textbook_formula_and_scipy() -> None:
    # Tolerance 1e-9 (relative, and absolute near 0): the two formulas are algebraically equal
    # and differ only in rounding of sums of at most 12 * 8 ranks (measured: 9e-14). Mean
    # ranks are exact (multiples of 1/(2N) summed in another order): 1e-12.
    rng = np.random.default_rng(202)
    for case in range(CASES):
        n, k = int(rng.integers(2, 13)), int(rng.integers(2, 9))
        x = _scores(rng, n, k, case)
        got = gs.friedman(x)
        assert got.blocks == n
        ranks = np.array([stats.rankdata(-row) for row in x])
        np.testing.assert_allclose(got.mean_ranks, ranks.mean(axis=0), rtol=0, atol=1e-12)
        if np.all(x == x[:, :1]):  # every block tied: defined as 0, p 1 (scipy: NaN)
            assert (got.statistic, got.p_value) == (0.0, 1.0)
            continue
        stat, p, _ = _hand_friedman(x)
        assert got.statistic == pytest.approx(stat, rel=1e-9, abs=1e-9), x
        assert got.p_value == pytest.approx(p, rel=1e-9, abs=1e-9), x
        if k >= 3:  # scipy refuses two treatments
            ref = stats.friedmanchisquare(*x.T)
            assert got.statistic == pytest.approx(float(ref.statistic), rel=1e-9, abs=1e-9)
            assert got.p_value == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-9)


def test_friedman_direction_ties_and_errors() -> None:
    # Exact: ranks of a fixed order. Treatment 0 always best gets mean rank 1.
    x = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.2], [0.95, 0.6, 0.6]])
    assert gs.friedman(x).mean_ranks == (1.0, 2.0 + 1 / 6, 3.0 - 1 / 6)
    tied = gs.friedman(np.full((4, 3), 0.7))
    assert (tied.statistic, tied.p_value, tied.mean_ranks) == (0.0, 1.0, (2.0, 2.0, 2.0))
    for bad in (np.ones((1, 3)), np.ones((3, 1)), np.ones(3), np.array([[1, 2], [math.nan, 1]])):
        with pytest.raises(ValueError):
            gs.friedman(bad)
        with pytest.raises(ValueError):
            gs.nemenyi(bad)


# --- Nemenyi and the critical difference ----------------------------------------------------


def test_nemenyi_matches_scikit_posthocs_and_the_critical_difference() -> None:
    # Tolerance 1e-9 absolute on p: both call scipy's studentized_range.sf (a numerical
    # integral accurate to about 1e-10 at worst) on q values equal up to rounding (~1e-15),
    # so the p-values agree far below the integral's own error (measured: 1e-15);
    # scikit-posthocs ranks
    # ascending, which only mirrors the ranks (p is symmetric in the two).
    # Consistency: p < alpha exactly when |R_i - R_j| > CD, for pairs more than 1e-6 * CD
    # from the boundary (the quantile is itself found numerically).
    rng = np.random.default_rng(303)
    decided = 0
    for case in range(CASES):
        n, k = int(rng.integers(2, 16)), int(rng.integers(2, 9))
        x = _scores(rng, n, k, case)
        p = gs.nemenyi(x)
        ref = scikit_posthocs.posthoc_nemenyi_friedman(x).to_numpy()
        np.testing.assert_allclose(p, ref, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(p, p.T)
        np.testing.assert_array_equal(np.diag(p), 1.0)
        ranks = np.asarray(gs.friedman(x).mean_ranks)
        for alpha in (0.05, 0.1):
            cd = gs.critical_difference(k, n, alpha)
            gap = np.abs(ranks[:, None] - ranks[None, :])
            clear = np.abs(gap - cd) > 1e-6 * cd
            np.testing.assert_array_equal((p < alpha)[clear], (gap > cd)[clear])
            decided += int(np.count_nonzero((gap > cd) & clear))
    assert decided > 1000  # the consistency check saw many significant pairs too


def test_critical_difference_matches_demsar_table() -> None:
    # Tolerance 1e-3: Demsar 2006 (Table 5) prints q_0.05 / sqrt(2) to three decimals.
    table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    for k, q in zip(range(2, 11), table, strict=True):
        scale = math.sqrt(k * (k + 1) / (6.0 * 10))
        assert gs.critical_difference(k, 10) / scale == pytest.approx(q, abs=1e-3)
    # Demsar's worked example: 4 classifiers on 14 data sets, CD = 1.25 (two decimals)
    assert gs.critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)
    for bad in ((1, 5, 0.05), (3, 0, 0.05), (3, 5, 0.0), (3, 5, 1.0)):
        with pytest.raises(ValueError):
            gs.critical_difference(*bad)


# --- IQM ------------------------------------------------------------------------------------


def _hand_iqm(v: np.ndarray) -> float:
    g = int(0.25 * v.size)  # floor, as trim_mean cuts
    s = np.sort(v)
    return float(np.mean(s[g : v.size - g]))


def test_iqm_matches_trim_mean_and_a_hand_trimmed_mean() -> None:
    # Tolerance 1e-12 absolute on values within [-3, 4]: a mean of the same sorted middle values,
    # summed perhaps in another order (rounding ~1e-15).
    rng = np.random.default_rng(404)
    for case in range(CASES):
        v = _values(rng, int(rng.integers(1, 40)), case % 3)
        assert gs.iqm(v) == pytest.approx(float(stats.trim_mean(v, 0.25)), rel=0, abs=1e-12)
        assert gs.iqm(v) == pytest.approx(_hand_iqm(v), rel=0, abs=1e-12)
    assert gs.iqm([1.0, 2.0, 3.0, 100.0]) == 2.5
    with pytest.raises(ValueError):
        gs.iqm([])


def _strata(rng: np.random.Generator, case: int, allow_single: bool) -> list[np.ndarray]:
    m = int(rng.integers(1, 5))
    low = 1 if allow_single else 2
    return [_values(rng, int(rng.integers(low, 9)), case % 3) for _ in range(m)]


def _with_constants(strata: list[np.ndarray], combine: Any) -> tuple[list[np.ndarray], Any]:
    """The resampled strata (two or more values) and a statistic of them that puts each
    single-value stratum back as a constant, written here apart from grid_stats'."""
    moving = [s for s in strata if s.size >= 2]

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        shape = resampled[0].shape[:-1]
        it = iter(resampled)
        full = [next(it) if s.size >= 2 else np.broadcast_to(s, (*shape, 1)) for s in strata]
        return combine(full, axis)

    return moving, statistic


def _concat_iqm(full: list[np.ndarray], axis: int) -> np.ndarray:
    return stats.trim_mean(np.concatenate(full, axis=axis), 0.25, axis=axis)


def test_iqm_interval_matches_scipy_bootstrap() -> None:
    # Tolerance 1e-12 absolute: the same resamples (same rng stream, same sample order) and a
    # statistic equal up to rounding, so the percentile interval agrees to rounding (~1e-16).
    # 200 resamples keep 1,000 cases fast; every 50th case uses the default 2000 and another
    # confidence level.
    rng = np.random.default_rng(505)
    for case in range(CASES):
        strata = _strata(rng, case, allow_single=True)
        resamples, confidence = (2000, 0.9) if case % 50 == 0 else (200, 0.95)
        got = gs.iqm_interval(strata, confidence, resamples, seed=case)
        assert got.estimate == pytest.approx(
            float(stats.trim_mean(np.concatenate(strata), 0.25)), rel=0, abs=1e-12
        )
        _check_interval(got, strata, _concat_iqm, resamples, case, confidence)


def _check_interval(got, strata, statistic_of, resamples, case, confidence) -> None:
    """`got` is scipy.stats.bootstrap's interval of the same statistic, seed and resamples
    (to 1e-12: the same draws, rounding apart), or None where nothing moves."""
    moving, statistic = _with_constants(strata, statistic_of)
    if not moving:
        assert got.low is None and got.high is None
        return
    low, high = _scipy_bootstrap(moving, statistic, resamples, case, confidence)
    if low == high:  # every resample gave the same figure: the estimate itself
        assert got.low == got.high == got.estimate
        return
    assert got.low == pytest.approx(low, rel=0, abs=1e-12)
    assert got.high == pytest.approx(high, rel=0, abs=1e-12)


def test_iqm_interval_covers_the_true_iqm() -> None:
    # 300 simulated grids: 3 architectures x 10 seeds, normal with means mu - 0.05, mu, mu + 0.05
    # and sd 0.02; the mixture is symmetric about mu, so its IQM is mu. Bounds [0.88, 0.99]:
    # 300 cases give a binomial sd of 1.3 points around 95%, and a percentile bootstrap of 30
    # values undercovers by a point or two; seeded, so deterministic rather than flaky.
    rng = np.random.default_rng(606)
    covered = 0
    for case in range(300):
        mu = rng.uniform(0.5, 0.9)
        strata = [rng.normal(mu + off, 0.02, 10) for off in (-0.05, 0.0, 0.05)]
        got = gs.iqm_interval(strata, seed=case)
        assert got.low is not None and got.high is not None
        covered += got.low <= mu <= got.high
    assert 0.88 <= covered / 300 <= 0.99, covered


def test_iqm_interval_degenerate_and_invalid() -> None:
    # Exact: constant data. filterwarnings("error") proves no scipy warning escapes.
    got = gs.iqm_interval([[0.7, 0.7, 0.7], [0.7, 0.7]])
    assert got.low == got.high == got.estimate == pytest.approx(0.7, abs=1e-15)
    assert gs.iqm_interval([[0.7], [0.8]]) == gs.Interval(0.75, None, None)
    assert gs.iqm_interval([[], [0.5, 0.5]]).estimate == 0.5  # empty strata skipped
    for bad in ([], [[]], [[0.1, math.nan]]):
        with pytest.raises(ValueError):
            gs.iqm_interval(bad)


# --- probability of improvement -------------------------------------------------------------


def _rank_win_rates(full: list[np.ndarray], axis: int) -> np.ndarray:
    """Mann-Whitney U of each x against its y from joint ranks, over nx * ny, mean over strata
    (a rank-based oracle, apart from grid_stats' pairwise comparisons)."""
    m = len(full) // 2
    rates = []
    for x, y in zip(full[:m], full[m:], strict=True):
        shape = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        x = np.broadcast_to(x, (*shape, x.shape[-1]))
        y = np.broadcast_to(y, (*shape, y.shape[-1]))
        ranks = stats.rankdata(np.concatenate([x, y], axis=axis), axis=axis)
        nx, ny = x.shape[-1], y.shape[-1]
        u = ranks[..., :nx].sum(axis=axis) - nx * (nx + 1) / 2.0
        rates.append(u / (nx * ny))
    return np.mean(np.stack(rates), axis=0)


def test_probability_of_improvement_matches_mann_whitney_and_scipy_bootstrap() -> None:
    # Estimate: mannwhitneyu's U / (nx ny) per stratum (U counts ties half), mean over strata;
    # 1e-12 absolute (both are half-integer counts over nx ny, then one mean).
    # Interval: scipy.stats.bootstrap on all 2m samples (unpaired) with the rank-based
    # statistic, same seed; 1e-12 absolute (same resamples, statistic equal up to rounding).
    rng = np.random.default_rng(707)
    for case in range(CASES):
        m = int(rng.integers(1, 5))
        kind = case % 3
        xs = [_values(rng, int(rng.integers(1, 10)), kind) for _ in range(m)]
        ys = [_values(rng, int(rng.integers(1, 10)), kind) + 0.3 for _ in range(m)]
        resamples = 2000 if case % 50 == 0 else 200
        got = gs.probability_of_improvement(xs, ys, resamples=resamples, seed=case)
        u = [
            stats.mannwhitneyu(x, y, method="asymptotic").statistic / (x.size * y.size)
            for x, y in zip(xs, ys, strict=True)
        ]
        assert got.estimate == pytest.approx(float(np.mean(u)), rel=0, abs=1e-12)
        moving, statistic = _with_constants(xs + ys, _rank_win_rates)
        if not moving:
            assert got.low is None and got.high is None
            continue
        low, high = _scipy_bootstrap(moving, statistic, resamples, case, 0.95)
        if low == high:
            assert got.low == got.high == got.estimate
            continue
        assert got.low == pytest.approx(low, rel=0, abs=1e-12)
        assert got.high == pytest.approx(high, rel=0, abs=1e-12)


def test_probability_of_improvement_edges() -> None:
    # Exact: counts by hand. Swapping x and y gives 1 - P.
    x, y = [[0.1, 0.5, 0.9]], [[0.5, 0.5]]
    assert gs.probability_of_improvement(x, y).estimate == pytest.approx(0.5, abs=1e-15)
    a, b = [[0.3, 0.2], [0.9]], [[0.1, 0.25], [0.9, 0.1]]
    p, q = gs.probability_of_improvement(a, b), gs.probability_of_improvement(b, a)
    assert p.estimate == pytest.approx((0.75 + 0.75) / 2) and p.estimate + q.estimate == 1.0
    assert gs.probability_of_improvement([[1.0], [2.0]], [[0.0], [3.0]]).low is None
    same = gs.probability_of_improvement([[0.5, 0.5]], [[0.5, 0.5, 0.5]])
    assert same.low == same.high == same.estimate == 0.5
    for bad_x, bad_y in (([[1.0]], [[1.0], [2.0]]), ([], []), ([[]], [[1.0]])):
        with pytest.raises(ValueError):
            gs.probability_of_improvement(bad_x, bad_y)


# --- seeds needed ---------------------------------------------------------------------------


def _statsmodels_power(effect: float, n: int, alpha: float) -> tuple[float, bool]:
    """statsmodels' power, and whether its NaN had to be replaced: its lower tail
    (special.nctdtr at -crit) is NaN for nc above about 7.6, where that tail is below
    P(T < 0) = Phi(-nc) < 1e-9; then its upper tail alone, 1 - nctdtr(df, nc, crit), as it
    computes that term."""
    power = float(
        TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided")
    )
    if not math.isnan(power):
        return power, False
    nc = effect * math.sqrt(n)
    assert special.ndtr(-nc) < 1e-9
    return 1.0 - float(special.nctdtr(n - 1, nc, stats.t.isf(alpha / 2.0, n - 1))), True


def test_seeds_needed_matches_statsmodels_power() -> None:
    # Oracle: statsmodels' TTestPower at the returned n reaches the target and at n - 1 does
    # not (n > 2). Tolerance 1e-9 on power values: both evaluate the noncentral t (scipy's
    # nct sf here, 1 - special.nctdtr there), which agree to ~1e-12; a target met within
    # 1e-9 either way counts as met. Where statsmodels gives NaN, see _statsmodels_power.
    rng = np.random.default_rng(808)
    replaced = 0
    for case in range(CASES):
        size = int(rng.integers(2, 11))
        d = rng.normal(rng.uniform(-0.02, 0.02), rng.uniform(0.001, 0.03), size)
        sd = float(np.std(d, ddof=1))
        detect = sd * float(np.exp(rng.uniform(np.log(0.08), np.log(4.0))))
        power = (0.8, 0.9, 0.5)[case % 3]
        alpha = (0.05, 0.01)[case % 2]
        n = gs.seeds_needed(d, detect, power, alpha)
        assert n is not None and n >= 2
        es = detect / sd
        at_n, fixed = _statsmodels_power(es, n, alpha)
        replaced += fixed
        assert gs._t_power(es, n, alpha) == pytest.approx(at_n, rel=0, abs=1e-9)
        assert at_n >= power - 1e-9, (n, at_n)
        if n > 2:
            below, fixed = _statsmodels_power(es, n - 1, alpha)
            replaced += fixed
            assert gs._t_power(es, n - 1, alpha) == pytest.approx(below, rel=0, abs=1e-9)
            assert below < power + 1e-9, (n, below)
    assert replaced < CASES // 10  # statsmodels itself answers in the great majority


def test_seeds_needed_undefined_cases() -> None:
    # Exact: None by definition.
    assert gs.seeds_needed([0.01], 0.01) is None  # one diff: no spread
    assert gs.seeds_needed([0.01, 0.01, 0.01], 0.01) is None  # sd 0
    assert gs.seeds_needed([0.0, 0.02], 0.0) is None and gs.seeds_needed([0.0, 0.02], -1) is None
    assert gs.seeds_needed([0.0, 1.0], 1e-4) is None  # beyond 100,000 seeds
    assert gs.seeds_needed([0.0, 1.0], 100.0) == 2  # huge effect: the minimum
    with pytest.raises(ValueError):
        gs.seeds_needed([0.0, 1.0], 0.1, power=1.0)


# --- pooled effect --------------------------------------------------------------------------


def _mean_of_means(full: list[np.ndarray], axis: int) -> np.ndarray:
    return sum(np.mean(s, axis=axis) for s in full) / len(full)


def test_pooled_effect_matches_hand_mean_and_scipy_bootstrap() -> None:
    # Estimate: sum of stratum means / strata by hand, 1e-12 absolute (values within [-3, 4]).
    # Interval: scipy.stats.bootstrap of the same statistic written here, same seed and
    # order, 1e-12 absolute (same resamples, rounding only).
    rng = np.random.default_rng(909)
    for case in range(CASES):
        m = int(rng.integers(1, 6))
        kind = case % 3
        by = {f"arch{i}": _values(rng, int(rng.integers(0, 8)), kind) for i in range(m)}
        if all(v.size == 0 for v in by.values()):
            with pytest.raises(ValueError):
                gs.pooled_effect(by)
            continue
        resamples = 2000 if case % 50 == 0 else 200
        got = gs.pooled_effect(by, resamples=resamples, seed=case)
        strata = [v for v in by.values() if v.size]
        assert (got.strata, got.pairs) == (len(strata), sum(v.size for v in strata))
        hand = sum(float(np.sum(v)) / v.size for v in strata) / len(strata)
        assert got.estimate == pytest.approx(hand, rel=0, abs=1e-12)
        _check_interval(got, strata, _mean_of_means, resamples, case, 0.95)


def test_pooled_effect_single_stratum_is_the_plain_bootstrap_of_the_mean() -> None:
    # Tolerance 1e-12 absolute: scipy.stats.bootstrap((d,), np.mean) with the same seed draws
    # the same resamples; the means differ by rounding only.
    rng = np.random.default_rng(1010)
    for case in range(100):
        d = rng.normal(0.01, 0.02, int(rng.integers(2, 12)))
        got = gs.pooled_effect({"resnet": d}, seed=case)
        res = stats.bootstrap((d,), np.mean, n_resamples=2000, method="percentile", **_rng_kw(case))
        assert got.low == pytest.approx(float(res.confidence_interval.low), rel=0, abs=1e-12)
        assert got.high == pytest.approx(float(res.confidence_interval.high), rel=0, abs=1e-12)


def test_pooled_effect_weighs_architectures_equally_and_degenerates_quietly() -> None:
    # Exact or 1e-15: hand arithmetic on a few values.
    got = gs.pooled_effect({"a": [0.1, 0.3], "b": [0.5], "c": []})
    assert got.estimate == pytest.approx(0.35, abs=1e-15) and (got.strata, got.pairs) == (2, 3)
    assert gs.pooled_effect({"a": [0.1], "b": [0.3]}).low is None
    flat = gs.pooled_effect({"a": [0.02, 0.02, 0.02], "b": [0.04, 0.04]})
    assert flat.low == flat.high == flat.estimate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gs.pooled_effect({"a": [0.0, 0.0]})
    for bad in ({}, {"a": []}, {"a": [math.inf, 0.0]}):
        with pytest.raises(ValueError):
            gs.pooled_effect(bad)
