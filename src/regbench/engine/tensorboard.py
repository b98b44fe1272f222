"""TensorBoard logs of the grid: per-epoch scalars and an HParams summary for every run.

Each run writes its per-epoch curves to `<root>/<run_id>/` and its results, the row's figures,
to `<root>/<run_id>/kept/`, so `tensorboard --logdir <root>` lists the runs and its HParams
dashboard shows the grid as a table (architecture, regularizer, each hyperparameter, against
the run's figures). The HParams session is the `kept` folder, which holds only those figures:
the dashboard shows a metric's last value in its session, so an early-stopped run's table
reads its kept epoch (what the leaderboard ranks), never the last epoch it trained; the curves,
outside the session, are not read as its metrics. A kept figure is logged at the kept epoch
under the same tag as its curve, so the Scalars dashboard marks it on the curve. Events are
written with TensorBoard's own writer and protos, never through a Keras backend, so the logs
look the same under TensorFlow and JAX.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from regbench.design.plan import PROTOCOL_COLUMNS, RunSpec

# Keras log keys -> TensorBoard scalar tags, per epoch
EPOCH_TAGS = {
    "accuracy": "train/accuracy_running",
    "loss": "train/loss_running",
    "val_accuracy": "val/accuracy",
    "val_loss": "val/loss",
}
# result row columns -> scalar tags written once at the end, in the session (`kept/`): the
# row's figures, the kept epoch's (or the restored weights'), and the HParams dashboard's metrics
FINAL_TAGS = {
    "val_accuracy": "val/accuracy",
    "val_loss": "val/loss",
    "train_accuracy": "train/accuracy",
    "train_loss": "train/loss",
    "train_accuracy_running": "train/accuracy_running",
    "test_accuracy": "test/accuracy",
    "test_loss": "test/loss",
}
KEPT = "kept"  # the run's subfolder that is its HParams session: its figures, no curve


class RunLog:
    """One run's event files: its curves, and its session with its figures (`KEPT`).
    Anything left from an earlier try of the same run is removed, so a rerun does not draw
    two curves on top of each other."""

    def __init__(self, root: Path, spec: RunSpec) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.folder = Path(root) / spec.run_id
        shutil.rmtree(self.folder, ignore_errors=True)
        (self.folder / KEPT).mkdir(parents=True)
        self.spec = spec
        self.started = time.time()
        self.writer = EventFileWriter(str(self.folder))
        self.session = EventFileWriter(str(self.folder / KEPT))
        self.session.add_event(_event(_hparams_summary(spec, self.started), step=0))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Points of the run's curves."""
        self.writer.add_event(_event(_scalars(values), step))

    def epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """One epoch's metrics (every engine reports them through its `Recorder`)."""
        self.scalars(epoch, {EPOCH_TAGS[k]: float(v) for k, v in logs.items() if k in EPOCH_TAGS})

    def close(self, row: Mapping[str, Any]) -> None:
        """The run's figures, as its results row has them (its HParams metrics), at the epoch
        whose weights it kept, then the end of its session."""
        from tensorboard.plugins.hparams import summary

        values = {
            tag: float(row[key])
            for key, tag in FINAL_TAGS.items()
            if isinstance(row.get(key), int | float) and row[key] == row[key]
        }
        step = max(int(row.get("kept_epoch") or row.get("epochs_run") or 0), 1)
        if values:
            self.session.add_event(_event(_scalars(values), step))
        status = "STATUS_SUCCESS" if row.get("status") == "ok" else "STATUS_FAILURE"
        end = summary.session_end_pb(_status(status), end_time_secs=int(time.time()))
        self.session.add_event(_event(end, step))
        self.session.close()
        self.writer.close()


def _scalars(values: Mapping[str, float]) -> Any:
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
    )


def _event(summary: Any, step: int) -> Any:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    # the hparams helpers return TensorFlow's Summary class when TensorFlow is installed
    plain = summary_pb2.Summary.FromString(summary.SerializeToString())
    return event_pb2.Event(wall_time=time.time(), step=step, summary=plain)


def open_log(spec: RunSpec) -> RunLog | None:
    """The run's log when its execution asks for TensorBoard, else None."""
    root = spec.execution.tensorboard_dir
    return None if not root else RunLog(Path(root), spec)


def hparams(spec: RunSpec) -> dict[str, Any]:
    """What the HParams table shows per run: the cell, its values and its whole protocol. The
    seed is left out, so a cell's seeds share their values: TensorBoard groups them as sessions
    of one group and the dashboard averages them (each run's folder still names its seed)."""
    row = spec.row()
    values: dict[str, Any] = {
        "arch": spec.arch,
        "reg": spec.reg,
        **{f"{spec.reg}.{k}": v for k, v in sorted(spec.params.items())},
        "stage": spec.stage,
    }
    for column in PROTOCOL_COLUMNS:
        value = row[column]
        values[column] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
    return values


def _hparams_summary(spec: RunSpec, started: float) -> Any:
    from tensorboard.plugins.hparams import summary_v2

    return summary_v2.hparams_pb(hparams(spec), trial_id=group(spec), start_time_secs=started)


def group(spec: RunSpec) -> str:
    """The HParams session group of a run: its cell, shared by the cell's seeds."""
    prefix = "final-" if spec.stage == "final" else ""
    return f"{prefix}{spec.arch}-{spec.reg}-{spec.cell_hash[:8]}"


def _status(name: str) -> Any:
    from tensorboard.plugins.hparams import api_pb2

    return api_pb2.Status.Value(name)
