"""What a finished training becomes: the one definition of a run's outcome, for every engine.

An engine trains and reports what it saw, epoch by epoch, to a `Recorder`; this module turns
that into the result row and the tidy epoch rows. The divergence verdict (its rule and its
measurement: engine.divergence), time to target, the epoch or average whose weights the run
ends with, which splits are evaluated, how a model is saved and what a failed or skipped run
looks like are decided here and nowhere else, so two engines cannot drift apart on any of them
(docs/faults.md and docs/study.md state the rules).
"""

from __future__ import annotations

import errno
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regbench.design.plan import RunSpec
from regbench.engine.divergence import diverged
from regbench.plugins.files import replaced
from regbench.plugins.manager import Registry

Progress = Callable[[dict[str, Any]], None]
TRAINING = "training"  # the progress event a run sends as its first step starts (not an epoch)


@dataclass
class RunResult:
    """What a worker sends back: the row for the runs table and the tidy epoch rows."""

    row: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Scores:
    """Mean loss and accuracy of a model on one split."""

    loss: float
    accuracy: float


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def reached(metric: str, value: float | None, goal: float) -> bool:
    """Whether `value` of `metric` meets a target (losses: at or below; others: at or above)."""
    if value is None or not math.isfinite(value):
        return False
    return value <= goal if "loss" in metric else value >= goal


def time_to_target(
    epochs: Sequence[Mapping[str, Any]], target: tuple[str, float] | None
) -> tuple[int | None, float | None]:
    """(epochs, seconds) until `target` was first reached, from a run's tidy epoch rows: a
    measurement of the history, so a target added later needs no training."""
    if not target:
        return None, None
    metric, goal = target
    split, name = ("val", metric[4:]) if metric.startswith("val_") else ("train", metric)
    for row in sorted(epochs, key=lambda r: r["epoch"]):
        if row["split"] == split and row["metric"] == name and reached(metric, row["value"], goal):
            return int(row["epoch"]), float(row["elapsed_s"])
    return None, None


def reads_test(spec: RunSpec) -> bool:
    """Only the final stage evaluates the test split: grid runs never see it."""
    return spec.stage == "final"


class Recorder:
    """One run's history as its engine trains it: the epoch logs (every metric, plugins'
    included), when to stop, and progress reports. Engines call `epoch_end` once per epoch."""

    def __init__(self, spec: RunSpec, progress: Progress | None = None, log: Any = None) -> None:
        self.spec = spec
        self.progress = progress
        self.log = log  # the run's TensorBoard log (engine.tensorboard.RunLog), if any
        self.initial_loss: float | None = None
        self.classes: int | None = None  # the divergence rule's K
        self.logs: list[dict[str, float]] = []
        self.elapsed: list[float] = []
        self.kept_epoch: int | None = None  # the epoch whose weights the model ends with
        # a weight average's (engine.averaging.finish): what the run ends with, and the
        # validation scores of those weights, which no epoch's logs hold
        self.final_weights: str | None = None
        self.final_val: Scores | None = None

    def start(self, initial: Scores | None, classes: int | None = None) -> None:
        """The fresh model's scores on the clean subset, before the first step, and the
        dataset's class count (engine.divergence judges the run by it)."""
        self.initial_loss = None if initial is None else float(initial.loss)
        self.classes = classes
        if self.progress:  # the run's training starts now: its run timeout counts from here
            self.progress({"run_id": self.spec.run_id, "event": TRAINING})

    def epoch_end(self, epoch: int, logs: Mapping[str, Any], elapsed: float) -> bool:
        """Record epoch `epoch` (1-based); True when training should stop (it diverged)."""
        numbers = {k: float(v) for k, v in logs.items() if _is_number(v)}
        self.logs.append(numbers)
        self.elapsed.append(elapsed)
        if self.log is not None:
            self.log.epoch(epoch, numbers)
        if self.progress:
            report = {"run_id": self.spec.run_id, "epoch": epoch, **numbers}
            self.progress({**report, "epochs": self.spec.protocol.epochs})
        return self.diverged() is not None

    def diverged(self) -> str | None:
        return diverged(self.logs, self.classes)

    def epoch_rows(self) -> list[dict[str, Any]]:
        """The tidy rows: one per epoch, split and metric."""
        rows = []
        for epoch, (logs, elapsed) in enumerate(zip(self.logs, self.elapsed, strict=True), 1):
            for key, value in logs.items():
                split, metric = ("val", key[4:]) if key.startswith("val_") else ("train", key)
                rows.append(
                    {
                        "epoch": epoch,
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "elapsed_s": elapsed,
                    }
                )
        return rows


