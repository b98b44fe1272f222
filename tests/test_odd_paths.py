"""Probes 10-12 of the operator's third round: FIFOs and devices where a file is read, `~user`
that names no user, a store that is a link to nothing, an input larger than memory, an
environment number that is not one (and 16: a poisoned dataset cache). Each is one line and
exit 2 (never a hang, never a traceback), and `doctor` repairs the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_store_damage import filled

from regbench.results.reader import load
from regbench.results.store import DB_NAME

NO_USER = "~regbench-no-such-user"


@pytest.mark.parametrize("source", ["fifo", "/dev/zero"])
def test_a_config_that_is_no_regular_file_is_refused_without_reading_it(cli, tmp_path, source):
    if source == "fifo":
        os.mkfifo(tmp_path / "fifo")
        source = str(tmp_path / "fifo")
    result = cli("run", "--config", source, "--experiment", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "is not a regular file" in result.stderr and "TOML file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, env",
    [
        (["--experiment", f"{NO_USER}/exp"], {}),
        (["--config", f"{NO_USER}/exp.toml"], {}),
        (["--cache-dir", f"{NO_USER}/cache"], {}),
        ([], {"REGBENCH_CACHE": f"{NO_USER}/cache"}),
    ],
    ids=["experiment", "config", "cache-dir", "REGBENCH_CACHE"],
)
def test_a_home_of_no_user_is_one_line(cli, tmp_path, args, env):
    base = ["run", "--arch", "model1", "--reg", "none", "--dataset", "digits", "--epochs", "1"]
    base += ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
    if "--experiment" not in args:
        base += ["--experiment", str(tmp_path / "x")]
    result = cli(*base, *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "names no user on this machine" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_store_that_links_to_nothing_is_one_line_and_doctor_rebuilds_it(cli, tmp_path):
    filled(tmp_path)
    (tmp_path / DB_NAME).unlink()
    (tmp_path / DB_NAME).symlink_to(tmp_path / "gone" / DB_NAME)
    for command in (["leaderboard", str(tmp_path)], ["plan", "--experiment", str(tmp_path)]):
        result = cli(*command)
        assert result.returncode == 2 and "is a link to nothing" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert cli("doctor", str(tmp_path)).returncode == 0
    assert len(load(tmp_path).runs) == 4
    assert any(Path(p).is_symlink() for p in tmp_path.glob(f"{DB_NAME}.damaged-*"))


def test_an_input_larger_than_memory_is_refused_before_it_is_built(cli):
    """Probe 12: `describe --input-shape 100000,100000,3` was TensorFlow's OOM traceback."""
    result = cli(
        "describe", "--arch", "model1", "--reg", "none", "--input-shape", "100000,100000,3"
    )
    assert result.returncode == 2 and "one image needs about 120.0 GB" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["²", "١٢x", "-1", "3.5"])
def test_keras_step_limits_must_be_plain_whole_numbers(cli, value):
    """Probe 12: `KERAS_MAX_EPOCHS=²` passed `str.isdigit` and then Keras raised."""
    result = cli("plan", "--arch", "model1", "--reg", "none", env={"KERAS_MAX_EPOCHS": value})
    assert result.returncode == 2 and "must be a whole number" in result.stderr


@pytest.mark.parametrize("recorded", [True, False], ids=["shapes-recorded", "older-cache"])
def test_a_poisoned_dataset_cache_is_discarded_and_rebuilt(tmp_path, caplog, recorded):
    """Probe 16: x.npy replaced by zeros((3, 2, 2, 2)) made every run refuse the data, and
    the cache was trusted forever. Now the cache records each array's shape and dtype (an
    older one is checked for images and labels that agree) and is rebuilt when they differ."""
    import json

    import numpy as np

    from regbench.builtins.datasets import Synthetic

    options = {"size": 70, "height": 8, "width": 8, "cache_dir": tmp_path}
    first = Synthetic().load(0, options)
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith("synthetic-")]
    np.save(entry / "x.npy", np.zeros((3, 2, 2, 2), np.float32))
    if not recorded:
        done = json.loads((entry / "done").read_text())
        del done["shapes"]
        (entry / "done").write_text(json.dumps(done))
    again = Synthetic().load(0, options)
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert "is damaged" in caplog.text and "discarded and rebuilt" in caplog.text
    assert np.load(entry / "x.npy").shape == (70, 8, 8, 3)
