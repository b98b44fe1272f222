"""Faults of the environment (an operator's probe): bad input or environment, permission
problems, a full disk at model save and Ctrl-C pressed many times. One named test each; every
fault must give one line and its exit code, never a traceback, and lose nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS, pids_gone, run_cli

import regbench
from regbench.results import lock

FAKE = ["--trainer", "fake_trainer:train", "--dataset", "digits", "--epochs", "1"]


def _grid(folder: Path, *regs: str) -> list[str]:
    return ["run", "--arch", "model1", "--reg", ",".join(regs), *FAKE, "--experiment", str(folder)]


def faultrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`regbench ARGS` in a fresh process with the write faults `env` names injected
    (tests/faultplan.py)."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "faultrun", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", **env},
        timeout=300,
    )


def one_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The command's single line of complaint (and that it exited `code`, with no traceback)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def finished(cli, tmp_path) -> Path:
    """An experiment folder holding two finished runs of the fake trainer."""
    folder = tmp_path / "exp"
    assert cli(*_grid(folder, "none", "dropout"), "--executor", "inprocess").returncode == 0
    return folder


# ---------------------------------------------------------------- 5: bad input, environment


def test_a_nested_list_in_an_experiment_file_is_one_line(cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[params.dropout]\nrate = [[0.1]]\n")
    result = cli(*_grid(tmp_path / "exp", "dropout"), "--config", str(config))
    assert "a sweep is a flat list of values" in one_line(result)
    assert not (tmp_path / "exp").exists()


def test_an_unknown_keras_backend_is_one_line(cli):
    line = one_line(cli("describe", "--arch", "model1", env={"KERAS_BACKEND": "nosuch"}))
    assert "KERAS_BACKEND='nosuch' is not a Keras backend" in line


def test_a_model_larger_than_memory_is_refused_before_it_is_built(cli):
    line = one_line(cli("describe", "--arch", "model1", "--classes", "100000000000"))
    assert "--classes 100000000000" in line and "of memory" in line and "fewer classes" in line


def test_synthetic_images_larger_than_memory_are_refused_before_allocating(cli, tmp_path):
    folder = tmp_path / "exp"
    args = ["run", "--arch", "model1", "--reg", "none", "--dataset", "synthetic"]
    args += ["--dataset-option", "height=100000", "--dataset-option", "width=100000"]
    args += ["--trainer", "fake_trainer:train", "--experiment", str(folder)]
    line = one_line(cli(*args))
    assert "synthetic images of 1400 x 100000x100000x3 needs about" in line
    assert not folder.exists()


def test_export_to_a_tracking_uri_that_cannot_be_made_is_one_line(cli, finished):
    pytest.importorskip("mlflow", reason="MLflow is an optional extra")
    result = cli("export", str(finished), "--tracking-uri", "file:///proc/nope")
    assert "cannot create the MLflow store folder /proc/nope" in one_line(result)


# ---------------------------------------------------------------- 6: permissions


@pytest.mark.parametrize("command", ["run", "doctor"])
def test_a_folder_named_like_the_lock_is_one_line(cli, finished, command):
    (finished / lock.LOCK_NAME).unlink()
    (finished / lock.LOCK_NAME).mkdir()
    args = _grid(finished, "none", "l2") if command == "run" else ["doctor", str(finished)]
    assert "is a folder, not a lock file" in one_line(cli(*args))
    assert list(regbench.load(finished).runs["status"]) == ["ok", "ok"]


@pytest.mark.parametrize("command", ["run", "doctor"])
def test_a_lock_owned_by_another_user_is_one_line(cli, finished, command, monkeypatch):
    opened = os.open

    def another_users(path, flags, *args):
        if str(path).endswith(lock.LOCK_NAME):
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", another_users)
    args = _grid(finished, "none", "l2") if command == "run" else ["doctor", str(finished)]
    assert "cannot be opened for writing" in one_line(cli(*args))


def _immutable(path: Path) -> bool:
    """Make `path` immutable (chattr +i); False where the file system or the user cannot."""
    chattr = shutil.which("chattr")
    done = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True)
    return bool(done and done.returncode == 0)


def test_an_immutable_lock_is_one_line(cli, finished):
    path = finished / lock.LOCK_NAME
    if not _immutable(path):
        pytest.skip("chattr +i is not available here")
    try:
        assert "cannot be opened for writing" in one_line(cli("doctor", str(finished)))
        assert "cannot be opened for writing" in one_line(cli(*_grid(finished, "none", "l2")))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_file_in_the_place_of_the_logs_folder_stops_the_grid_before_training(cli, finished):
    (finished / "logs").write_text("a file where the logs folder goes")
    result = cli(*_grid(finished, "none", "l2"), env={"FAKE_FAIL_ON": "model1/l2"})
    assert f"{finished / 'logs'} is not a folder" in one_line(result)
    assert len(regbench.load(finished).runs) == 2  # nothing trained


def test_an_unwritable_logs_folder_stops_the_grid_before_training(cli, finished):
    (finished / "logs").mkdir()
    if os.geteuid() != 0:
        (finished / "logs").chmod(0o500)
    elif not _immutable(finished / "logs"):
        pytest.skip("root, and chattr +i is not available here")
    try:
        result = cli(*_grid(finished, "none", "l2"), env={"FAKE_FAIL_ON": "model1/l2"})
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(finished / "logs")], check=True)
        (finished / "logs").chmod(0o700)
    assert f"cannot write in {finished / 'logs'}: permission denied" in one_line(result)
    assert len(regbench.load(finished).runs) == 2  # nothing trained


@pytest.mark.slow
def test_a_log_that_cannot_be_written_mid_grid_stops_it_with_one_line(tmp_path):
    folder = tmp_path / "exp"
    env = {"FAKE_FAIL_ON": "model1/dropout", "REGBENCH_TEST_FAULTS": "logs:EACCES"}
    result = faultrun(*_grid(folder, "none", "dropout", "l2"), "--workers", "1", env=env)
    assert "permission denied" in one_line(result)
    runs = regbench.load(folder).runs.set_index("reg")
    assert runs.loc["dropout", "status"] == "failed"  # recorded before its log was refused


# ---------------------------------------------------------------- 7: disk full at model save


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "where"),
    [("ENOSPC", ["--workers", "1"]), ("EACCES", ["--executor", "inprocess"])],
)
def test_a_model_that_cannot_be_saved_stops_the_grid(tmp_path, fault, where):
    """Saved in a worker (reported to the parent) or in the parent itself: the grid stops."""
    folder = tmp_path / "exp"
    env = {"FAKE_MODEL_BYTES": "64", "REGBENCH_TEST_FAULTS": f"model:{fault}@2"}
    result = run_cli(*_grid(folder, "none", "dropout", "l2"), *where, env=env)
    why = "the disk is full" if fault == "ENOSPC" else "permission denied"
    line = one_line(result)
    assert line.startswith("regbench: error: cannot record run ") and why in line
    runs = regbench.load(folder).runs
    assert list(runs["status"]) == ["ok"]  # the first run kept; none recorded failed
    assert [p.name for p in (folder / "models").iterdir()] == [f"{runs['run_id'][0]}.keras"]


def _tmpfs_works(folder: Path) -> bool:
    probe = ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "none", str(folder)]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare")
def test_a_really_full_disk_at_model_save_stops_the_grid(tmp_path):
    """A 1 MB tmpfs in a mount namespace of our own (no root needed): the third model fills it."""
    folder = tmp_path / "exp"
    folder.mkdir()
    if not _tmpfs_works(folder):
        pytest.skip("unshare -rm cannot mount a tmpfs here")
    run = [sys.executable, "-m", "regbench", *_grid(folder, "none", "dropout", "l2", "batchnorm")]
    show = [sys.executable, "-c", f"import regbench; print(*regbench.load('{folder}').runs.status)"]
    script = (
        f"mount -t tmpfs -o size=1m none {folder} && "
        f"{subprocess.list2cmdline(run)} --workers 1; echo rc=$?; {subprocess.list2cmdline(show)}"
    )
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "FAKE_MODEL_BYTES": "400000"}
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert "Traceback" not in done.stderr and "rc=2" in done.stdout, done.stderr
    assert "the disk is full" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ok ok"  # two models fit, both kept


# ---------------------------------------------------------------- 8: Ctrl-C again and again


@pytest.mark.slow
def test_ctrl_c_pressed_three_times_exits_130_within_a_second(tmp_path):
    import psutil

    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "FAKE_SLEEP": "25"}
    args = _grid(tmp_path / "exp", "none", "dropout", "l2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "regbench", *args, "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(psutil.Process(proc.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [p.pid for p in psutil.Process(proc.pid).children()]
    time.sleep(3)  # the workers are training
    began = time.monotonic()
    for _ in range(3):  # a terminal's Ctrl-C, to the whole foreground group, three times
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.001)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - began
    assert proc.returncode == 130 and took < 1.5, (proc.returncode, took, err)
    assert "Traceback" not in err + out and "rerun the same command to resume" in out + err
    assert pids_gone(workers)


@pytest.mark.slow
def test_final_stops_with_one_error_when_its_model_cannot_be_saved(tmp_path, monkeypatch):
    """`final` as `run`: a full disk at model save is an error naming it, not a failed row."""
    import errno

    import keras

    from regbench.errors import RegbenchError

    folder = tmp_path / "exp"
    regbench.run(
        arch="model1", reg="none", dataset="digits", epochs=1, experiment=folder,
        executor="inprocess",
    )  # fmt: skip

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "model.keras")

    monkeypatch.setattr(keras.Model, "save", full)
    with pytest.raises(RegbenchError, match="the disk is full"):
        regbench.final(folder, arch="model1", reg="none")
    assert list(regbench.load(folder).runs["stage"]) == ["grid"]  # nothing recorded failed
