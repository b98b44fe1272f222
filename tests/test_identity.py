"""Run identity is the science, all of it, and nothing else (docs/study.md): what changes it,
what does not, and an upgraded store whose finished runs keep counting as done."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest
from doubles import RegularizersPlugin, registry_with
from hypothesis import given, settings
from hypothesis import strategies as st

from regbench.engine.plan import Execution, Protocol, RunSpec
from regbench.results.frozen import identity_v3, identity_v4
from regbench.results.migrations import MIGRATIONS, RUN_COLUMNS
from regbench.results.store import DB_NAME, Store


def spec(**protocol) -> RunSpec:
    return RunSpec(
        arch="model1",
        reg="dropout",
        params={"rate": 0.2},
        seed=1,
        protocol=Protocol(dataset="digits", **protocol),
    )


def test_a_target_is_a_measurement_not_identity():
    assert spec(target=("val_accuracy", 0.5)).config_hash == spec().config_hash


def test_an_unset_learning_rate_is_keras_default():
    assert spec(learning_rate=0.01).config_hash == spec().config_hash  # SGD's default
    assert (
        spec(optimizer="adam").config_hash == spec(optimizer="adam", learning_rate=1e-3).config_hash
    )
    assert spec(learning_rate=0.02).config_hash != spec().config_hash
    assert spec().row()["learning_rate"] == 0.01  # stored as used, so protocols compare


def test_another_engine_is_another_run():
    vmapped = replace(spec(), execution=Execution(engine="vmapped"))
    assert vmapped.config_hash != spec().config_hash
    assert vmapped.cell_hash != spec().cell_hash
    faster = replace(spec(), execution=Execution(jit_compile="on", steps_per_execution=8))
    assert faster.config_hash == spec().config_hash  # speed options stay out


protocols = st.builds(
    Protocol,
    dataset=st.sampled_from(["digits", "cifar10"]),
    epochs=st.integers(1, 20),
    batch_size=st.sampled_from([32, 64]),
    optimizer=st.sampled_from(["sgd", "adam", "rmsprop"]),
    learning_rate=st.none() | st.sampled_from([0.001, 0.01, 0.1]),
    target=st.none() | st.just(("val_accuracy", 0.5)),
    lr_schedule=st.sampled_from(["constant", "cosine"]),
    optimizer_options=st.sampled_from([{}, {"momentum": 0.9}]),
)


@settings(max_examples=60, deadline=None)
@given(protocol=protocols, engine=st.sampled_from(["standard", "vmapped"]), seed=st.integers(0, 9))
def test_the_frozen_identity_v4_is_todays(protocol, engine, seed):
    """m006 rehashes stored rows with a frozen copy of identity v4: it must agree with the
    engine's identity, or an upgraded store would retrain finished runs. (When identity
    changes, bump IDENTITY_VERSION, freeze the new one and add a migration.)"""
    run = RunSpec(
        arch="model2",
        reg="l2",
        params={"strength": 0.01},
        seed=seed,
        protocol=protocol,
        execution=Execution(engine=engine),
    )
    row = run.row()
    assert identity_v4.config_hash(row) == run.config_hash
    assert identity_v4.cell_hash(row) == run.cell_hash


def test_an_upgraded_store_keeps_its_finished_runs_done(tmp_path):
    """A store at schema 5 (hashes of identity 3, learning rate unset) upgraded by m006: its
    runs have today's hashes, so `run` finds them done."""
    run = spec(target=("val_accuracy", 0.5))
    db = sqlite3.connect(tmp_path / DB_NAME)
    for step in MIGRATIONS[:5]:
        step(db, tmp_path)
    db.execute("PRAGMA user_version = 5")
    row = {**run.row(), "learning_rate": None, "status": "ok"}
    row["config_hash"], row["cell_hash"] = identity_v3.config_hash(row), identity_v3.cell_hash(row)
    assert row["config_hash"] != run.config_hash
    columns = [c for c in RUN_COLUMNS if c in row]
    db.execute(
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c] for c in columns],
    )
    db.commit()
    db.close()
    with Store(tmp_path) as store:
        assert store.statuses() == {run.config_hash: "ok"}
        stored = store.db.execute("SELECT learning_rate, cell_hash FROM runs").fetchone()
    assert stored == (0.01, run.cell_hash)


@pytest.mark.parametrize("target", [("val_accuracy", 0.5), ("loss", 0.1), None])
def test_time_to_target_is_measured_from_the_history(tmp_path, target):
    from regbench.engine.outcome import time_to_target

    run = spec(target=target)
    epochs = [
        {"epoch": e, "split": split, "metric": metric, "value": value, "elapsed_s": 2.0 * e}
        for e, (acc, loss) in enumerate([(0.3, 1.0), (0.6, 0.5), (0.7, 0.05)], start=1)
        for split, metric, value in (("val", "accuracy", acc), ("train", "loss", loss))
    ]
    with Store(tmp_path) as store:
        store.record_run({**spec().row(), "status": "ok"}, epochs)
        assert store.measure_targets([run]) == (1 if target else 0)
        got = store.db.execute("SELECT target, epochs_to_target, seconds_to_target FROM runs")
        stored = got.fetchone()
    expected = time_to_target(epochs, target)
    assert stored == (run.target_label, *expected)
    assert (
        expected
        == {("val_accuracy", 0.5): (2, 4.0), ("loss", 0.1): (3, 6.0), None: (None, None)}[target]
    )


def test_a_conflicting_combination_is_a_skipped_cell_not_a_failed_grid():
    from regbench.api import Regularizer
    from regbench.engine.plan import make_plan

    class Rewrite(Regularizer):
        description = "test double"

        def __init__(self, name):
            self.name = name

        def batch(self, images, targets, params, seed, ctx):
            return images, targets

    registry = registry_with(RegularizersPlugin(Rewrite("flip_a"), Rewrite("flip_b")))
    specs = make_plan(
        registry, ["model1"], ["flip_a+flip_b,dropout"], [0, 1], Protocol(dataset="digits")
    )
    skipped = {s.reg: s.skip for s in specs if s.skip}
    reason = "cannot combine flip_a and flip_b: both rewrite training batches; choose one of them"
    assert skipped == {"flip_a+flip_b": reason}
    assert sorted(s.reg for s in specs) == ["dropout", "dropout", "flip_a+flip_b", "flip_a+flip_b"]


def test_adding_a_target_to_a_finished_experiment_trains_nothing(tmp_path, cli):
    """The fake trainer writes its process id per run: rerun with a target, nothing trains,
    and time to target is filled from the stored history."""
    log = tmp_path / "trained.txt"
    args = ["run", "--arch", "model1", "--reg", "none,dropout", "--dataset", "digits"]
    args += ["--epochs", "1", "--trainer", "fake_trainer:train", "--executor", "inprocess"]
    args += ["--experiment", str(tmp_path / "exp")]
    assert cli(*args, env={"FAKE_LOG": str(log)}).returncode == 0
    trained = log.read_text().splitlines()
    assert len(trained) == 2
    result = cli(*args, "--target", "val_accuracy=0", env={"FAKE_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == trained  # nothing trained again
    import regbench

    runs = regbench.load(tmp_path / "exp").runs
    assert set(runs["target"]) == {"val_accuracy>=0.0"} and set(runs["epochs_to_target"]) == {1}
