"""Shared fixtures: quiet TensorFlow, the registry, and a regbench CLI runner in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def registry():
    from regbench.plugins.manager import registry as get

    return get()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`python -m regbench ARGS` in a fresh process, as a user would run it."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    full_env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "regbench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def cli():
    return run_cli
