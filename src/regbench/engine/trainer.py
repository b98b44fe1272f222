"""Train and evaluate one run: a RunSpec and its data in, a result row and epoch rows out.

This runs inside whichever process the executor chose; it never touches the results store.
"""

from __future__ import annotations

import gc
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from regbench.engine import batches, clean_eval, optimizers, pipeline, tensorboard
from regbench.engine.context import run_context
from regbench.engine.environment import environment
from regbench.engine.models import build_model, count_params, describe_model
from regbench.engine.plan import Execution, Protocol, RunSpec
from regbench.plugins.datasets import Splits
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import registry
from regbench.plugins.seam import Architecture, Regularizer, RunContext, invoke

Progress = Callable[[dict[str, Any]], None]


@dataclass
class RunResult:
    """What a worker sends back: the row for the runs table and the tidy epoch rows."""

    row: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_and_compile(
    arch: Architecture,
    reg: Regularizer,
    params: Mapping[str, Any],
    protocol: Protocol,
    data: Splits,
    seed: int,
    execution: Execution | None = None,
    run: RunContext | None = None,
) -> Any:
    """The model of one run, compiled with the protocol as the regularizer amends it
    (optimizer, schedule, loss, soft targets); the trainer and the tuning stage both train
    exactly this. `run` defaults to a grid run on the training split."""
    keras = import_keras()
    execution = execution or Execution()
    run = run or context_for(protocol, data, seed, "grid", len(data.x_train))
    keras.mixed_precision.set_global_policy(protocol.precision)
    model = build_model(arch, reg, params, data.input_shape, data.classes, seed=seed, run=run)
    model = batches.wrap_for_batches(model, reg, params, run)
    loss, metrics = (
        batches.soft_loss_and_metrics(keras)
        if reg.uses_batches
        else (keras.losses.SparseCategoricalCrossentropy(), ["accuracy"])
    )
    model.compile(
        optimizer=optimizers.make_optimizer(
            keras,
            reg,
            params,
            protocol.optimizer,
            protocol.learning_rate,
            protocol.optimizer_options,
            protocol.lr_schedule,
            run,
        ),
        loss=invoke(reg.loss, params, loss, ctx=run),
        metrics=metrics,
        jit_compile={"auto": "auto", "on": True, "off": False}[execution.jit_compile],
        steps_per_execution=execution.steps_per_execution,
    )
    return model


def run_callbacks(reg: Regularizer, params: Mapping[str, Any], run: RunContext) -> list[Any]:
    """The callbacks a run adds to fit: its progress, then the regularizer's own."""
    own = list(invoke(reg.callbacks, params, ctx=run))
    return [run.progress.callback(), *own] if run.progress is not None else own


def context_for(
    protocol: Protocol, data: Splits, seed: int, stage: str, train_size: int
) -> RunContext:
    """The run context of one run of `protocol` on `data` (the tuning stage passes "tune")."""
    return run_context(
        epochs=protocol.epochs,
        batch_size=protocol.batch_size,
        train_size=train_size,
        classes=data.classes,
        input_shape=data.input_shape,
        learning_rate=protocol.learning_rate,
        stage=stage,
        seed=seed,
    )


