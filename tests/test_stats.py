"""Paired statistics against the baseline: differences, intervals, the exact sign-flip test
(the verdict's), the t-test, Holm, and the verdicts, underpowered ones included."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from scipy import stats as scipy_stats

from regbench.reporting import board_text
from regbench.results import grid_stats, leaderboard, stats


def runs_of(values: dict[tuple[str, str], list[float]], **extra) -> pd.DataFrame:
    """ok grid rows: one per (arch, reg) cell and seed, seeds numbered from 0."""
    rows = []
    for (arch, reg), vals in values.items():
        for seed, val in enumerate(vals):
            if val is None:
                continue
            rows.append(
                {
                    "run_id": f"{arch}-{reg}-s{seed}-0000",
                    "cell_hash": f"{arch}/{reg}",
                    "stage": "grid",
                    "arch": arch,
                    "reg": reg,
                    "params": "{}",
                    "tuned": "[]",
                    "seed": seed,
                    "status": "ok",
                    "error": None,
                    "val_accuracy": val,
                    "train_accuracy": val + 0.1,
                    "test_accuracy": val,
                    "total_params": 10,
                    "train_time_s": 1.0,
                    "epochs": 1,
                    **extra,
                }
            )
    return pd.DataFrame(rows)


NO_EPOCHS = pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value"])


def test_paired_matches_scipy_and_the_t_interval():
    a = {0: 0.30, 1: 0.35, 2: 0.33, 3: 0.31}
    b = {0: 0.20, 1: 0.28, 2: 0.21, 3: 0.24}
    result = stats.paired(a, b)
    diffs = [a[s] - b[s] for s in a]
    assert result.n == 4 and result.diff == pytest.approx(sum(diffs) / 4)
    expected = scipy_stats.ttest_rel(list(a.values()), list(b.values())).pvalue
    assert result.p_t == pytest.approx(expected)
    assert result.p_value == 2 / 2**4  # every difference positive: the exact test's floor
    sd = pd.Series(diffs).std(ddof=1)
    assert result.ci95 == pytest.approx(scipy_stats.t.ppf(0.975, 3) * sd / 2)


def test_paired_uses_only_the_shared_seeds():
    result = stats.paired({0: 0.5, 1: 0.6, 7: 0.9}, {1: 0.4, 0: 0.3, 9: 0.1})
    assert result.n == 2 and result.diff == pytest.approx(0.2)


def test_one_shared_seed_has_a_difference_but_no_interval_or_p():
    assert stats.paired({0: 0.5}, {0: 0.3, 1: 0.2}) == stats.Paired(
        1, pytest.approx(0.2), None, None
    )
    assert stats.paired({0: 0.5}, {1: 0.3}) == stats.Paired(0, None, None, None)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_the_same_difference_on_every_seed_is_not_certain_from_a_few_seeds():
    # +0.125 on every seed (exact in binary): zero spread, t = inf and p_t = 0 as ttest_rel has
    # it, but the exact test's p is 2 / 2**n: 3 seeds are underpowered, 6 are better
    a, b = {0: 0.5, 1: 0.625, 2: 0.75}, {0: 0.375, 1: 0.5, 2: 0.625}
    result = stats.paired(a, b)
    expected = scipy_stats.ttest_rel(list(a.values()), list(b.values()))
    assert (result.t, result.p_t) == (expected.statistic, expected.pvalue) == (math.inf, 0)
    assert result.diff == 0.125 and result.ci95 == 0.0 and result.p_value == 0.25
    assert stats.verdict(result, stats.holm({"x": stats.tested(result)})["x"]) == (
        stats.UNDERPOWERED
    )
    assert stats.why_untested(result) == "3 seeds: underpowered"
    six = stats.paired({s: 0.25 + s / 16 for s in range(6)}, {s: 0.125 + s / 16 for s in range(6)})
    assert six.p_value == 2 / 2**6 and stats.why_untested(six) is None
    assert stats.verdict(six, stats.holm({"x": stats.tested(six)})["x"]) == stats.BETTER
    backward = stats.paired(
        {s: 0.125 + s / 16 for s in range(6)}, {s: 0.25 + s / 16 for s in range(6)}
    )
    assert backward.t == -math.inf and stats.verdict(backward, backward.p_value) == stats.WORSE


def test_no_difference_on_any_seed_is_no_significant_difference():
    values = {s: 0.5 + s / 10 for s in range(6)}
    result = stats.paired(values, dict(values))
    expected = scipy_stats.ttest_rel(list(values.values()), list(values.values()))
    assert math.isnan(result.p_t) and math.isnan(expected.pvalue)
    assert math.isnan(result.t) and result.diff == 0.0 and result.ci95 == 0.0
    assert result.p_value == 1.0  # every sign pattern sums to 0: as extreme as the observed
    adjusted = stats.holm({"same": stats.tested(result), "other": 0.01})
    assert adjusted == {"same": 1.0, "other": 0.02}  # a comparison Holm counts
    assert stats.verdict(result, adjusted["same"]) == stats.SAME


def test_a_constant_improvement_is_better_on_the_leaderboard_from_six_seeds():
    base = [0.25 + s / 16 for s in range(6)]
    runs = runs_of({("model1", "none"): base, ("model1", "dropout"): [v + 0.125 for v in base]})
    payload = json.loads(leaderboard.to_json(runs, NO_EPOCHS), parse_constant=pytest.fail)
    dropout = next(r for r in payload["leaderboard"] if r["reg"] == "dropout")
    assert dropout["verdict"] == "better" and dropout["p_value"] == 2 / 2**6
    assert dropout["p_t"] == 0.0 and dropout["why_na"] is None
    assert dropout["diff"] == 0.125 and dropout["diff_ci95"] == 0.0


def test_two_seeds_are_underpowered_not_better():
    """The issue's example: both seeds +0.327 (84/257 validation images) read `better p=0`
    from the t-test; the exact test's smallest p with 2 pairs is 0.5."""
    runs = runs_of(
        {("model3", "none"): [0.1, 0.2], ("model3", "batchnorm"): [0.1 + 84 / 257, 0.2 + 84 / 257]}
    )
    payload = json.loads(leaderboard.to_json(runs, NO_EPOCHS), parse_constant=pytest.fail)
    bn = next(r for r in payload["leaderboard"] if r["reg"] == "batchnorm")
    assert bn["verdict"] == "underpowered" and bn["p_value"] == 0.5 and bn["p_holm"] is None
    assert bn["why_na"] == "2 seeds: underpowered"
    buffer = io.StringIO()
    board_text.render(runs, NO_EPOCHS, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    assert "2 seeds: underpowered" in text and "better" not in text
    assert "fewer than 6 shared seeds" in text  # the note under the table says why
    assert "with the 1 comparisons here, Holm's correction needs 6 seeds" in " ".join(text.split())


seed_values = st.lists(
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(0, 3)), min_size=2, max_size=10
)


