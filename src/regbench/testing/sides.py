"""Conformance checks for the step and weights sides of the seam (`train_step`, `average`).

`check_step(reg, reference)` trains one step of a tiny model exactly as the engines do and
compares the weights with the update computed by hand: `reference(weights, gradient, params)`
returns the gradients the step should apply, `gradient(weights)` being the batch's loss
gradient at any weights, computed here by the backend's autodiff independently of regbench's
step; the optimizer is plain SGD, so the expected weights are `weights - lr * reference(...)`.
`check_average(reg)` trains a tiny model with batch norm for a few epochs, records every step's
weights, and checks that the run ends with the average its `WeightAverage` declares (equal
weights or exponential, over the snapshots its `start` and `every` select) and with batch-norm
statistics recomputed for those weights. Both run on the current Keras backend, with and
without XLA; plain `AssertionError`s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from regbench.design.plan import Execution, Protocol
from regbench.plugins.architecture import Architecture
from regbench.plugins.context import invoke
from regbench.plugins.datasets import Splits
from regbench.plugins.points import NOISE, NORM
from regbench.plugins.regularizer import Regularizer
from regbench.plugins.steps import WeightAverage

INPUT = (6, 6, 2)
CLASSES = 3
RATE = 0.1  # the SGD learning rate of the checks

Gradient = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
Reference = Callable[[list[np.ndarray], Gradient, Mapping[str, Any]], Sequence[np.ndarray]]


def _numpy(variable: Any) -> np.ndarray:
    from regbench.plugins.keras import import_keras

    return np.array(import_keras().ops.convert_to_numpy(variable.value))


def _tiny(ctx: Any, x: Any) -> Any:
    """Conv, then batch norm (the weights side's recalibration has something to do), a maps
    point, a dense layer and a vector point: every side of the seam has a place."""
    layers = ctx.keras.layers
    x = layers.BatchNormalization()(ctx.conv(4, 3, activation="tanh")(x))
    x = ctx.point(x, "maps", "maps", families=frozenset({NOISE, NORM}))
    x = ctx.dense(5, activation="tanh")(layers.Flatten()(x))
    x = ctx.point(x, "hidden", "vector", families=frozenset({NOISE}))
    return ctx.classifier(x)


TINY = Architecture(name="kit-tiny", description="the sides kit's tiny model", builder=_tiny)


def _data(rows: int, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, *INPUT), dtype=np.float32)
    y = rng.integers(0, CLASSES, rows)
    return Splits(x, y, x, y, x, y, tuple(str(c) for c in range(CLASSES)))


def _compiled(
    reg: Regularizer, values: Mapping[str, Any], data: Splits, epochs: int, batch: int, jit: bool
) -> tuple[Any, Any]:
    from regbench.engine.trainer import build_and_compile, context_for
    from regbench.engine.training import deployable

    protocol = Protocol(dataset="kit", epochs=epochs, batch_size=batch, learning_rate=RATE)
    run = context_for(protocol, data, 0, "grid", len(data.x_train))
    execution = Execution(jit_compile="on" if jit else "off")
    model = build_and_compile(TINY, reg, values, protocol, data, 0, execution, run)
    return model, deployable(model)


def _gradient(network: Any, x: np.ndarray, y: np.ndarray, loss: Any) -> Gradient:
    """The batch's loss gradient (the compiled loss plus the model's penalties) at any
    weights, in training mode, by the backend's own autodiff."""
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    non_trainable = [v.value for v in network.non_trainable_variables]

    def value(weights: list[Any]) -> Any:
        predictions, _, losses = network.stateless_call(
            weights, non_trainable, x, training=True, return_losses=True
        )
        return loss(y, predictions) + sum(losses)

    def gradient(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
        if keras.backend.backend() == "jax":
            import jax

            found = jax.grad(value)([keras.ops.convert_to_tensor(w) for w in weights])
        else:
            import tensorflow as tf

            tensors = [tf.convert_to_tensor(w) for w in weights]
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                total = value(tensors)
            found = tape.gradient(total, tensors)
        return [_tensor_numpy(g) for g in found]

    return gradient


def check_step(
    regularizer: Regularizer,
    reference: Reference,
    params: Mapping[str, Any] | None = None,
    *,
    tolerance: float = 1e-6,
) -> None:
    """One training step of `regularizer` (with `params`, chosen so that training is
    deterministic, e.g. dropout rates 0) equals the hand-computed update, with and without
    XLA: `weights - RATE * reference(weights, gradient, params)`."""
    from regbench.engine.training import compiled_loss

    values = regularizer.resolve(params)
    data = _data(8, 0)
    x, y = data.x_train, data.y_train
    for jit in (False, True):
        model, network = _compiled(regularizer, values, data, 1, len(x), jit)
        before = [_numpy(v) for v in network.trainable_variables]
        gradient = _gradient(network, x, y, compiled_loss(model))
        applied = reference(before, gradient, values)
        wanted = [w - RATE * np.asarray(g) for w, g in zip(before, applied, strict=True)]
        model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        after = [_numpy(v) for v in network.trainable_variables]
        gap = max(float(np.max(np.abs(a - w))) for a, w in zip(after, wanted, strict=True))
        assert gap <= tolerance, (
            f"{regularizer.name}: one training step{' under XLA' if jit else ''} is "
            f"{gap:.3g} from the update computed by hand (tolerance {tolerance:g})"
        )


def check_average(
    regularizer: Regularizer,
    params: Mapping[str, Any] | None = None,
    *,
    epochs: int = 4,
    tolerance: float = 1e-5,
) -> None:
    """`regularizer`'s run ends with the average its `WeightAverage` declares, of the
    weights after the steps it selects, and with batch-norm statistics recomputed for them."""
    from regbench.engine import averaging
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    values = regularizer.resolve(params)
    data, batch = _data(12, 1), 4
    rule = invoke(regularizer.average, values, ctx=None)
    assert isinstance(rule, WeightAverage), f"{regularizer.name}.average gave {rule!r}"
    for jit in (False, True):
        model, network = _compiled(regularizer, values, data, epochs, batch, jit)
        seen: list[list[np.ndarray]] = []
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=batch,
            epochs=epochs,
            shuffle=False,
            callbacks=[_snapshots(keras, network, seen)],
            verbose=0,
        )
        per_epoch = -(-len(data.x_train) // batch)
        first = rule.first_snapshot(per_epoch, epochs)
        taken = [
            weights
            for s, weights in enumerate(seen, start=1)
            if s >= first and (rule.every == "step" or s % per_epoch == 0)
        ]
        assert taken, f"{regularizer.name}: its average takes no snapshot in {epochs} epochs"
        wanted = _declared_average(rule, taken)
        assert averaging.finish(model, network, data.x_train, batch) == "average"
        after = [_numpy(v) for v in network.trainable_variables]
        gap = max(float(np.max(np.abs(a - w))) for a, w in zip(after, wanted, strict=True))
        assert gap <= tolerance, (
            f"{regularizer.name}: the run ends {gap:.3g} from the average of its "
            f"{len(taken)} snapshot(s) it declares{' (XLA)' if jit else ''}"
        )
        if rule.recalibrate_batchnorm:
            _check_statistics(network, data.x_train, batch, tolerance)


def _snapshots(keras: Any, network: Any, into: list[list[np.ndarray]]) -> Any:
    """A callback appending the network's trainable weights after every training step."""

    class Snapshots(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            if hasattr(self.model, "jax_state_sync"):  # JAX keeps the state apart mid-epoch
                self.model.jax_state_sync()
            into.append([_numpy(v) for v in network.trainable_variables])

    return Snapshots()


def _declared_average(rule: WeightAverage, taken: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The equal-weight mean of the snapshots, or their exponential average (`decay`)."""
    if rule.decay is None:
        return [np.mean(np.stack(group), axis=0) for group in zip(*taken, strict=True)]
    decay = rule.decay
    average = [w.copy() for w in taken[0]]
    for weights in taken[1:]:
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights, strict=True)]
    return average


def _feed(network: Any, target: Any, x: np.ndarray) -> np.ndarray:
    """What reaches `target` in the tiny model (a chain of layers), in training mode."""
    h = x
    for layer in network.layers:
        if layer is target:
            return np.asarray(_tensor_numpy(h))
        h = layer(h, training=True)
    raise AssertionError(f"{target.name} is not a layer of {network.name}")


def _tensor_numpy(x: Any) -> np.ndarray:
    from regbench.plugins.keras import import_keras

    return np.asarray(import_keras().ops.convert_to_numpy(x))


def _check_statistics(network: Any, x: np.ndarray, batch: int, tolerance: float) -> None:
    """Each batch-norm layer's moving statistics are the mean over `x`'s batches of the batch
    mean and (biased) variance of what reaches it, at the model's current weights."""
    from regbench.engine.averaging import batchnorm_layers

    for layer in batchnorm_layers(network):
        means, variances = [], []
        for begin in range(0, len(x), batch):
            h = _feed(network, layer, x[begin : begin + batch])
            axes = tuple(range(h.ndim - 1))
            means.append(h.mean(axis=axes))
            variances.append(h.var(axis=axes))
        for name, got, wanted in (
            ("moving mean", layer.moving_mean, np.mean(means, axis=0)),
            ("moving variance", layer.moving_variance, np.mean(variances, axis=0)),
        ):
            gap = float(np.max(np.abs(_numpy(got) - wanted)))
            assert gap <= tolerance, (
                f"{layer.name}'s {name} is {gap:.3g} from the statistics of the averaged "
                "weights: batch norm was not recalibrated for them"
            )
