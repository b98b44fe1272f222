"""TensorBoard logs: per-epoch scalars and an HParams summary per run, read back from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.engine import tensorboard

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


def kept(root: Path, spec: RunSpec = SPEC) -> Path:
    """The folder of a run's HParams session: its figures, as its results row has them."""
    return root / spec.run_id / tensorboard.KEPT


def test_a_run_log_holds_epoch_scalars_hparams_and_final_metrics(tmp_path):
    log = tensorboard.RunLog(tmp_path, SPEC)
    log.scalars(1, {"val/accuracy": 0.4, "train/accuracy_running": 0.3})
    log.scalars(2, {"val/accuracy": 0.5, "train/accuracy_running": 0.45})
    row = {"status": "ok", "epochs_run": 2, "kept_epoch": 2, "val_accuracy": 0.5}
    log.close(row | {"test_accuracy": 0.48, "train_accuracy": 0.6})
    curves = read(tmp_path / SPEC.run_id)
    assert scalar_values(curves, "val/accuracy") == [(1, pytest.approx(0.4)), (2, 0.5)]
    session = read(kept(tmp_path))
    assert "_hparams_/session_start_info" in session.Tags()["tensors"]
    assert "_hparams_/session_start_info" not in curves.Tags()["tensors"]  # not a session
    assert scalar_values(session, "test/accuracy") == [(2, pytest.approx(0.48))]
    assert scalar_values(session, "train/accuracy") == [(2, pytest.approx(0.6))]
    assert scalar_values(session, "val/accuracy") == [(2, pytest.approx(0.5))]
    values, group = session_start(session)
    assert values["arch"] == "model1" and values["reg"] == "dropout"
    assert values["dropout.rate"] == pytest.approx(0.3) and "seed" not in values
    assert (values["learning_rate"], values["lr_schedule"]) == (pytest.approx(0.01), "constant")
    assert values["epochs"] == 2 and values["optimizer"] == "sgd" and values["engine"] == "standard"
    assert group == tensorboard.group(SPEC)


def hparams_table(root: Path) -> dict[str, dict[str, tuple[float, int]]]:
    """What TensorBoard's HParams dashboard lists, read through its own plugin: each session
    group's metrics, tag -> (value, step)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import (
        api_pb2,
        backend_context,
        get_experiment,
        list_session_groups,
    )

    runs = plugin_event_multiplexer.EventMultiplexer()
    runs.AddRunsFromDirectory(str(root))
    runs.Reload()
    provider = data_provider.MultiplexerDataProvider(runs, str(root))
    plugin = backend_context.Context(
        base_plugin.TBContext(logdir=str(root), multiplexer=runs, data_provider=provider)
    )
    request = context.RequestContext()
    experiment = get_experiment.Handler(request, plugin, "", api_pb2.GetExperimentRequest()).run()
    statuses = [api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_UNKNOWN]
    wanted = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=statuses,
        col_params=[api_pb2.ColParams(metric=m.name) for m in experiment.metric_infos],
    )
    groups = list_session_groups.Handler(request, plugin, "", wanted).run().session_groups
    return {
        g.name: {m.name.tag: (m.value, m.training_step) for m in g.metric_values} for g in groups
    }


def test_an_early_stopped_runs_hparams_are_its_kept_epochs_figures(tmp_path):
    """The dashboard shows the row's figures, the restored epoch's (2), not the last epoch
    trained (3), and none of the curves' last points as a metric."""
    log = tensorboard.RunLog(tmp_path, SPEC)
    for epoch, val in ((1, 0.40), (2, 0.50), (3, 0.45)):
        logs = {"accuracy": val + 0.2, "loss": 1.0 / epoch, "val_accuracy": val}
        log.epoch(epoch, logs | {"val_loss": 1.5 / epoch})
    row = {"status": "ok", "epochs_run": 3, "kept_epoch": 2, "val_accuracy": 0.5}
    row |= {"val_loss": 0.75, "train_accuracy": 0.6, "train_loss": 0.9}
    row |= {"train_accuracy_running": 0.7, "test_accuracy": None}
    log.close(row)
    (metrics,) = hparams_table(tmp_path).values()
    assert metrics == {
        "val/accuracy": (pytest.approx(0.5), 2),
        "val/loss": (pytest.approx(0.75), 2),
        "train/accuracy": (pytest.approx(0.6), 2),
        "train/loss": (pytest.approx(0.9), 2),
        "train/accuracy_running": (pytest.approx(0.7), 2),
    }
    # the curves keep every epoch, the last one included
    curves = read(tmp_path / SPEC.run_id)
    assert [s for s, _ in scalar_values(curves, "val/accuracy")] == [1, 2, 3]


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
        groups[index] = session_start(read(kept(tmp_path / str(index), spec)))
    assert groups[0] == groups[1]
    assert groups[2][1] != groups[0][1] and groups[2][0]["lr_schedule"] == "cosine"


def test_a_rerun_replaces_the_earlier_log(tmp_path):
    for value in (0.1, 0.9):
        log = tensorboard.RunLog(tmp_path, SPEC)
        log.scalars(1, {"val/accuracy": value})
        log.close({"status": "ok", "epochs_run": 1, "val_accuracy": value})
    folder = tmp_path / SPEC.run_id
    assert len([p for p in folder.iterdir() if p.is_file()]) == 1
    assert len(list(kept(tmp_path).iterdir())) == 1
    assert scalar_values(read(folder), "val/accuracy") == [(1, pytest.approx(0.9))]
    assert scalar_values(read(kept(tmp_path)), "val/accuracy") == [(1, pytest.approx(0.9))]


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
    session = read(kept(tmp_path / "tensorboard", spec))
    assert "test/accuracy" not in session.Tags()["scalars"]  # a grid run never reads test
    at = row["kept_epoch"]
    assert scalar_values(session, "train/accuracy") == [(at, pytest.approx(row["train_accuracy"]))]
    assert scalar_values(session, "val/accuracy") == [(at, pytest.approx(row["val_accuracy"]))]
    assert session_start(session)[0]["reg"] == "dropout"
    # the clean figure is its own measurement, the running one is kept beside it
    assert row["train_accuracy"] is not None and row["train_accuracy_running"] is not None
