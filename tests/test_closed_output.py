"""Probe 9 of the operator's third round: a reader that leaves (`| head -2`) or a full device
on stdout (`> /dev/full`) is not the command's fault: the grid trains to its end, exits 0, and
one line on stderr says the output was lost (it used to stop at 3 of 18 runs, silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS

import regbench

pytestmark = pytest.mark.slow  # a grid of 18 fake-trainer runs in a fresh process
GRID = ["run", "--arch", "model1", "--reg", "none,l2,dropout", "--seeds", "6"]
GRID += ["--trainer", "fake_trainer:train", "--dataset", "digits", "--epochs", "1"]
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "NO_COLOR": "1"}


def test_a_reader_that_leaves_does_not_stop_the_grid(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "regbench", *GRID, "--experiment", str(tmp_path / "x")]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # what `head -1` reads, then it leaves
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=300) == 0, err
    assert first.startswith("[1/18]")
    assert len(regbench.load(tmp_path / "x").runs) == 18
    assert "standard output could not be written (Broken pipe)" in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_not_called_the_experiment_disk(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "regbench", *GRID, "--experiment", str(tmp_path / "x")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert len(regbench.load(tmp_path / "x").runs) == 18
    assert "could not be written (No space left on device)" in done.stderr
    assert "disk" not in done.stderr.replace("No space left on device", "")
