"""The weights side of the seam: a run that ends with an average of its weights (SWA, EMA).

The average lives in the training model (engine.training) as non-trainable variables, one per
trainable weight, with a snapshot count and a step count. Every engine's step updates them
functionally after the optimizer's update (`update`), so the rule runs inside the compiled step
on TensorFlow, JAX and the vmapped engine alike. After training, `finish` puts the average in
the weights and recomputes the batch-norm statistics for it on the training images: the model
the row scores and saves is the averaged one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regbench.plugins.context import RunContext
from regbench.plugins.keras import import_keras
from regbench.plugins.steps import WeightAverage


@dataclass
class Slots:
    """A run's averaging state: the rule, and the variables it keeps in the training model."""

    rule: WeightAverage
    averages: list[Any]
    count: Any  # snapshots taken so far (float32 scalar)
    steps: Any  # training steps done so far (float32 scalar)


def slots(model: Any, rule: WeightAverage, trainable: Sequence[Any]) -> Slots:
    """Variables on `model` (a Keras layer) for averaging `trainable`, at zero."""
    averages = [
        model.add_weight(
            shape=tuple(v.shape),
            initializer="zeros",
            dtype=v.dtype,
            trainable=False,
            name=f"average_{i}",
            autocast=False,
        )
        for i, v in enumerate(trainable)
    ]

    def scalar(name: str) -> Any:
        return model.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name=name,
            autocast=False,
        )

    return Slots(rule, averages, scalar("average_count"), scalar("average_steps"))


def update(
    kept: Slots,
    run: RunContext,
    variables: Sequence[Any],
    non_trainable: Sequence[Any],
    weights: Sequence[Any],
) -> list[Any]:
    """The non-trainable values after one training step whose updated trainable values are
    `weights`; `variables` are the non-trainable variables `non_trainable` holds the values
    of (the averages, count and step count are among them)."""
    ops = import_keras().ops
    where = {id(v): i for i, v in enumerate(variables)}
    out = list(non_trainable)
    steps = out[where[id(kept.steps)]] + 1.0
    count = out[where[id(kept.count)]]
    take = steps >= float(kept.rule.first_snapshot(run.steps_per_epoch, run.epochs))
    if kept.rule.every == "epoch":
        take = ops.logical_and(take, ops.equal(ops.mod(steps, float(run.steps_per_epoch)), 0.0))
    for average, value in zip(kept.averages, weights, strict=True):
        old = out[where[id(average)]]
        out[where[id(average)]] = ops.where(take, kept.rule.mix(old, value, count), old)
    out[where[id(kept.count)]] = count + ops.cast(take, "float32")
    out[where[id(kept.steps)]] = steps
    return out


def finish(training: Any, network: Any, x: np.ndarray, batch_size: int) -> str | None:
    """Put the average in the weights of `training` (the training model, whose `averaging`
    slots hold it) and recalibrate `network`'s batch norm on `x`; what the run ends with:
    'average', 'last (no snapshot)' when training ended before the first one, or None for a
    run without a weight average."""
    kept: Slots | None = getattr(training, "averaging", None)
    if kept is None:
        return None
    ops = import_keras().ops
    if float(ops.convert_to_numpy(kept.count.value)) == 0.0:
        return "last (no snapshot)"
    for variable, average in zip(training.trainable_variables, kept.averages, strict=True):
        variable.assign(ops.copy(average.value))  # a buffer of its own (JAX donates buffers)
    if kept.rule.recalibrate_batchnorm:
        recalibrate_batchnorm(network, x, batch_size)
    return "average"


def batchnorm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer of `model`, nested models' included."""
    keras = import_keras()
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batchnorm_layers(layer))
    return found


def recalibrate_batchnorm(model: Any, x: np.ndarray, batch_size: int) -> None:
    """Every batch-norm layer's moving mean and variance recomputed for the model's current
    weights: the mean over one pass of `x` in `batch_size` batches of the statistics each
    batch gives in training mode (torch's `update_bn`). Nothing else of the model changes."""
    layers = batchnorm_layers(model)
    if not layers or len(x) == 0:
        return
    keras = import_keras()
    ops = keras.ops
    variables = model.non_trainable_variables
    where = {id(v): i for i, v in enumerate(variables)}
    stats = [(where[id(b.moving_mean)], where[id(b.moving_variance)]) for b in layers]
    trainable = [v.value for v in model.trainable_variables]
    start = [v.value for v in variables]
    momenta = [b.momentum for b in layers]
    sums: list[Any] = [0.0] * (2 * len(layers))
    batches = 0
    try:
        for b in layers:
            b.momentum = 0.0  # the moving statistics become the batch's own
        for begin in range(0, len(x), batch_size):
            _, after = model.stateless_call(
                trainable,
                start,
                ops.convert_to_tensor(x[begin : begin + batch_size]),
                training=True,
            )
            for k, (mean, variance) in enumerate(stats):
                sums[2 * k] = sums[2 * k] + after[mean]
                sums[2 * k + 1] = sums[2 * k + 1] + after[variance]
            batches += 1
    finally:
        for b, momentum in zip(layers, momenta, strict=True):
            b.momentum = momentum
    for k, b in enumerate(layers):
        b.moving_mean.assign(sums[2 * k] / batches)
        b.moving_variance.assign(sums[2 * k + 1] / batches)