@given(seed_values, st.sampled_from([0.0, 0.125, -0.25, 0.1]))
@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_paired_is_ttest_rel(values, shift):
    """t, p_t and the interval as scipy.stats.ttest_rel gives them, degenerate spreads included:
    some draws share one difference on every seed (`shift`), or have no difference at all; the
    verdict from the exact sign-flip p, or underpowered below 6 seeds."""
    a = {seed: x for seed, (x, _, _) in enumerate(values)}
    b = {seed: (a[seed] - shift if kind == 0 else y) for seed, (_, y, kind) in enumerate(values)}
    result = stats.paired(a, b)
    expected = scipy_stats.ttest_rel(list(a.values()), list(b.values()))
    for ours, theirs in ((result.t, expected.statistic), (result.p_t, expected.pvalue)):
        if math.isnan(theirs) or math.isinf(theirs):
            assert ours is not None and (ours == theirs or math.isnan(ours) == math.isnan(theirs))
        else:
            assert ours == pytest.approx(float(theirs), rel=1e-9, abs=1e-300)
    low, high = expected.confidence_interval()
    if math.isfinite(low) and math.isfinite(high):
        assert result.ci95 == pytest.approx((high - low) / 2, rel=1e-9, abs=1e-12)
    diffs = [a[s] - b[s] for s in sorted(a)]
    assert result.p_value == grid_stats.sign_flip_p(diffs)
    p_holm = stats.holm({"x": stats.tested(result)})["x"]
    if len(values) < 6:
        assert stats.verdict(result, p_holm) == stats.UNDERPOWERED and p_holm is None
    elif result.p_value < stats.ALPHA:
        assert stats.verdict(result, p_holm) == (stats.BETTER if result.diff > 0 else stats.WORSE)
    else:
        assert stats.verdict(result, p_holm) == stats.SAME


