"""Faults of a grid's runs and flags (an operator's probe): --force, a plugin or run calling
sys.exit, timeouts without workers, stored errors, absent GPUs; one named regression test each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from doubles import FAKE_TRAINER, TINY_DATA, RegularizersPlugin, install, registry_with

import regbench
from regbench.api import Regularizer, hookimpl
from regbench.design.plan import RunSpec
from regbench.plugins.manager import Origin


@pytest.mark.slow
def test_force_replaces_a_finished_result_only_with_a_finished_one(tmp_path, cli):
    folder = tmp_path / "exp"
    args = ["run", "--arch", "model1", "--reg", "none,dropout", *TINY_DATA, "--epochs", "1"]
    args += [*FAKE_TRAINER, "--experiment", str(folder)]
    args += ["--workers", "1"]
    assert cli(*args).returncode == 0
    before = regbench.load(folder).runs.set_index("run_id")
    result = cli(*args, "--force", env={"FAKE_DIE_ON": "model1/none"})
    assert "failed" in result.stdout  # the retry's failure is shown as it happens
    after = regbench.load(folder).runs.set_index("run_id")
    assert list(after["status"]) == ["ok", "ok"]
    none = before.index[before["reg"] == "none"][0]
    assert after.loc[none, "val_accuracy"] == before.loc[none, "val_accuracy"]
    attempts = (folder / "logs" / "attempts.jsonl").read_text().splitlines()
    assert [json.loads(a)["run_id"] for a in attempts] == [none]
    assert json.loads(attempts[0])["status"] == "failed"


class SysExit(Regularizer):
    """A regularizer that calls sys.exit while its run builds."""

    name = "sysexit"
    description = "test double"

    def kernel_regularizer(self, params):
        raise SystemExit(3)


class ExitsAtRegistration:
    """A plugin that calls sys.exit while registering."""

    @hookimpl
    def register_architectures(self, register):
        raise SystemExit(0)


def test_a_plugin_calling_sys_exit_is_broken_not_a_silent_exit():
    registry = registry_with(ExitsAtRegistration(), Origin("quitter", "1"))
    assert [b.plugin for b in registry.broken] == ["quitter:0"]
    assert "SystemExit" in registry.broken[0].error
    assert "model1" in registry.names("architectures")


def test_a_run_calling_sys_exit_is_a_failed_row_and_the_grid_goes_on(request):
    from regbench.engine.trainer import train_run
    from regbench.plugins.datasets import Splits

    install(request, RegularizersPlugin(SysExit()))
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 8)
    spec = RunSpec(arch="model1", reg="sysexit", params={}, seed=0)
    result = train_run(spec, lambda: Splits(x, y, x, y, x, y, tuple("0123456789")), None)
    assert result.row["status"] == "failed" and "SystemExit" in result.row["error"]


def test_run_timeout_with_the_inprocess_executor_is_refused(cli, tmp_path):
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "none",
        "--dataset",
        "digits",
        "--executor",
        "inprocess",
        "--run-timeout",
        "5",
        "--experiment",
        str(tmp_path / "exp"),
    )
    assert result.returncode == 2 and "run_timeout needs worker processes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "exp").exists()


def test_a_stored_error_is_plain_text():
    from regbench.engine.outcome import one_line

    error = one_line(ValueError("\x1b[1mbold\x1b[0m and\nmore"))
    assert error == "ValueError: bold and more"


def test_devices_are_checked_against_the_gpus_present(cli, tmp_path):
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "none",
        "--dataset",
        "digits",
        "--devices",
        "7",
        "--trainer",
        "fake_trainer:train",
        "--experiment",
        str(tmp_path / "exp"),
        env={"CUDA_VISIBLE_DEVICES": "-1"},
    )
    assert (
        result.returncode == 2 and "--devices 7: no such GPU here (visible: none)" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "exp").exists()
