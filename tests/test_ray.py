"""`--executor ray` against a local Ray started by the test (usage statistics off)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from conftest import TESTS

from regbench.cli import main
from regbench.results.reader import load

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one Ray cluster


@pytest.fixture(scope="module")
def local_ray():
    # imported here, not at collection: the fast tier deselects this module, yet would import
    # Ray in each pytest-xdist worker while collecting it
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="rbray-", dir="/tmp")  # short: Ray's socket paths are limited
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_USAGE_STATS_ENABLED", "FAKE_DIE_ON")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved["PYTHONPATH"]) if p)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["FAKE_DIE_ON"] = "model1/l2"  # Ray's workers take the environment at init
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )  # stay on loopback
    yield
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(temp, ignore_errors=True)


def test_grid_on_ray_is_written_by_the_driver(local_ray, tmp_path):
    code = main(
        [
            "run",
            "--arch",
            "model1,model2",
            "--reg",
            "none,l2,dropout",
            "--dataset",
            "synthetic",
            "--dataset-option",
            "size=70",
            "--trainer",
            "fake_trainer:train",
            "--executor",
            "ray",
            "--experiment",
            str(tmp_path / "ray"),
        ]
    )
    assert code == 1  # one task's worker killed itself
    runs = load(tmp_path / "ray").runs
    assert len(runs) == 6 and runs["run_id"].is_unique
    dead = runs[(runs["arch"] == "model1") & (runs["reg"] == "l2")].iloc[0]
    assert dead["status"] == "failed" and "ray task failed" in dead["error"]
    ok = runs[runs["status"] == "ok"]
    assert len(ok) == 5 and ok["worker"].str.startswith("ray:").all()


def test_a_real_run_on_ray(local_ray, tmp_path):
    code = main(
        [
            "run",
            "--arch",
            "model1",
            "--reg",
            "batchnorm",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--executor",
            "ray",
            "--experiment",
            str(tmp_path / "real"),
        ]
    )
    assert code == 0
    row = load(tmp_path / "real").runs.iloc[0]
    assert row["status"] == "ok" and row["total_params"] == 53_322
    assert row["model_path"] == f"models/{row['run_id']}.keras"  # relative, in the folder
    assert (tmp_path / "real" / row["model_path"]).exists()  # travelled back to the driver
