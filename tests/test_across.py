"""Each regularizer across architectures (results.across): the leaderboard's own effects and
verdicts, pooled, counted and ranked all against all, one protocol at a time; the same numbers
in `leaderboard --by reg`, its JSON, Python and the report."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from test_stats import NO_EPOCHS, runs_of

from regbench.reporting import across_text
from regbench.results import across, grid_stats, leaderboard, stats

ARCHS = ("model1", "model2", "model3")
EFFECTS = {"none": 0.0, "l2": 0.002, "dropout": 0.03, "batchnorm": 0.08}


def grid(seeds: int = 9, noise: float = 0.01, seed: int = 0, **extra) -> pd.DataFrame:
    """ok runs of ARCHS x EFFECTS: each regularizer's effect plus seed noise; 9 seeds, the
    fewest whose exact test survives Holm's correction over 9 comparisons (9 x 2/2^9 < 0.05)."""
    rng = np.random.default_rng(seed)
    values = {}
    for i, arch in enumerate(ARCHS):
        base = 0.3 + 0.1 * i + rng.normal(0, noise, seeds)
        for reg, effect in EFFECTS.items():
            values[(arch, reg)] = list(np.clip(base + effect + rng.normal(0, noise, seeds), 0, 1))
    return runs_of(values, **extra)


def test_effects_are_the_leaderboards_and_pool_over_architectures():
    board = leaderboard.table(grid(), NO_EPOCHS)
    (summary,) = across.summarize(board)
    assert summary.architectures == list(ARCHS) and summary.baseline == "none"
    by_cell = board.set_index(["arch", "reg"])
    for reg in summary.regularizers:
        for arch, effect in reg.effects.items():
            row = by_cell.loc[(arch, reg.name.split(" (")[0])]
            assert effect.diff == pytest.approx(row["diff"]) and effect.verdict == row["verdict"]
            assert effect.n == row["n_paired"] == 9
        means = [reg.effects[a].diff for a in ARCHS]
        assert reg.pooled.estimate == pytest.approx(np.mean(means), abs=1e-12)
        assert reg.pooled.low <= reg.pooled.estimate <= reg.pooled.high
        verdicts = [e.verdict for e in reg.effects.values()]
        assert (reg.helps, reg.hurts) == (verdicts.count("better"), verdicts.count("worse"))
    batchnorm = next(r for r in summary.regularizers if r.name == "batchnorm")
    assert batchnorm.helps == 3 and batchnorm.improvement.estimate > 0.9  # +0.08 everywhere


def test_the_ranking_is_friedman_and_nemenyi_over_complete_blocks():
    runs = grid()
    board = leaderboard.table(runs, NO_EPOCHS)
    (summary,) = across.summarize(board)
    ranking = summary.ranking
    names = list(ranking.names)
    scores = np.array(
        [
            [
                runs[(runs.arch == a) & (runs.seed == s) & (runs.reg == n.split(" (")[0])][
                    "val_accuracy"
                ].item()
                for n in names
            ]
            for a in ARCHS
            for s in range(9)
        ]
    )
    expected = grid_stats.friedman(scores)
    assert ranking.blocks == 27 and ranking.p_value == pytest.approx(expected.p_value)
    assert list(ranking.mean_ranks.values()) == pytest.approx(list(expected.mean_ranks))
    assert min(ranking.mean_ranks, key=ranking.mean_ranks.get) == "batchnorm"
    assert ranking.critical_difference == pytest.approx(grid_stats.critical_difference(4, 27))
    for a in names:
        for b in names:
            assert ranking.nemenyi[a][b] == pytest.approx(ranking.nemenyi[b][a])
    assert ranking.groups == grid_stats.cd_groups(ranking.mean_ranks, ranking.critical_difference)


def test_protocols_are_summarized_apart():
    runs = pd.concat(
        [grid(epochs=1), grid(seed=1, epochs=10).assign(cell_hash=lambda f: f.cell_hash + "-10")]
    )
    summaries = across.summarize(leaderboard.table(runs, NO_EPOCHS))
    assert sorted(s.protocol for s in summaries) == ["epochs=1", "epochs=10"]
    for summary in summaries:
        assert summary.ranking.blocks == 27  # its own 3 x 9, never the other protocol's


def test_few_seeds_one_regularizer_and_lost_cells_have_defined_answers():
    two = across.summarize(leaderboard.table(grid(seeds=2), NO_EPOCHS))[0]
    assert all(
        e.verdict == stats.UNDERPOWERED for r in two.regularizers for e in r.effects.values()
    )
    assert all(r.tested == 0 for r in two.regularizers)
    one = across.summarize(leaderboard.table(grid(seeds=1), NO_EPOCHS))[0]
    pooled = one.regularizers[0].pooled
    assert pooled.low is None and pooled.high is None and pooled.strata == 3  # no interval
    alone = runs_of({("model1", "none"): [0.3, 0.4]})
    (only,) = across.summarize(leaderboard.table(alone, NO_EPOCHS))
    assert only.regularizers == [] and "one regularizer" in only.ranking.why_not
    runs = grid()
    lost = runs[(runs.reg == "dropout") & (runs.arch == "model1") & (runs.seed == 2)].index
    runs.loc[lost, "status"] = "diverged"
    (summary,) = across.summarize(leaderboard.table(runs, NO_EPOCHS))
    dropout = next(r for r in summary.regularizers if r.name == "dropout")
    assert "model1" not in dropout.effects  # its cell lost a seed: not ranked, not summarized
    assert summary.ranking.blocks == 18  # model1's blocks lack dropout: none is complete


def test_the_text_json_and_python_say_the_same(cli, tmp_path):
    from regbench.results.store import Store

    runs = grid()
    with Store(tmp_path) as store:
        for row in runs.to_dict(orient="records"):
            store.record_run({**row, "config_hash": row["run_id"]}, [])
    import regbench

    python = across.to_jsonable(regbench.load(tmp_path).across())
    result = cli("leaderboard", str(tmp_path), "--by", "reg", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["by_reg"] == json.loads(json.dumps(python))
    text = cli("leaderboard", str(tmp_path), "--by", "reg", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "batchnorm" in text and "ranking over 27 blocks" in " ".join(text.split())
    bad = cli("leaderboard", str(tmp_path), "--by", "reg", "--detect", "5")
    assert bad.returncode == 2 and "--detect 5" in bad.stderr and "Traceback" not in bad.stderr


def test_the_terminal_table_marks_each_verdict():
    (summary,) = across.summarize(leaderboard.table(grid(), NO_EPOCHS))
    buffer = io.StringIO()
    across_text.render([summary], Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    batchnorm = next(line for line in text.splitlines() if line.startswith("│ batchnorm"))
    assert batchnorm.count("▲") == 3 and "3/0 of 3" in batchnorm
    assert across_text.marks_note("none") in " ".join(text.split())
