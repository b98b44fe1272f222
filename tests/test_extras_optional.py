"""Ray, JAX and MLflow are optional extras: without them the core path (`--help`, `list`,
`run`, `report`, all `make demo` does) works, and a command that needs one names the extra in
one line and exits 2. Each command runs in a fresh Python whose sitecustomize hides the three
packages, so the worker processes a run starts lack them too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXTRAS = ("ray", "jax", "mlflow")
HIDE_EXTRAS = f"""
import sys
from importlib.abc import MetaPathFinder


class _NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.fixture
def without_extras(tmp_path):
    """An environment for `cli_subprocess` in which `import ray` (jax, mlflow) fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_EXTRAS)
    path = [str(site), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path)), "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_the_extras_are_hidden(without_extras):
    """The check below would prove nothing if the extras could still be imported."""
    env = {**os.environ, **without_extras}
    for module in EXTRAS:
        code = f"import {module}"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 1
        assert f"No module named '{module}'" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"]])
def test_help_and_list_need_no_extra(cli_subprocess, without_extras, args):
    done = cli_subprocess(*args, env=without_extras, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


GRID = ["run", "--arch", "model1", "--reg", "none", "--dataset", "digits", "--epochs", "1"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (GRID + ["--executor", "ray"], "--executor ray needs Ray: pip install 'regbench[ray]'"),
        (GRID + ["--engine", "vmapped"], "--engine vmapped needs JAX: pip install 'regbench[jax]'"),
        (
            ["export", "{folder}", "--tracking-uri", "file:{folder}/mlruns"],
            "needs MLflow: pip install 'regbench[mlflow]'",
        ),
    ],
    ids=["ray", "jax", "mlflow"],
)
def test_a_command_that_needs_an_extra_names_it(
    cli_subprocess, without_extras, tmp_path, args, message
):
    folder = tmp_path / "experiment"
    args = [a.format(folder=folder) for a in args]
    if args[0] == "run":
        args += ["--experiment", str(folder)]
    done = cli_subprocess(*args, env=without_extras, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not folder.exists()  # refused before the experiment folder was created


@pytest.mark.slow
def test_the_quick_start_runs_and_reports_without_extras(cli_subprocess, without_extras, tmp_path):
    import pandas as pd

    folder = tmp_path / "digits"
    done = cli_subprocess(*GRID, "--experiment", str(folder), env=without_extras)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = pd.read_csv(folder / "runs.csv")
    assert list(runs["status"]) == ["ok"]
    done = cli_subprocess("report", str(folder), env=without_extras)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (folder / "report.html").stat().st_size > 0
