"""Faults while a grid runs: a crash or kill at any point, a write that fails, a hung run, a
SIGTERM. Whatever happens, finished results are kept and a rerun completes the grid with
every cell ok exactly once."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import fake_trainer
import pandas as pd
import pytest
from conftest import TESTS, pids_gone
from doubles import FAKE_TRAINER, TINY_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regbench.cli import main
from regbench.design.plan import Protocol, RunSpec
from regbench.engine.executor import ExecutorOptions, Hooks, run_with_workers
from regbench.engine.outcome import TRAINING
from regbench.results import exports
from regbench.results import store as store_module
from regbench.results.reader import load

GRID = ["--arch", "model1,model2", "--reg", "none,l2", *TINY_DATA, "--epochs", "1", "--seeds", "2"]
FAKE = FAKE_TRAINER
CELLS = 8


class Crash(BaseException):
    """Stands for the process dying at the chosen point (nothing catches it)."""


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files a write may leave behind."""
    return [
        p for p in [*folder.glob(".*"), *folder.glob("models/.*")] if p.name != ".regbench.lock"
    ]


def _assert_complete(folder: Path) -> pd.DataFrame:
    runs = load(folder).runs
    assert len(runs) == CELLS and runs["run_id"].is_unique and (runs["status"] == "ok").all()
    assert len(pd.read_csv(folder / "runs.csv")) == CELLS
    return runs


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    crash_after=st.integers(0, CELLS - 1),
    point=st.sampled_from(["before commit", "after commit", "during export"]),
)
def test_a_crash_at_any_point_then_a_rerun_completes_every_cell_once(
    tmp_path_factory, crash_after, point
):
    folder = tmp_path_factory.mktemp("grid")
    log = folder.parent / f"{folder.name}.log"
    commit, atomic_csv = store_module._commit_run, exports.atomic_csv
    commits = []

    def crashing_commit(db, values, epochs):
        if len(commits) == crash_after and point == "before commit":
            raise Crash
        commit(db, values, epochs)
        commits.append(values["run_id"])
        if len(commits) == crash_after + 1 and point == "after commit":
            raise Crash

    def crashing_export(frame, path):
        if len(commits) == crash_after + 1 and point == "during export":
            fd = os.open(path.with_name(f".{path.name}.partial"), os.O_CREAT | os.O_WRONLY)
            os.close(fd)  # what a dying write leaves: a temporary file ...
            Path(path.with_name(f".{path.name}.partial")).unlink()  # ... removed on the way out
            raise Crash
        atomic_csv(frame, path)

    args = ["run", *GRID, *FAKE, "--executor", "inprocess", "--experiment", str(folder)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_LOG", str(log))
        patch.setattr(store_module, "EXPORT_EVERY_S", 0.0)  # export after every run
        patch.setattr(store_module, "_commit_run", crashing_commit)
        patch.setattr(exports, "atomic_csv", crashing_export)
        with contextlib.suppress(Crash):
            main(args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_LOG", str(log))
        assert main(args) == 0
    _assert_complete(folder)
    trained = [line.split()[0] for line in log.read_text().splitlines()]
    kept = set(commits)
    assert not kept & set(trained[len(commits) + (point == "before commit") :])  # no retraining
    assert not _leftovers(folder)


def test_a_full_disk_stops_the_grid_with_one_line_and_keeps_what_finished(
    tmp_path, monkeypatch, capsys
):
    commit, calls = store_module._commit_run, []

    def full_disk(db, values, epochs):
        calls.append(values["run_id"])
        if len(calls) == 3:
            raise sqlite3.OperationalError("database or disk is full")
        commit(db, values, epochs)

    monkeypatch.setattr(store_module, "_commit_run", full_disk)
    args = ["run", *GRID, *FAKE, "--executor", "inprocess", "--experiment", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full" in err and calls[2] in err
    assert sorted(load(tmp_path).runs["run_id"]) == sorted(calls[:2])
    assert len(calls) == 3  # the grid stopped there
    assert not _leftovers(tmp_path)
    monkeypatch.setattr(store_module, "_commit_run", commit)
    assert main(args) == 0
    _assert_complete(tmp_path)


def test_a_failing_csv_export_removes_its_temporary_file(tmp_path, monkeypatch, capsys):
    to_csv, calls = pd.DataFrame.to_csv, []

    def no_space(self, handle, **kwargs):
        calls.append(1)
        if len(calls) < 3:  # the exports before the grid starts (runs, epochs) succeed
            return to_csv(self, handle, **kwargs)
        handle.write("run_id,half a row")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    args = ["run", *GRID, *FAKE, "--executor", "inprocess", "--experiment", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full" in err and "runs.csv" in err
    assert len(load(tmp_path).runs) == CELLS  # committed; the export after them failed
    assert not _leftovers(tmp_path) and len(pd.read_csv(tmp_path / "runs.csv")) == 0
    monkeypatch.undo()
    assert main(args) == 0
    _assert_complete(tmp_path)


def train_or_hang(spec, load_data, models_dir, progress):
    """The fake trainer, except that l2 runs hang once training started (a plugin callback
    that sleeps), and dropout runs warm up for 5 s (a loaded machine importing Keras) before
    they train; FAKE_WARM_UP_HANG: every run hangs before it trains."""
    if os.environ.get("FAKE_WARM_UP_HANG"):
        time.sleep(600)
    if spec.reg == "dropout":
        time.sleep(5)
    progress({"run_id": spec.run_id, "event": TRAINING})
    if spec.reg == "l2":
        time.sleep(600)
    return fake_trainer.train(spec, load_data, models_dir, progress)


@pytest.mark.slow
def test_a_run_past_the_timeout_is_killed_and_recorded_and_the_grid_goes_on():
    """The run timeout counts from the run's training start (probe 15: a healthy 4.7 s run
    timed out at 25 s on a loaded machine): a 5 s warm-up under a 3 s timeout is not one."""
    specs = [
        RunSpec(arch=a, reg=r, params={}, seed=0, protocol=Protocol(dataset="synthetic"))
        for a in ("model1", "model2")
        for r in ("none", "l2", "dropout")
    ]
    results = []
    options = ExecutorOptions(
        trainer="test_faults:train_or_hang", devices=[], workers=2, run_timeout=3
    )
    start = time.monotonic()
    run_with_workers(specs, options, Hooks(on_result=results.append))
    assert time.monotonic() - start < 60
    status = {(r.row["arch"], r.row["reg"]): r.row["status"] for r in results}
    assert status == {
        ("model1", "none"): "ok",
        ("model2", "none"): "ok",
        ("model1", "l2"): "timeout",
        ("model2", "l2"): "timeout",
        ("model1", "dropout"): "ok",
        ("model2", "dropout"): "ok",
    }
    timed_out = next(r.row for r in results if r.row["status"] == "timeout")
    assert "3 s" in timed_out["error"]


@pytest.mark.slow
def test_a_run_that_never_starts_training_times_out_after_the_warm_up_allowance(monkeypatch):
    from regbench.engine import executor

    monkeypatch.setattr(executor, "WARM_UP_S", 2.0)
    monkeypatch.setenv("FAKE_WARM_UP_HANG", "1")
    spec = RunSpec(
        arch="model1", reg="none", params={}, seed=0, protocol=Protocol(dataset="synthetic")
    )
    results = []
    options = ExecutorOptions(
        trainer="test_faults:train_or_hang", devices=[], workers=1, run_timeout=1
    )
    start = time.monotonic()
    run_with_workers([spec], options, Hooks(on_result=results.append))
    assert time.monotonic() - start < 60
    assert [r.row["status"] for r in results] == ["timeout"]


def _start(folder: Path, log: Path, sleep: str) -> subprocess.Popen:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "FAKE_SLEEP": sleep}
    env["FAKE_LOG"] = str(log)
    command = [sys.executable, "-m", "regbench", "run", *GRID, *FAKE, "--experiment", str(folder)]
    command += ["--workers", "2"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_a_run(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(load(folder).runs):
                return
        except Exception:  # not created yet
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the grid recorded nothing")


def _workers_gone(log: Path) -> bool:
    return pids_gone({int(line.split()[1]) for line in log.read_text().splitlines()})


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_rerun_resumes(tmp_path):
    folder, log = tmp_path / "grid", tmp_path / "ran.log"
    proc = _start(folder, log, "0.5")
    _wait_for_a_run(folder, proc)
    proc.send_signal(signal.SIGTERM)  # to the parent only, as `timeout` and docker stop do
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out and "rerun the same command to resume" in out
    assert "leaked" not in err and "Traceback" not in err, err
    assert _workers_gone(log), "a worker outlived the scheduler"
    resumed = _start(folder, log, "0")
    resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    _assert_complete(folder)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(delay=st.floats(0.0, 2.0))
def test_kill_9_at_any_moment_then_a_rerun_completes_every_cell_once(tmp_path_factory, delay):
    folder = tmp_path_factory.mktemp("killed")
    log = folder.parent / f"{folder.name}.log"
    proc = _start(folder, log, "0.3")
    _wait_for_a_run(folder, proc)
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=60)
    kept = set(load(folder).runs["run_id"])
    assert _workers_gone(log)
    resumed = _start(folder, log, "0")
    resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    _assert_complete(folder)
    trained = [line.split()[0] for line in log.read_text().splitlines()]
    assert all(trained.count(run) == 1 for run in kept)  # a kept run is never trained again


# ---------------------------------------------------------------- hostile or broken files


def _arrays():
    import numpy as np

    return {"x_train": np.ones((4, 2, 2, 1), np.float32), "y_train": np.arange(4)}


def _truncate(folder: Path) -> None:
    path = folder / "x_train.npy"
    path.write_bytes(path.read_bytes()[:-8])


def _remove(folder: Path) -> None:
    (folder / "y_train.npy").unlink()


def _objects(folder: Path) -> None:
    import numpy as np

    np.save(folder / "x_train.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("damage", [_truncate, _remove, _objects])
def test_a_damaged_dataset_cache_is_discarded_and_rebuilt(tmp_path, damage, caplog):
    import numpy as np

    from regbench.plugins.datasets import cached_arrays

    produced = []

    def produce():
        produced.append(1)
        return _arrays()

    cached_arrays(tmp_path, {"name": "toy"}, produce)
    (folder,) = tmp_path.glob("toy-*")
    damage(folder)
    arrays = cached_arrays(tmp_path, {"name": "toy"}, produce)
    assert len(produced) == 2 and "discarded and rebuilt" in caplog.text
    assert np.array_equal(arrays["x_train"], _arrays()["x_train"])
    again = cached_arrays(tmp_path, {"name": "toy"}, produce)  # the rebuilt cache is good
    assert len(produced) == 2 and sorted(again) == ["x_train", "y_train"]


def test_a_decompression_bomb_or_a_broken_image_gets_one_line(tmp_path, monkeypatch):
    from PIL import Image

    from regbench.errors import RegbenchError
    from regbench.plugins.visualizers import load_image

    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels: past 2x the limit
    with pytest.raises(RegbenchError, match="too many pixels"):
        load_image(tmp_path / "big.png", (32, 32, 3))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # past the limit: only a warning
    with pytest.raises(RegbenchError, match="too many pixels"):
        load_image(tmp_path / "big.png", (32, 32, 3))
    monkeypatch.undo()
    broken = tmp_path / "broken.png"
    broken.write_bytes((tmp_path / "big.png").read_bytes()[:60])
    with pytest.raises(RegbenchError, match="cannot be read") as raised:
        load_image(broken, (32, 32, 3))
    assert "\n" not in str(raised.value)


def test_a_broken_keras_file_gets_one_line(tmp_path):
    from regbench.errors import RegbenchError
    from regbench.results.lookup import open_model

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "r.keras").write_bytes(os.urandom(2048))
    row = pd.Series({"run_id": "r", "model_path": "models/r.keras"})
    with pytest.raises(RegbenchError, match="cannot be loaded") as raised:
        open_model(row, tmp_path)
    assert "\n" not in str(raised.value) and "r.keras" in str(raised.value)


@pytest.mark.slow
def test_a_report_in_a_folder_with_an_undecodable_name_is_written_whole(tmp_path):
    from test_store_damage import filled

    from regbench.reporting.report import write_report

    folder = tmp_path / os.fsdecode(b"exp-\xff")
    filled(folder)
    paths = write_report(folder)
    assert paths["html"].stat().st_size > 1000 and "exp-?" in paths["html"].read_text()
    assert not [p for p in folder.glob(".report*")]


# ---------------------------------------------------------------- divergence


@pytest.mark.parametrize(
    ("logs", "classes", "verdict"),
    [
        ([(2.1, 2.0), (1.9, 1.8), (1.5, 1.4)], 10, None),  # learning
        ([(2.3026, 2.3026), (2.3031, 2.3031)], 10, None),  # at chance: a result, not diverged
        ([(3.9e6, 12.9), (2.3, 2.3)], 10, "over 1.5 ln 10"),  # lr 3's blow-up (TensorFlow)
        ([(13.7, 47.3)], 10, "over 1.5 ln 10"),  # the same on JAX, whose loss is clipped
        ([(3.8, 4.44), (2.33, 2.33)], 10, "over 1.5 ln 10"),  # blown up, then stuck at chance
        ([(3.4, 3.4)], 10, None),  # bad, but not 1.5 times a uniform guess
        ([(2.3, 2.3), (float("nan"), float("nan"))], 10, "nan"),  # not finite
        ([(float("inf"), 16.1)], 10, "inf"),
        ([(2.2, 1.1)], 2, "over 1.5 ln 2"),  # two classes: ln 2 is the guess
        ([(5e9, None)], 10, None),  # no crossentropy measured: only the non-finite rule applies
    ],
)
def test_the_divergence_rule(logs, classes, verdict):
    from regbench.engine.divergence import diverged

    epochs = [
        {"loss": loss} if entropy is None else {"loss": loss, "crossentropy": entropy}
        for loss, entropy in logs
    ]
    reason = diverged(epochs, classes)
    assert (reason is None) if verdict is None else (verdict in reason), reason


def test_the_divergence_statistic_is_one_formula():
    """The floored crossentropy the rule reads, against numpy, for sparse and soft targets
    (test_divergence runs it on every backend and engine): a probability of 0 counts as
    float32's smallest normal, 87.3, not Keras's 1e-7 (16.1)."""
    import numpy as np

    from regbench.engine.divergence import crossentropy
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    p = np.array([[0.7, 0.3, 0.0], [0.2, 0.2, 0.6]], np.float32)
    ids = np.array([0, 2])
    soft = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)
    wanted = -np.log(np.maximum(p, np.finfo(np.float32).tiny))
    got = keras.ops.convert_to_numpy(crossentropy(ids, p, 3))
    np.testing.assert_allclose(got, wanted[[0, 1], ids], rtol=1e-6)
    got = keras.ops.convert_to_numpy(crossentropy(soft, p, 3))
    np.testing.assert_allclose(got, (soft * wanted).sum(axis=1), rtol=1e-6)
    got = keras.ops.convert_to_numpy(crossentropy(np.array([2]), p[:1], 3))
    np.testing.assert_allclose(got, [87.33655], rtol=1e-6)  # confidently wrong: near its logits


def test_a_value_too_large_for_the_store_gets_one_line_and_keeps_the_rest(tmp_path):
    from regbench.errors import RegbenchError
    from regbench.results.store import Store

    spec = RunSpec(arch="model1", reg="none", params={}, seed=0)
    with Store(tmp_path) as store:
        store.record_run({**spec.row(), "status": "ok"}, [])
        huge = RunSpec(arch="model1", reg="none", params={}, seed=1)
        with pytest.raises(RegbenchError, match="does not fit") as raised:
            store.record_run({**huge.row(), "status": "ok", "batch_size": 10**20}, [])
    assert huge.run_id in str(raised.value) and "\n" not in str(raised.value)
    assert list(load(tmp_path).runs["run_id"]) == [spec.run_id]


def test_shutdown_stops_a_worker_that_was_tracked_nowhere():
    """Ctrl-C can land between a worker's start and its bookkeeping (a recycle, a replacement):
    such a worker ignores SIGTERM, and the interpreter's exit would wait for it forever."""
    from regbench.engine import executor

    options = ExecutorOptions(devices=[], workers=1, trainer="fake_trainer:train")
    stray = executor._Worker("cpu9", {}, options)
    assert stray.alive()
    executor._shutdown([])
    assert not stray.alive()
