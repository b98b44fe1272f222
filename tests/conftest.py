"""Shared fixtures: quiet TensorFlow, the registry, and the regbench CLI run in this process
(`cli`, fast) or in a fresh one (`cli_subprocess`, for what only a fresh process shows)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

TESTS = Path(__file__).resolve().parent

# No deadline: a loaded machine must not fail a property test. Tests that build Keras models
# set their own small max_examples; HYPOTHESIS_PROFILE=thorough draws more for the rest.
settings.register_profile("fast", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keep each `xdist_group` on one worker. pytest-xdist 3.8 marks a grouped test by setting
    `item._nodeid` to `<nodeid>@<group>`, which pytest 9.2 ignores (the id now lives in
    `item._id`): every group was split over both workers, each training its module's fixture.
    This sets the suffix where pytest reads it, and does nothing once xdist's own one shows."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers under loadgroup
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if names and "@" not in item.nodeid.rpartition("]")[2]:
            item._id = type(item._id).parse(f"{item.nodeid}@{'_'.join(sorted(names))}")


@pytest.fixture(scope="session")
def registry():
    from regbench.plugins.manager import registry as get

    return get()


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made once: MLflow's migrations take seconds."""
    pytest.importorskip(
        "mlflow", reason="MLflow is an optional extra: pip install 'regbench[mlflow]'"
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "mlartifacts"))
    store.engine.dispose()
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_db(_empty_mlflow_db, tmp_path):
    """`sqlite:///` URI of an empty MLflow store in tmp_path (a copy of one made per session),
    for tests of what regbench writes there rather than of how a new store is made."""
    import shutil

    shutil.copyfile(_empty_mlflow_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


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
def cli_subprocess():
    """The CLI in a fresh Python: for what only a new process shows (imports, installed plugins,
    signals). Each call costs a Python start, and a TensorFlow import if the command needs it."""
    return run_cli


@pytest.fixture
def cli(capsys, monkeypatch):
    """`regbench ARGS` through `regbench.cli.main` in this process, with stdout and stderr
    captured: a CompletedProcess as `cli_subprocess` gives, without starting Python and
    TensorFlow again. `env` is set for the call only (workers the call starts inherit it)."""
    from regbench.cli import main

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        if env and "PYTHONPATH" in env:
            raise ValueError("PYTHONPATH only acts on a fresh process: use cli_subprocess")
        capsys.readouterr()  # what the test printed before is not the command's output
        with monkeypatch.context() as patch:
            patch.setenv("NO_COLOR", "1")
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            if cwd is not None:
                patch.chdir(cwd)
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, --version and usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["regbench", *args], code, out, err)

    return run


def pids_gone(pids, timeout: float = 10.0) -> bool:
    """Whether every process in `pids` has ended (zombies count as ended) within `timeout`."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [
            p
            for p in pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return True
        time.sleep(0.2)
    return False
