"""One writer per experiment folder: a second one is refused at once naming the holder, a
lock left by a killed process is taken over, readers are never blocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS

from regbench.errors import RegbenchError
from regbench.results import lock
from regbench.results.reader import load
from regbench.results.store import Store

HOLD = (
    "import sys, time; from pathlib import Path; from regbench.results.store import Store; "
    "s = Store(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)"
)


def _holder(folder: Path) -> subprocess.Popen:
    """A process holding `folder`'s lock (killed again if it could not take it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    with proc.stdout:  # type: ignore[union-attr]
        said = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if said != "locked":
        proc.kill()
        proc.wait()
        raise AssertionError(f"the holder did not take the lock: {said!r}")
    return proc


def test_a_second_writer_is_refused_naming_the_folder_and_pid(tmp_path):
    Store(tmp_path).close()
    proc = _holder(tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(RegbenchError) as refused:
            Store(tmp_path)
        assert time.monotonic() - start < 2
        assert str(tmp_path) in str(refused.value) and f"pid {proc.pid}" in str(refused.value)
        assert load(tmp_path).runs.empty  # readers keep working
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_writer_is_taken_over(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / lock.LOCK_NAME).read_text().strip() == str(proc.pid)  # stale text
    with Store(tmp_path):
        assert (tmp_path / lock.LOCK_NAME).read_text().strip() == str(os.getpid())


def test_the_lock_is_shared_within_one_process(tmp_path):
    first = Store(tmp_path)
    second = Store(tmp_path)
    second.close()
    with pytest.raises(AssertionError):  # still held: `first` is open
        _holder(tmp_path)
    first.close()
    proc = _holder(tmp_path)  # released for others once the last one closed
    proc.kill()
    proc.wait()


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_exits_2_within_seconds(tmp_path):
    from test_store_damage import FAKE, GRID

    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "FAKE_SLEEP": "3"}
    command = [sys.executable, "-m", "regbench", "run", *GRID, *FAKE, "--experiment", str(tmp_path)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        held = tmp_path / lock.LOCK_NAME
        while not (held.exists() and held.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        start = time.monotonic()
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and time.monotonic() - start < 15
        assert f"pid {first.pid}" in second.stderr and str(tmp_path) in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 0
    runs = load(tmp_path).runs
    assert len(runs) == 4 and runs["run_id"].is_unique
