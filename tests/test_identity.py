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

from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.results.frozen import identity_v3, identity_v4, identity_v5, identity_v6
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
    faster = replace(spec(), execution=Execution(steps_per_execution=8, pipeline="arrays"))
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
    optimizer_options=st.sampled_from([{}, {"momentum": 0.9}, {"momentum": 0.0}]),
    backend=st.none() | st.sampled_from(["tensorflow", "jax", "torch"]),
    split_scheme=st.sampled_from(["unnamed", "fixed-test"]),
)


@settings(max_examples=60, deadline=None)
@given(protocol=protocols, engine=st.sampled_from(["standard", "vmapped"]), seed=st.integers(0, 9))
def test_the_frozen_identity_v5_is_todays(protocol, engine, seed):
    """m008 rehashes stored rows with a frozen copy of identity v5: it must agree with the
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
    assert identity_v5.config_hash(row) == run.config_hash
    assert identity_v5.cell_hash(row) == run.cell_hash
    assert RunSpec.from_row(row).config_hash == run.config_hash


@settings(max_examples=40, deadline=None)
@given(
    protocol=protocols,
    dataset=st.none()
    | st.tuples(st.sampled_from(["regbench 0.3", "x 1+local"]), st.text("ab", min_size=1)),
    jit=st.sampled_from(["auto", "on", "off"]),
    engine=st.sampled_from(["standard", "vmapped"]),
)
def test_the_frozen_identity_v6_is_todays_and_v5_where_nothing_new_was_recorded(
    protocol, dataset, jit, engine
):
    """Identity v6 adds the dataset plugin's provenance and an explicit XLA setting: a row
    with them hashes as the engine does; a row without (a store from before, or XLA left to
    Keras) hashes as v5 did."""
    recorded = {"arch_source": "regbench 0.3", "arch_source_hash": "a1", "reg_source": "r 1"}
    if dataset is not None:
        recorded |= {"dataset_source": dataset[0], "dataset_source_hash": dataset[1]}
    run = RunSpec(
        arch="model2",
        reg="l2",
        params={},
        seed=1,
        protocol=protocol,
        provenance=recorded,
        execution=Execution(jit_compile=jit, engine=engine),
    )
    row = run.row()
    assert identity_v6.config_hash(row) == run.config_hash == RunSpec.from_row(row).config_hash
    assert identity_v6.cell_hash(row) == run.cell_hash
    unchanged = dataset is None and (jit == "auto" or engine == "vmapped")
    assert (identity_v5.config_hash(row) == run.config_hash) == unchanged


def test_the_backend_is_identity_tensorflow_hashes_stay():
    """A run on JAX is another run than one on TensorFlow; TensorFlow, the default, leaves
    the hash of version 4 as it was, so TensorFlow rows keep their ids."""
    tensorflow, jax = spec(backend="tensorflow"), spec(backend="jax")
    assert jax.config_hash != tensorflow.config_hash and jax.cell_hash != tensorflow.cell_hash
    assert identity_v4.config_hash(tensorflow.row()) == tensorflow.config_hash
    assert tensorflow.row()["backend"] == "tensorflow" and jax.row()["backend"] == "jax"


def test_an_unset_backend_is_the_one_runs_started_here_train_on(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as before Keras is imported
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert (
        spec().protocol.backend == "jax" and spec().config_hash == spec(backend="jax").config_hash
    )
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert spec().config_hash == spec(backend="tensorflow").config_hash
    vmapped = replace(spec(), execution=Execution(engine="vmapped"))
    assert vmapped.protocol.backend == "jax"  # its workers start on JAX, whatever this process


def test_keras_backend_reads_what_keras_reads(tmp_path, monkeypatch):
    """Without importing Keras: KERAS_BACKEND, else keras.json under KERAS_HOME, else TF."""
    import sys

    from regbench.design.canonical import keras_backend

    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "torch", "floatx": "float32"}')
    assert keras_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert keras_backend() == "jax"


@pytest.mark.slow
def test_keras_backend_agrees_with_keras_in_a_fresh_process(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    code = (
        "from regbench.design.canonical import keras_backend; before = keras_backend(); "
        "import keras; print(before, keras.backend.backend(), keras_backend())"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert found.stdout.split() == ["jax", "jax", "jax"]


def test_a_protocol_asking_for_another_backend_is_refused(registry, monkeypatch):
    import sys

    from regbench.design.plan import make_plan
    from regbench.errors import RegbenchError

    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(RegbenchError, match="set KERAS_BACKEND=jax, or leave the backend unset"):
        make_plan(registry, ["model1"], ["none"], [0], Protocol(dataset="digits", backend="jax"))


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
    from regbench.design.plan import make_plan

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


@pytest.mark.slow  # a fresh process importing JAX
def test_a_tensorflow_folder_planned_on_jax_is_all_pending(tmp_path, cli, cli_subprocess):
    """Issue 33, item 2: the backend is part of a run. A grid trained on TensorFlow (the fake
    trainer records the backend its specs name) is pending, every run of it, when planned in a
    fresh process on JAX, and plan says why; on TensorFlow it is done."""
    args = ["--arch", "model1", "--reg", "none,dropout", "--dataset", "digits", "--seeds", "2"]
    args += ["--epochs", "1", "--experiment", str(tmp_path / "exp")]
    trained = cli("run", *args, "--trainer", "fake_trainer:train", "--executor", "inprocess")
    assert trained.returncode == 0, trained.stderr
    import regbench

    assert set(regbench.load(tmp_path / "exp").runs["backend"]) == {"tensorflow"}
    assert "done 4, pending 0" in cli("plan", *args).stdout
    jax = cli_subprocess("plan", *args, env={"KERAS_BACKEND": "jax", "COLUMNS": "240"})
    assert jax.returncode == 0, jax.stderr
    out = " ".join(jax.stdout.split())
    assert "done 0, pending 4" in out
    assert out.count("trained on tensorflow; runs here train on jax") == 4


def test_compare_tells_a_tensorflow_folder_from_a_jax_one(tmp_path):
    from regbench.results import compare
    from regbench.results.store import Store as Writer

    for backend in ("tensorflow", "jax"):
        with Writer(tmp_path / backend) as store:
            for seed in (0, 1):
                run = RunSpec(
                    arch="model1",
                    reg="none",
                    params={},
                    seed=seed,
                    protocol=Protocol(dataset="digits", backend=backend),
                )
                scores = {"val_accuracy": 0.5, "train_accuracy": 0.6, "total_params": 1}
                store.record_run({**run.row(), "status": "ok", **scores}, [])
    result = compare.compare([tmp_path / "tensorflow", tmp_path / "jax"])
    (cell,) = result["cells"]
    assert cell["differences"]["jax"]["protocol_differs"] == ["backend"]
