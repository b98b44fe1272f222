"""The divergence verdict is the same on every backend and engine: the lab's learning rate
times 300 blows model1 up on TensorFlow, on JAX (whose loss is clipped) and in the vmapped
engine alike, with or without L2 (docs/faults.md, "The divergence rule")."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

GRID = [
    "run",
    "--arch",
    "model1",
    "--reg",
    "none,l2",
    "--dataset",
    "digits",
    "--epochs",
    "2",
    "--learning-rate",
    "3",
    "--seeds",
    "4",
]


def _statuses(folder, backend: str, *extra: str) -> dict[int, str]:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run(
        [sys.executable, "-m", "regbench", *GRID, *extra, "--experiment", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    with (folder / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["engine"] for r in rows} == {"vmapped" if extra else "standard"}
    return {(r["reg"], int(r["seed"])): r["status"] for r in rows}


@pytest.mark.slow
def test_the_learning_rate_3_grid_diverges_alike_everywhere(tmp_path):
    pytest.importorskip("jax")
    tensorflow = _statuses(tmp_path / "tf", "tensorflow")
    jax = _statuses(tmp_path / "jax", "jax")
    vmapped = _statuses(tmp_path / "vmapped", "jax", "--engine", "vmapped")
    assert (
        tensorflow
        == jax
        == vmapped
        == dict.fromkeys([(reg, seed) for reg in ("none", "l2") for seed in range(4)], "diverged")
    ), (
        tensorflow,
        jax,
        vmapped,
    )
