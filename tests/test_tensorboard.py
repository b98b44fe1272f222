"""TensorBoard logs: per-epoch scalars and an HParams summary per run, read back from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regbench.engine import tensorboard
from regbench.engine.plan import Execution, Protocol, RunSpec

SPEC = RunSpec(
    arch="model1",
    reg="dropout",
    params={"rate": 0.3},
    seed=2,
    protocol=Protocol(dataset="digits", epochs=2),
)


def read(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def session_start(events) -> dict:
    """The HParams plugin's record of a run: its hyperparameter values."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    values = data.session_start_info.hparams
    return {
        k: v.string_value or v.number_value for k, v in values.items()
    }, data.session_start_info.group_name


def scalar_values(events, tag: str) -> list[tuple[int, float]]:
    from tensorboard.util import tensor_util

    if tag in events.Tags()["scalars"]:
        return [(e.step, e.value) for e in events.Scalars(tag)]
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def test_a_run_log_holds_epoch_scalars_hparams_and_final_metrics(tmp_path):
    log = tensorboard.RunLog(tmp_path, SPEC)
    log.scalars(1, {"val/accuracy": 0.4, "train/accuracy_running": 0.3})
    log.scalars(2, {"val/accuracy": 0.5, "train/accuracy_running": 0.45})
    log.close({"status": "ok", "epochs_run": 2, "test_accuracy": 0.48, "train_accuracy": 0.6})
    events = read(tmp_path / SPEC.run_id)
    assert scalar_values(events, "val/accuracy") == [(1, pytest.approx(0.4)), (2, 0.5)]
    assert scalar_values(events, "test/accuracy") == [(2, pytest.approx(0.48))]
    assert scalar_values(events, "train/accuracy") == [(2, pytest.approx(0.6))]
    values, group = session_start(events)
    assert values["arch"] == "model1" and values["reg"] == "dropout"
    assert values["dropout.rate"] == pytest.approx(0.3) and "seed" not in values
    assert (values["learning_rate"], values["lr_schedule"]) == (pytest.approx(0.01), "constant")
    assert values["epochs"] == 2 and values["optimizer"] == "sgd" and values["engine"] == "standard"
    assert group == tensorboard.group(SPEC)


def test_a_cells_seeds_share_one_session_group_and_protocols_do_not(tmp_path):
    """The HParams dashboard averages the sessions of a group: a cell's seeds, never two
    protocols."""
    from dataclasses import replace

    seeds = [replace(SPEC, seed=s) for s in (0, 1)]
    cosine = replace(SPEC, protocol=replace(SPEC.protocol, lr_schedule="cosine"))
    groups = {}
    for index, spec in enumerate([*seeds, cosine]):
        log = tensorboard.RunLog(tmp_path / str(index), spec)
        log.close({"status": "ok", "epochs_run": 1})
        groups[index] = session_start(read(tmp_path / str(index) / spec.run_id))
    assert groups[0] == groups[1]
    assert groups[2][1] != groups[0][1] and groups[2][0]["lr_schedule"] == "cosine"


def test_a_rerun_replaces_the_earlier_log(tmp_path):
    for value in (0.1, 0.9):
        log = tensorboard.RunLog(tmp_path, SPEC)
        log.scalars(1, {"val/accuracy": value})
        log.close({"status": "ok", "epochs_run": 1})
    assert len(list((tmp_path / SPEC.run_id).iterdir())) == 1
    assert scalar_values(read(tmp_path / SPEC.run_id), "val/accuracy") == [(1, pytest.approx(0.9))]


def test_no_directory_means_no_log(tmp_path):
    assert tensorboard.open_log(SPEC) is None


@pytest.mark.slow
def test_training_with_tensorboard_writes_every_epoch_and_the_hparams(tmp_path):
    from regbench.engine.trainer import train_run
    from regbench.plugins.datasets import Splits

    rng = np.random.default_rng(0)

    def images(n):
        return rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n)

    (xt, yt), (xv, yv), (xs, ys) = images(64), images(32), images(32)
    spec = RunSpec(
        arch="model1",
        reg="dropout",
        params={"rate": 0.3},
        seed=0,
        protocol=Protocol(dataset="digits", epochs=2, batch_size=32),
        execution=Execution(tensorboard_dir=str(tmp_path / "tensorboard")),
    )
    data = Splits(xt, yt, xv, yv, xs, ys, tuple(str(i) for i in range(10)))
    result = train_run(spec, lambda: data, None)
    row = result.row
    assert row["status"] == "ok", row.get("error")
    events = read(tmp_path / "tensorboard" / spec.run_id)
    assert [s for s, _ in scalar_values(events, "val/accuracy")] == [1, 2]
    assert [s for s, _ in scalar_values(events, "train/loss_running")] == [1, 2]
    assert "test/accuracy" not in events.Tags()["scalars"]  # a grid run never reads the test split
    assert scalar_values(events, "train/accuracy") == [(2, pytest.approx(row["train_accuracy"]))]
    assert session_start(events)[0]["reg"] == "dropout"
    # the clean figure is its own measurement, the running one is kept beside it
    assert row["train_accuracy"] is not None and row["train_accuracy_running"] is not None