def test_holm_on_a_worked_example():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted == {
        "a": pytest.approx(0.03),
        "b": pytest.approx(0.06),
        "c": pytest.approx(0.06),
        "d": None,
    }


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 1), max_size=12))
def test_holm_never_lowers_keeps_order_and_caps_at_one(p_values):
    adjusted = stats.holm(p_values)
    assert set(adjusted) == set(p_values)
    for key, p in p_values.items():
        assert p <= adjusted[key] <= 1.0
        assert adjusted[key] <= min(1.0, len(p_values) * p) + 1e-12
    ranked = sorted(p_values, key=p_values.get)
    assert [adjusted[k] for k in ranked] == sorted(adjusted[k] for k in ranked)


def test_a_clear_improvement_is_better_and_noise_is_not_significant():
    runs = runs_of(
        {
            ("model1", "none"): [0.20, 0.25, 0.15, 0.23, 0.21, 0.19, 0.22],
            ("model1", "batchnorm"): [0.30, 0.36, 0.24, 0.33, 0.30, 0.29, 0.33],  # about +0.10
            ("model1", "dropout"): [0.25, 0.18, 0.22, 0.17, 0.20, 0.21, 0.22],  # up and down
            ("model1", "l2"): [0.10, 0.16, 0.04, 0.12, 0.11, 0.08, 0.12],  # about -0.10
        }
    )
    board = leaderboard.table(runs, NO_EPOCHS).set_index("reg")
    assert board.loc["batchnorm", "verdict"] == "better"
    assert board.loc["l2", "verdict"] == "worse"
    assert board.loc["dropout", "verdict"] == "no significant difference"
    assert board.loc["none", "verdict"] == "baseline"
    assert board.loc["batchnorm", "diff"] == pytest.approx(0.1)
    # Holm: three comparisons, so an adjusted p is at least the raw one
    assert (board["p_holm"].dropna() >= board["p_value"].dropna()).all()


def test_the_issue_example_is_not_significant():
    # batchnorm 0.275 +- 0.295 ranks above none 0.196 +- 0.053, but the seeds disagree
    runs = runs_of(
        {("model1", "none"): [0.17, 0.20, 0.218], ("model1", "batchnorm"): [0.13, 0.28, 0.415]}
    )
    board = leaderboard.table(runs, NO_EPOCHS)
    top = board.iloc[0]
    assert top["reg"] == "batchnorm" and top["verdict"] == "underpowered"
    assert top["p_value"] > 0.05 and top["p_t"] > 0.05