def _history_callback(keras, spec: RunSpec, epochs: list, state: dict, progress: Progress | None):
    """Record every epoch, stop on NaN/inf loss, note time-to-target, report progress."""

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            state["start"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            elapsed = time.perf_counter() - state["start"]
            for key, value in logs.items():
                split, metric = ("val", key[4:]) if key.startswith("val_") else ("train", key)
                if metric not in ("loss", "accuracy"):
                    continue
                epochs.append(
                    {
                        "epoch": epoch + 1,
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "elapsed_s": elapsed,
                    }
                )
            state["epochs_run"] = epoch + 1
            state["last"] = logs
            if not math.isfinite(logs.get("loss", 0.0)):
                state["diverged"] = f"loss became {logs.get('loss')} at epoch {epoch + 1}"
                self.model.stop_training = True
            if spec.protocol.target and "epochs_to_target" not in state:
                metric, goal = spec.protocol.target
                value = logs.get(metric)
                if value is not None and (value <= goal if "loss" in metric else value >= goal):
                    state["epochs_to_target"] = epoch + 1
                    state["seconds_to_target"] = elapsed
            if progress:
                epochs_total = spec.protocol.epochs
                progress(
                    {"run_id": spec.run_id, "epoch": epoch + 1, "epochs": epochs_total, **logs}
                )

    return Recorder()


def train_run(
    spec: RunSpec,
    load_data: Callable[[], Splits],
    models_dir: Path | None,
    progress: Progress | None = None,
) -> RunResult:
    """Train one run; any exception becomes a `failed` row instead of escaping.

    This is the default trainer; executors call any function of this signature by its
    'module:function' name.
    """
    started, clock = _now(), time.perf_counter()
    row: dict[str, Any] = {**spec.row(), "started_at": started}
    epochs: list[dict[str, Any]] = []
    if spec.skip:
        return skipped_result(spec)
    keras = import_keras()
    reason = _not_applicable(spec)
    if reason:
        return skipped_result(replace(spec, skip=reason))
    log = None
    try:
        row.update(environment())
        data = load_data()
        row.update(data.sizes)
        log = tensorboard.open_log(spec)
        row.update(_fit_and_evaluate(keras, spec, data, models_dir, row, epochs, progress, log))
    except Exception as exc:
        row["status"] = "failed"
        row["error"] = _one_line(exc)
        row["traceback"] = traceback.format_exc()
    finally:
        if log is not None:
            log.close(row)
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
        gc.collect()
        _return_freed_memory()
    row["ended_at"] = _now()
    row["total_time_s"] = time.perf_counter() - clock
    return RunResult(row, epochs)


def _not_applicable(spec: RunSpec) -> str | None:
    """Why this run's regularizer does not apply to its architecture (None: it does)."""
    from regbench.engine.applicability import why_not

    try:
        arch = registry().get("architectures", spec.arch)
        reg = registry().get("regularizers", spec.reg)
        return why_not(arch, reg, reg.resolve(spec.params))
    except Exception:  # a plugin that cannot even say: training reports the real error
        return None


def skipped_result(spec: RunSpec) -> RunResult:
    """The row of a cell that is not trained (engine.applicability says why)."""
    now = _now()
    row = {**spec.row(), "status": "skipped", "error": spec.skip, "started_at": now}
    return RunResult({**row, "ended_at": now, "total_time_s": 0.0})


def _fit_and_evaluate(keras, spec, data, models_dir, row, epochs, progress, log) -> dict[str, Any]:
    reg = registry().get("regularizers", spec.reg)
    arch = registry().get("architectures", spec.arch)
    params = reg.resolve(spec.params)
    final = spec.stage == "final"
    x_fit, y_fit = (
        (np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val]))
        if final
        else (data.x_train, data.y_train)
    )
    run = context_for(spec.protocol, data, spec.seed, spec.stage, len(x_fit))
    model = build_and_compile(
        arch, reg, params, spec.protocol, data, spec.seed, spec.execution, run
    )
    row["optimizer_config"] = optimizers.optimizer_config(keras, model.optimizer)
    state: dict[str, Any] = {}
    callbacks = [
        _history_callback(keras, spec, epochs, state, progress),
        *run_callbacks(reg, params, run),
    ]
    if log is not None:
        callbacks.append(log.callback(keras))
    feed = pipeline.resolve(spec.execution.pipeline, keras.backend.backend())
    row["pipeline"] = feed
    fit_start = time.perf_counter()
    model.fit(
        **pipeline.fit_inputs(feed, x_fit, y_fit, spec.protocol.batch_size, spec.seed),
        epochs=spec.protocol.epochs,
        validation_data=None
        if final
        else pipeline.eval_data(feed, data.x_val, data.y_val, spec.protocol.batch_size),
        callbacks=callbacks,
        verbose=0,
    )
    train_time = time.perf_counter() - fit_start
    last = state.get("last", {})
    network = batches.deployable(model)
    out: dict[str, Any] = {
        **count_params(network),
        "n_train": len(x_fit),
        "n_val": 0 if final else len(data.x_val),
        "epochs_run": state.get("epochs_run", 0),
        "train_time_s": train_time,
        "images_per_s": len(x_fit) * state.get("epochs_run", 0) / train_time
        if train_time
        else None,
        "train_accuracy_running": last.get("accuracy"),
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "epochs_to_target": state.get("epochs_to_target"),
        "seconds_to_target": state.get("seconds_to_target"),
        "summary": describe_model(network),
    }
    diverged = state.get("diverged") or _diverged(epochs, out["val_accuracy"], data.classes)
    if diverged:
        return {**out, "status": "diverged", "error": diverged}
    eval_start = time.perf_counter()
    out.update(clean_eval.train_metrics(model, x_fit, y_fit, spec.protocol.batch_size))
    test_loss, test_accuracy = model.evaluate(
        data.x_test, data.y_test, batch_size=max(spec.protocol.batch_size, 256), verbose=0
    )
    out.update(
        test_loss=float(test_loss),
        test_accuracy=float(test_accuracy),
        eval_time_s=time.perf_counter() - eval_start,
        status="ok",
        error=None,
    )
    if models_dir is not None:
        models_dir.mkdir(parents=True, exist_ok=True)
        path = models_dir / f"{spec.run_id}.keras"
        tmp = path.with_name(f".{path.stem}.tmp.keras")
        try:
            network.save(tmp)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)  # a failed save (disk full) leaves no temporary file
        out["model_path"] = str(path)
    return out


def _diverged(epochs: list[dict[str, Any]], val_accuracy: Any, classes: int) -> str | None:
    """Why a finite run counts as diverged, or None (docs/faults.md): its training loss grew
    past 1e6 or to over 1000x its first epoch's, or it ends no better than chance on
    validation (1/classes) while its training loss went up."""
    losses = [e["value"] for e in epochs if e["split"] == "train" and e["metric"] == "loss"]
    if not losses:
        return None
    first, last = losses[0], losses[-1]
    if last > 1e6 or (first > 0 and last > 1e3 * first):
        return f"training loss exploded from {first:.3g} to {last:.3g}"
    chance = 1 / max(classes, 1)
    if val_accuracy is not None and val_accuracy <= chance and last > first:
        return (
            f"validation accuracy {val_accuracy:.3g} is at or below chance ({chance:.3g}) "
            f"and the training loss rose from {first:.3g} to {last:.3g}"
        )
    return None


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise), so a long-lived
    worker's resident memory does not creep up run after run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "resourceexhausted" in text or "out of memory" in text or isinstance(exc, MemoryError)


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    prefix = "out of memory: " if _is_oom(exc) else ""
    return f"{prefix}{type(exc).__name__}: {message}"[:500]
