"""`regbench tune`, then `regbench run --tuned` picking the values up (and `run --tune`)."""

from __future__ import annotations

import json

import pytest

from regbench.results.reader import load, load_trials


@pytest.mark.slow
def test_tune_then_run_tuned_uses_the_best_values(cli, tmp_path):
    out = tmp_path / "exp"
    base = ["--arch", "model1", "--dataset", "digits", "--epochs", "1", "--experiment", str(out)]
    tuned = cli("tune", *base, "--reg", "dropout,batchnorm", "--max-trials", "2")
    assert tuned.returncode == 0, tuned.stderr
    assert "best model1 + dropout: rate=" in tuned.stdout
    trials = load_trials(out)
    assert len(trials) == 2 and set(trials["reg"]) == {"dropout"}  # batchnorm: nothing to tune
    best = trials.sort_values("score", ascending=False).iloc[0]
    assert 0.0 <= best["hp.rate"] <= 0.9

    run = cli("run", *base, "--reg", "dropout,none", "--tuned")
    assert run.returncode == 0, run.stderr
    runs = load(out).runs.set_index("reg")
    assert runs.loc["dropout", "params"] == {"rate": best["hp.rate"]}
    assert json.loads(runs.loc["dropout", "tuned"]) == ["rate"]
    assert json.loads(runs.loc["none", "tuned"]) == []
    board = json.loads(cli("leaderboard", str(out), "--json").stdout)["leaderboard"]
    assert {row["reg"]: row["tuned"] for row in board} == {"dropout": "rate", "none": ""}

    explicit = cli("run", *base, "--reg", "dropout", "--tuned", "--param", "dropout.rate=0.3")
    assert explicit.returncode == 0
    chosen = load(out).runs.query("reg == 'dropout'")["params"].tolist()
    assert {"rate": 0.3} in chosen  # an explicit --param wins over the tuned value


@pytest.mark.slow
def test_run_tune_runs_the_stage_first(cli, tmp_path):
    out = tmp_path / "both"
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "l2",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--experiment",
        str(out),
        "--tune",
        "--max-trials",
        "2",
        "--tuner",
        "bayesian",
    )
    assert result.returncode == 0, result.stderr
    row = load(out).runs.iloc[0]
    assert json.loads(row["tuned"]) == ["strength"]
    assert row["params"]["strength"] in set(load_trials(out)["hp.strength"])


def test_tuning_errors_are_one_line(cli, tmp_path):
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "dropout",
        "--dataset",
        "digits",
        "--tuned",
        "--experiment",
        str(tmp_path / "none"),
    )
    assert result.returncode == 2 and "has no tuning results" in result.stderr
    result = cli(
        "tune",
        "--arch",
        "model1",
        "--reg",
        "dropout",
        "--dataset",
        "digits",
        "--tuner",
        "grid",
        "--experiment",
        str(tmp_path / "x"),
    )
    assert result.returncode == 2 and "tuner must be one of random, bayesian, hyperband" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_tuned_values_reach_the_grid_but_not_another_dataset(cli, tmp_path):
    """One real trial; the grids that use its value run the fake trainer."""
    out = tmp_path / "mixed"
    tuned = cli(
        "tune",
        "--arch",
        "model1",
        "--reg",
        "dropout",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--max-trials",
        "1",
        "--experiment",
        str(out),
    )
    assert tuned.returncode == 0, tuned.stderr
    assert "best model1 + dropout: rate=" in tuned.stdout
    (rate,) = load_trials(out)["hp.rate"]
    fake = ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
    grid = ["--arch", "model1", "--dataset", "digits", "--experiment", str(out), *fake]
    run = cli("run", *grid, "--reg", "dropout,none", "--tuned")
    assert run.returncode == 0, run.stderr
    runs = load(out).runs.set_index("reg")
    assert runs.loc["dropout", "params"] == {"rate": rate}
    assert json.loads(runs.loc["dropout", "tuned"]) == ["rate"]
    assert json.loads(runs.loc["none", "tuned"]) == []
    board = json.loads(cli("leaderboard", str(out), "--json").stdout)["leaderboard"]
    assert {row["reg"]: row["tuned"] for row in board} == {"dropout": "rate", "none": ""}
    explicit = cli("run", *grid, "--reg", "dropout", "--tuned", "--param", "dropout.rate=0.3")
    assert explicit.returncode == 0
    assert {"rate": 0.3} in load(out).runs.query("reg == 'dropout'")["params"].tolist()
    other = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "dropout",
        "--dataset",
        "synthetic",
        "--tuned",
        "--experiment",
        str(out),
    )
    assert other.returncode == 2 and "no tuning results on synthetic" in other.stderr