def test_one_seed_gives_null_interval_and_p_in_json():
    runs = runs_of({("model1", "none"): [0.196], ("model1", "batchnorm"): [0.459]})
    payload = json.loads(leaderboard.to_json(runs, NO_EPOCHS))
    rows = {row["reg"]: row for row in payload["leaderboard"]}
    assert rows["batchnorm"]["val_ci95"] is None and rows["none"]["val_ci95"] is None
    assert rows["batchnorm"]["p_value"] is None and rows["batchnorm"]["p_holm"] is None
    assert rows["batchnorm"]["diff_ci95"] is None
    assert rows["batchnorm"]["diff"] == pytest.approx(0.263)
    assert rows["batchnorm"]["verdict"] == "n/a"
    assert rows["none"]["verdict"] == "baseline"
    assert rows["batchnorm"]["val_by_seed"] == {"0": 0.459}
    buffer = io.StringIO()
    board_text.render(runs, NO_EPOCHS, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    assert "0.459" in text and "n=1" in text and "0.459 ±" not in text


def test_json_carries_the_statistics_for_several_seeds():
    none = [0.2, 0.25, 0.15, 0.22, 0.18, 0.21]
    runs = runs_of(
        {
            ("model1", "none"): none,
            ("model1", "batchnorm"): [v + 0.1 + s / 100 for s, v in enumerate(none)],
        }
    )
    rows = {r["reg"]: r for r in json.loads(leaderboard.to_json(runs, NO_EPOCHS))["leaderboard"]}
    bn = rows["batchnorm"]
    assert bn["verdict"] == "better" and bn["p_value"] == 2 / 2**6 and 0 < bn["p_t"] < 0.05
    assert bn["p_holm"] == pytest.approx(bn["p_value"])  # one comparison: nothing to correct
    assert bn["diff"] == pytest.approx(0.125, abs=1e-9) and bn["diff_ci95"] > 0
    assert math.isfinite(bn["val_ci95"])


def test_the_baseline_can_be_chosen():
    runs = runs_of(
        {
            # 7 seeds: the exact test's 2/2^7, times Holm's 2 comparisons, is below 0.05
            ("model1", "none"): [0.20, 0.25, 0.15, 0.22, 0.18, 0.21, 0.19],
            ("model1", "dropout"): [0.30, 0.36, 0.24, 0.33, 0.27, 0.30, 0.31],
            ("model1", "batchnorm"): [0.10, 0.15, 0.05, 0.12, 0.08, 0.10, 0.09],
        }
    )
    board = leaderboard.table(runs, NO_EPOCHS, baseline="dropout").set_index("reg")
    assert board.loc["dropout", "verdict"] == "baseline"
    assert board.loc["none", "verdict"] == "worse" and board.loc["batchnorm", "verdict"] == "worse"


def test_cells_compare_only_within_their_architecture_and_protocol():
    runs = pd.concat(
        [
            runs_of({("model1", "none"): [0.2, 0.3], ("model1", "dropout"): [0.3, 0.45]}),
            runs_of({("model2", "dropout"): [0.5, 0.6]}),  # model2 has no baseline
            runs_of({("model1", "dropout"): [0.9, 0.9]}, epochs=5).assign(cell_hash="m1-d-5ep"),
        ]
    )
    board = leaderboard.table(runs, NO_EPOCHS)
    by_cell = board.set_index("cell")
    assert by_cell.loc["model2/dropout", "verdict"] == "n/a"
    assert by_cell.loc["m1-d-5ep", "verdict"] == "n/a"  # none was trained for 1 epoch only
    assert by_cell.loc["model1/dropout", "baseline"] == "model1/none"
    assert by_cell.loc["model1/dropout", "n_paired"] == 2


def test_eighty_columns_show_full_names():
    runs = runs_of(
        {
            ("model1", "none"): [0.20, 0.25, 0.15],
            ("model1", "batchnorm"): [0.30, 0.36, 0.24],
            ("model3", "dropout"): [0.30, 0.36, 0.24],
        }
    )
    buffer = io.StringIO()
    board_text.render(runs, NO_EPOCHS, Console(file=buffer, width=80, no_color=True))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in ("batchnorm", "model1", "model3", "dropout"):
        assert name in text
    assert "…" not in text


def test_wide_shows_every_run_id():
    runs = runs_of({("model1", "none"): [0.2, 0.25], ("model1", "batchnorm"): [0.3, 0.36]})
    buffer = io.StringIO()
    board_text.render(runs, NO_EPOCHS, Console(file=buffer, width=200), wide=True)
    text = buffer.getvalue()
    for run_id in runs["run_id"]:
        assert run_id in text


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=0, max_size=8))
def test_swapping_the_sides_flips_the_difference_and_keeps_the_test(pairs):
    a = {seed: x for seed, (x, _) in enumerate(pairs)}
    b = {seed: y for seed, (_, y) in enumerate(pairs)}
    forward, backward = stats.paired(a, b), stats.paired(b, a)
    assert forward.n == backward.n == len(pairs)
    if forward.diff is not None:
        assert forward.diff == pytest.approx(-backward.diff, abs=1e-12)
    assert forward.ci95 == backward.ci95 or forward.ci95 == pytest.approx(backward.ci95)
    if forward.p_value is not None:
        assert 0 < forward.p_value <= 1 and forward.p_value == backward.p_value
    if forward.p_t is not None and not math.isnan(forward.p_t):  # the t-test and its interval
        assert 0 <= forward.p_t <= 1
        assert forward.p_t == pytest.approx(backward.p_t)
        low, high = forward.diff - forward.ci95, forward.diff + forward.ci95
        assert (forward.p_t < 0.05) == (not low <= 0 <= high) or abs(forward.p_t - 0.05) < 1e-6