def outcome(
    spec: RunSpec,
    recorder: Recorder,
    *,
    network: Any,
    optimizer: Any,
    train_time: float,
    n_train: int,
    n_val: int,
    clean: Scores | None,
    test: Scores | None,
    models_dir: Path | None,
) -> dict[str, Any]:
    """The result columns of a finished training. `network` is the deployable model (its
    weights the kept epoch's) and `optimizer` the Keras optimizer it trained with; `clean` and
    `test` are its scores on the clean training subset and the test split, asked of the engine
    only when `evaluates(...)` says so."""
    from regbench.engine.models import count_params, describe_model
    from regbench.engine.optimizers import optimizer_config
    from regbench.plugins.keras import import_keras

    epochs_run = len(recorder.logs)
    kept = recorder.kept_epoch or epochs_run
    last = dict(recorder.logs[kept - 1]) if kept else {}
    if recorder.final_val is not None:
        last.update(val_accuracy=recorder.final_val.accuracy, val_loss=recorder.final_val.loss)
    to_target = time_to_target(recorder.epoch_rows(), spec.protocol.target)
    out: dict[str, Any] = {
        **count_params(network),
        "n_train": n_train,
        "n_val": n_val,
        "epochs_run": epochs_run,
        "kept_epoch": kept or None,
        "final_weights": recorder.final_weights or (f"epoch {kept}" if kept else None),
        "initial_loss": recorder.initial_loss,
        "train_time_s": train_time,
        "images_per_s": n_train * epochs_run / train_time if train_time else None,
        "train_accuracy_running": last.get("accuracy"),
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "epochs_to_target": to_target[0],
        "seconds_to_target": to_target[1],
        "summary": describe_model(network),
        "optimizer_config": optimizer_config(import_keras(), optimizer),
        "test_loss": None,
        "test_accuracy": None,
    }
    reason = recorder.diverged()
    if reason:
        return {**out, "status": "diverged", "error": reason}
    if clean is not None:
        out.update(train_accuracy=clean.accuracy, train_loss=clean.loss)
    if test is not None:
        out.update(test_loss=test.loss, test_accuracy=test.accuracy)
    out.update(status="ok", error=None)
    if models_dir is not None:
        out["model_path"] = save_model(network, models_dir, spec.run_id)
    return out


def evaluates(recorder: Recorder) -> bool:
    """Whether the trained model is evaluated at all (a diverged one is not)."""
    return recorder.diverged() is None


# what a full or unwritable disk raises: the folder's fault, not the run's
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


class ModelNotSaved(Exception):
    """A trained model that could not be written (disk full, no permission). `failure` marks
    its row with `write_error`, and the parent stops the grid with one line, as for any
    write it cannot make: every later run would fail the same way after training in full."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(f"cannot save the model {path}: {cause.strerror or cause}")
        self.path, self.errno, self.strerror = str(path), cause.errno, cause.strerror


def save_model(network: Any, models_dir: Path, run_id: str) -> str:
    """Save atomically (a failed save, disk full, leaves no file behind); the path relative to
    the experiment folder, so the folder works from any current directory and when moved."""
    path = models_dir / f"{run_id}.keras"
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with replaced(path, ".tmp.keras") as tmp:
            network.save(tmp)
    except Exception as exc:
        if (cause := _write_fault(exc)) is not None:
            raise ModelNotSaved(path, cause) from exc
        raise
    return f"{models_dir.name}/{path.name}"


def _write_fault(exc: BaseException | None) -> OSError | None:
    """The full-disk or permission OSError behind `exc` (Keras may wrap it), or None."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def kept_epoch(callbacks: Sequence[Any]) -> int | None:
    """The 1-based epoch whose weights a callback restored at the end of training (Keras's
    EarlyStopping with restore_best_weights, or any callback exposing the same attributes)."""
    for callback in callbacks:
        restored = getattr(callback, "restore_best_weights", False)
        if restored and getattr(callback, "best_weights", None) is not None:
            return int(callback.best_epoch) + 1
    return None


def skipped_result(spec: RunSpec) -> RunResult:
    """The row of a cell that is not trained (design.applicability says why)."""
    stamp = now()
    row = {**spec.row(), "status": "skipped", "error": spec.skip, "started_at": stamp}
    return RunResult({**row, "ended_at": stamp, "total_time_s": 0.0})


def not_applicable(spec: RunSpec, plugins: Registry) -> str | None:
    """Why this run's regularizer does not apply to its architecture (None: it does)."""
    from regbench.design.applicability import why_not

    try:
        arch = plugins.get("architectures", spec.arch)
        reg = plugins.get("regularizers", spec.reg)
        return why_not(arch, reg, reg.resolve(spec.params))
    except Exception:  # a plugin that cannot even say: training reports the real error
        return None


def skip_if_not_applicable(spec: RunSpec, plugins: Registry) -> RunResult | None:
    """The skipped result of a spec that is not to be trained, or None to train it."""
    if spec.skip:
        return skipped_result(spec)
    reason = not_applicable(spec, plugins)
    return skipped_result(replace(spec, skip=reason)) if reason else None


def failure(exc: BaseException) -> dict[str, Any]:
    """The columns of a run that raised: `failed`, one plain line, the traceback; and
    `write_error` (path, errno, strerror) when its model could not be written."""
    import traceback

    out: dict[str, Any] = {
        "status": "failed",
        "error": one_line(exc),
        "traceback": traceback.format_exc(),
    }
    if isinstance(exc, ModelNotSaved):
        out["write_error"] = {"path": exc.path, "errno": exc.errno, "strerror": exc.strerror}
    return out


def finished(row: dict[str, Any], clock: float) -> dict[str, Any]:
    """The closing columns of a row whose run began at `clock` (perf_counter)."""
    return {**row, "ended_at": now(), "total_time_s": time.perf_counter() - clock}


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "resourceexhausted" in text or "out of memory" in text or isinstance(exc, MemoryError)


def one_line(exc: BaseException) -> str:
    """An error as one line of plain text (no terminal colour codes), at most 500 characters."""
    message = " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).split())
    prefix = "out of memory: " if is_oom(exc) else ""
    return f"{prefix}{type(exc).__name__}: {message}"[:500]


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
