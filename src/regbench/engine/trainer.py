"""The standard engine: train and evaluate one run with Keras `fit`.

A RunSpec and its data in, a result row and epoch rows out; what the row says is decided by
engine.outcome, shared with every other engine. This runs inside whichever process the executor
chose; it never touches the results store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.engine import (
    averaging,
    clean_eval,
    divergence,
    optimizers,
    pipeline,
    tensorboard,
    training,
)
from regbench.engine.context import run_context
from regbench.engine.environment import environment
from regbench.engine.models import build_model
from regbench.engine.outcome import (
    Progress,
    Recorder,
    RunResult,
    Scores,
    evaluates,
    failure,
    finished,
    kept_epoch,
    now,
    outcome,
    reads_test,
    skip_if_not_applicable,
    skipped_result,
)
from regbench.plugins.architecture import Architecture
from regbench.plugins.context import RunContext, invoke
from regbench.plugins.datasets import Splits
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import registry
from regbench.plugins.regularizer import Regularizer

EVAL_BATCH = 256  # at least: evaluation batches need no gradients, so larger is cheaper


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
    model = training.wrap(model, reg, params, run)
    loss, metrics = (
        training.soft_loss_and_metrics(keras)
        if reg.uses_batches
        else (keras.losses.SparseCategoricalCrossentropy(), ["accuracy"])
    )
    metrics = [*metrics, divergence.metric(data.classes)]  # what the divergence rule reads
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
    """The regularizer's own callbacks for a run (called through the seam's convention)."""
    return list(invoke(reg.callbacks, params, ctx=run))


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
        learning_rate=protocol.effective_learning_rate,
        lr_schedule=protocol.lr_schedule,
        stage=stage,
        seed=seed,
    )


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
    clock = time.perf_counter()
    plugins = registry()
    skipped = skip_if_not_applicable(spec, plugins)
    if skipped is not None:
        return skipped
    keras = import_keras()
    try:
        reason = training.cannot_train(plugins.get("regularizers", spec.reg), keras)
    except Exception:  # an unknown or broken plugin: training reports the real error
        reason = None
    if reason:
        return skipped_result(replace(spec, skip=reason))
    row: dict[str, Any] = {**spec.row(), "started_at": now()}
    recorder = Recorder(spec, progress)
    try:
        row.update(environment())
        data = load_data()
        row.update(data.sizes)
        recorder.log = tensorboard.open_log(spec)
        arch, reg = plugins.get("architectures", spec.arch), plugins.get("regularizers", spec.reg)
        row.update(_fit_and_evaluate(keras, spec, arch, reg, data, models_dir, row, recorder))
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit fails its run only
        row.update(failure(exc))
    finally:
        if recorder.log is not None:
            recorder.log.close(row)
        keras.backend.clear_session()  # and a full garbage collection (free_memory=True)
        keras.mixed_precision.set_global_policy("float32")
        _return_freed_memory()
    return RunResult(finished(row, clock), recorder.epoch_rows())


def _fit_and_evaluate(keras, spec, arch, reg, data, models_dir, row, recorder) -> dict[str, Any]:
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
    x_clean, y_clean = clean_eval.subset(x_fit, y_fit)
    recorder.start(scores(model, x_clean, y_clean, spec.protocol.batch_size), data.classes)
    own = run_callbacks(reg, params, run)
    feed = pipeline.resolve(spec.execution.pipeline, keras.backend.backend())
    row["pipeline"] = feed
    fit_start = time.perf_counter()
    model.fit(
        **pipeline.fit_inputs(feed, x_fit, y_fit, spec.protocol.batch_size, spec.seed),
        epochs=spec.protocol.epochs,
        validation_data=None
        if final
        else pipeline.eval_data(feed, data.x_val, data.y_val, spec.protocol.batch_size),
        # last: it sees what the plugins' callbacks add to the epoch's logs
        callbacks=[*own, _epoch_end(keras, recorder, fit_start)],
        verbose=0,
    )
    train_time = time.perf_counter() - fit_start
    recorder.kept_epoch = kept_epoch(own)
    eval_start = time.perf_counter()
    clean = test = None
    if evaluates(recorder):
        network = training.deployable(model)
        recorder.final_weights = averaging.finish(model, network, x_fit, spec.protocol.batch_size)
        if recorder.final_weights == "average" and not final:
            recorder.final_val = scores(model, data.x_val, data.y_val, spec.protocol.batch_size)
        clean = scores(model, x_clean, y_clean, spec.protocol.batch_size)
        if reads_test(spec):
            test = scores(model, data.x_test, data.y_test, spec.protocol.batch_size)
    out = outcome(
        spec,
        recorder,
        network=training.deployable(model),
        optimizer=model.optimizer,
        train_time=train_time,
        n_train=len(x_fit),
        n_val=0 if final else len(data.x_val),
        clean=clean,
        test=test,
        models_dir=models_dir,
    )
    # one run, one program: the engines' times mean the same (engine.vmapped packs several)
    return {
        **out,
        "eval_time_s": time.perf_counter() - eval_start,
        "program_runs": 1,
        "passes_per_step": training.passes_per_step(model),
        # what Keras compiled, not what was asked: it falls back without XLA, with a warning
        # only, for a model with a layer XLA cannot compile (RandAugment)
        "xla": bool(model.jit_compile),
    }


def scores(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int) -> Scores:
    """The model's mean loss (its penalties included) and accuracy on x, y, in inference mode."""
    found = model.evaluate(
        x, y, batch_size=max(batch_size, EVAL_BATCH), verbose=0, return_dict=True
    )
    return Scores(float(found["loss"]), float(found["accuracy"]))


def _epoch_end(keras: Any, recorder: Recorder, start: float) -> Any:
    """The callback that hands each epoch's logs to the recorder (and stops a diverged run)."""

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if recorder.epoch_end(epoch + 1, logs or {}, time.perf_counter() - start):
                self.model.stop_training = True

    return EpochEnd()


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise), so a long-lived
    worker's resident memory does not creep up run after run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