@given(
    st.integers(min_value=1, max_value=200),
    st.floats(min_value=0.5, max_value=0.9999),
    st.floats(min_value=-50, max_value=50),
)
def test_student_t_matches_scipy_stats(df, q, t) -> None:
    assert stats.t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)
    assert stats.t_two_sided_p(t, df) == pytest.approx(
        2 * scipy_stats.t.sf(abs(t), df), rel=1e-9, abs=1e-300
    )


def test_ranking_does_not_import_scipy_stats() -> None:
    """scipy.stats costs a second of every command that ranks runs (leaderboard, report)."""
    import subprocess
    import sys

    code = (
        "import sys, pandas as pd; from regbench.results import leaderboard, stats; "
        "leaderboard.ci95(pd.Series([0.5, 0.6, 0.7])); "
        "stats.paired({0: 0.5, 1: 0.7, 2: 0.6}, {0: 0.4, 1: 0.5, 2: 0.45}); "
        "print('scipy.stats' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_baseline_is_matched_on_the_whole_protocol():
    # dropout trained with a cosine schedule is never compared with none at a constant rate
    runs = pd.concat(
        [
            runs_of({("model1", "none"): [0.2, 0.3, 0.25]}, lr_schedule="constant"),
            runs_of({("model1", "dropout"): [0.4, 0.5, 0.45]}, lr_schedule="cosine"),
        ]
    )
    board = leaderboard.table(runs, NO_EPOCHS).set_index("reg")
    assert board.loc["dropout", "verdict"] == "n/a" and pd.isna(board.loc["dropout", "diff"])
    assert board.loc["dropout", "why_na"] == "no none run in this protocol"
    assert board.loc["dropout", "protocol"] == "epochs=1, lr_schedule=cosine"
    assert board.loc["none", "protocol"] == "epochs=1, lr_schedule=constant"
    assert list(board["rank"]) == [1, 1]  # each first in its own protocol


@pytest.mark.parametrize(
    ("column", "one", "other"),
    [
        ("optimizer_options", '{"momentum": 0.9}', "{}"),
        ("engine", "vmapped", "standard"),
        ("precision", "mixed_bfloat16", "float32"),
        ("learning_rate", 0.1, 0.01),
    ],
)
def test_every_protocol_column_separates_baselines(column, one, other):
    runs = pd.concat(
        [
            runs_of({("model1", "none"): [0.2, 0.3]}, **{column: other}),
            runs_of({("model1", "dropout"): [0.4, 0.5]}, **{column: one}),
        ]
    )
    board = leaderboard.table(runs, NO_EPOCHS).set_index("reg")
    assert board.loc["dropout", "verdict"] == "n/a"


def test_a_missing_protocol_value_is_its_default():
    # rows written before lr_schedule and engine existed hold nothing there: the defaults
    old = runs_of({("model1", "none"): [0.2, 0.3, 0.25]}, lr_schedule=None, engine=None)
    new = runs_of({("model1", "dropout"): [0.3, 0.4, 0.35]}, lr_schedule="constant")
    board = leaderboard.table(pd.concat([old, new.assign(engine="standard")]), NO_EPOCHS)
    dropout = board.set_index("reg").loc["dropout"]
    assert dropout["baseline"] == "model1/none" and dropout["n_paired"] == 3
    assert set(board["protocol"]) == {"epochs=1"}


def test_every_n_a_says_why():
    runs = pd.concat(
        [
            runs_of({("model1", "none"): [0.2, None, None], ("model1", "l2"): [0.3]}),
            runs_of({("model1", "dropout"): [None, 0.5, 0.6]}),  # seeds 1, 2: none has 0
            runs_of({("model2", "dropout"): [0.5, 0.6]}),  # no none for model2 at all
            runs_of({("model3", "dropout"): [0.5, 0.6]}),
            runs_of({("model3", "none"): [0.1, 0.1]}).assign(status="diverged", val_accuracy=None),
        ]
    )
    board = leaderboard.table(runs, NO_EPOCHS).set_index(["arch", "reg"])
    why = board["why_na"].to_dict()
    assert why[("model1", "l2")] == "n=1: one shared seed"
    assert why[("model1", "dropout")] == "no shared seeds"
    assert why[("model2", "dropout")] == "no none run in this protocol"
    assert why[("model3", "dropout")] == "none not run: 2 diverged"
    assert (board["verdict"][board["why_na"].notna()] == "n/a").all()
    buffer = io.StringIO()
    board_text.render(runs, NO_EPOCHS, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    for reason in ("n=1: one shared seed", "no shared seeds", "none not run: 2 diverged"):
        assert reason in text


def test_an_interval_past_what_an_accuracy_can_be_is_shown_within_it():
    """Two seeds' t interval (t = 12.7) on an accuracy: `0.595 ± 2.175` claimed values no
    accuracy has; the part within [0, 1] is what the data allow."""
    from regbench.results.format import DIFFERENCE, mean_and_ci

    assert mean_and_ci(0.595, 2.175) == "0.595 [0.000, 1.000]"
    assert mean_and_ci(0.95, 0.08) == "0.950 [0.870, 1.000]"
    assert mean_and_ci(0.5, 0.1) == "0.500 ± 0.100" and mean_and_ci(0.5, None) == "0.500"
    assert mean_and_ci(0.15, 2.5, "+", DIFFERENCE) == "+0.150 [-1.000, +1.000]"


@given(st.floats(0, 1), st.floats(0, 10))
def test_a_shown_interval_never_leaves_the_unit_range(mean, ci):
    from regbench.results.format import mean_and_ci

    text = mean_and_ci(mean, ci)
    if "[" in text:
        low, high = (float(x) for x in text.split("[")[1].rstrip("]").split(","))
        assert 0 <= low <= round(mean, 3) <= high <= 1
    else:
        assert mean - ci >= 0 and mean + ci <= 1


def test_eighty_columns_keep_a_tuned_cells_rank_seeds_and_verdict_whole():
    """A tuned cell's `rate=0.120928 (tuned: rate)` used to take the width the verdict needed:
    `#` blank, `1…` for n, the verdict cut off at the edge."""
    runs = runs_of({("model3", "none"): [0.2, 0.25], ("model3", "dropout"): [0.22, 0.21]})
    tuned = runs["reg"] == "dropout"
    runs.loc[tuned, "params"] = '{"rate": 0.120928}'
    runs.loc[tuned, "tuned"] = '["rate"]'
    buffer = io.StringIO()
    board_text.render(runs, NO_EPOCHS, Console(file=buffer, width=80, no_color=True))
    text = buffer.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    rows = [line for line in lines if line.count("│") == 7]  # every column there, none cut
    dropout = next(line for line in rows if "dropout" in line)
    assert dropout.startswith("2│") and "2/2" in dropout and "rate=0.120928" in dropout
    assert "-0.010±0.381" in dropout and "2 seeds:" in dropout
    assert any(line.rstrip().endswith("│underpowered") for line in rows)
    assert "(tuned: rate)" in text
