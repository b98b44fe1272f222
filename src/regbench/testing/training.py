"""The training contract: a regularizer's loss, optimizer and callbacks work as the trainer
uses them, and a model trained as the trainer trains survives save and reload."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from regbench.api import Architecture, OptimizerSpec, Regularizer, import_keras
from regbench.engine.models import DEFAULT_CLASSES, DEFAULT_INPUT_SHAPE
from regbench.engine.training import deployable
from regbench.plugins.context import invoke
from regbench.testing.fresh import check_reloads_in_fresh_process
from regbench.testing.probes import (
    InputShape,
    labels,
    predict,
    require,
    resolve_claims,
    run_context,
    splits,
)


def plain_loss(regularizer: Regularizer) -> Any:
    """The loss the trainer hands the `loss` hook: crossentropy on soft targets for a batch
    regularizer (its batches carry one-hot or mixed rows), on class ids otherwise."""
    losses = import_keras().losses
    if regularizer.uses_batches:
        return losses.CategoricalCrossentropy()
    return losses.SparseCategoricalCrossentropy()


def loss_targets(regularizer: Regularizer, y: np.ndarray, classes: int) -> np.ndarray:
    """What the compiled loss sees for class ids `y`: the ids themselves, or for a batch
    regularizer soft rows, each one-hot row mixed a quarter with its neighbour's as a batch
    hook mixes them."""
    if not regularizer.uses_batches:
        return y
    onehot = np.eye(classes, dtype=np.float32)[y]
    return 0.75 * onehot + 0.25 * np.roll(onehot, 1, axis=0)


def _targets_kind(regularizer: Regularizer) -> str:
    return "soft target rows" if regularizer.uses_batches else "sparse integer labels"


def check_hooks(
    regularizer: Regularizer, values: Mapping[str, Any], input_shape: InputShape, classes: int
) -> tuple[Any, Any, list[Any]]:
    """Loss, optimizer and callbacks exactly as the trainer asks for them, each checked."""
    keras = import_keras()
    label = regularizer.name
    run = run_context(input_shape, classes)
    loss = invoke(regularizer.loss, values, plain_loss(regularizer), ctx=run)
    y = labels(4, classes)
    probabilities = np.full((4, classes), 0.5 / (classes - 1), dtype=np.float32)
    probabilities[np.arange(4), y] = 0.5
    kind = _targets_kind(regularizer)
    try:
        targets = loss_targets(regularizer, y, classes)
        value = np.asarray(keras.ops.convert_to_numpy(loss(targets, probabilities)))
    except Exception as exc:  # shape and dtype errors differ by backend; the cause does not
        raise AssertionError(
            f"{label}: the loss fails on {kind} and probabilities ({exc})"
        ) from exc
    require(  # a Loss object reduces; a plain loss function may return one value per sample
        value.shape in ((), (4,)),
        f"{label}: the loss of 4 {kind} has shape {value.shape}, not () or (4,)",
    )
    require(bool(np.all(np.isfinite(value))), f"{label}: the loss of a 50% prediction is {value}")

    spec = invoke(regularizer.optimizer, values, OptimizerSpec("sgd", {}), ctx=run)
    require(isinstance(spec, OptimizerSpec), f"{label}: optimizer() must return OptimizerSpec")
    try:
        optimizer = keras.optimizers.get({"class_name": spec.name, "config": dict(spec.kwargs)})
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: Keras cannot make optimizer {spec}: {exc}") from exc

    callbacks = list(invoke(regularizer.callbacks, values, ctx=run))
    for callback in callbacks:
        require(
            isinstance(callback, keras.callbacks.Callback),
            f"{label}: callback {callback!r} is not a keras.callbacks.Callback",
        )
    return loss, optimizer, callbacks


def check_training_contract(
    regularizer: Regularizer,
    architecture: Architecture,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    claims: Mapping[str, bool] | None = None,
    fresh_process: bool = True,
    xla: bool = True,
) -> None:
    """Train exactly as the trainer does (its build_and_compile: loss, optimizer, schedule,
    soft targets for a batch hook; compiled with XLA unless `xla` is False; its callbacks),
    two tiny epochs with validation data, then one without as in the final retraining; then
    save the model as the trainer does and reload it, in a fresh process unless
    `fresh_process` is False. A custom layer Keras cannot reload, an op XLA cannot compile, or
    a callback that needs val_loss to exist fails here, not after an hour of training."""
    from regbench.design.plan import Execution, Protocol
    from regbench.engine.trainer import build_and_compile, run_callbacks

    keras = import_keras()
    claimed = resolve_claims(regularizer, claims)
    label = f"{regularizer.name} on {architecture.name}"
    values = regularizer.resolve(params)
    check_hooks(regularizer, values, input_shape, classes)
    data = splits(input_shape, classes)
    protocol = Protocol(dataset="conformance", epochs=2, batch_size=4)
    execution = Execution(jit_compile="on" if xla else "off")
    model = build_and_compile(architecture, regularizer, values, protocol, data, 0, execution)
    callbacks = run_callbacks(regularizer, values, run_context(input_shape, classes))
    x, y = data.x_train, data.y_train
    try:
        history = model.fit(
            x, y, validation_data=(x, y), epochs=2, batch_size=4, callbacks=callbacks, verbose=0
        ).history
        final = model.fit(x, y, epochs=1, batch_size=4, callbacks=callbacks, verbose=0).history
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        how = "compiled with XLA " if xla else ""
        raise AssertionError(f"{label}: training {how}fails: {first}") from exc
    for key, seen in (("loss", history), ("val_loss", history), ("loss", final)):
        require(bool(seen.get(key)), f"{label}: fit recorded no {key}")
        require(bool(np.all(np.isfinite(seen[key]))), f"{label}: {key} {seen[key]}")

    network = deployable(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        try:
            network.save(path)
            reloaded = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # whatever Keras raises, the author needs the same hint
            raise AssertionError(
                f"{label}: the trained model does not survive save and load ({exc}); register "
                "custom layers with keras.saving.register_keras_serializable"
            ) from exc
        if not claimed["stochastic_inference"]:
            expected = predict(network, x, False)
            require(
                np.allclose(expected, predict(reloaded, x, False), atol=1e-6),
                f"{label}: the reloaded model predicts differently",
            )
            if fresh_process:
                check_reloads_in_fresh_process(path, x, expected)
