"""Training with a batch-level regularizer (Mixup, CutMix): a thin model around the real one.

The wrapper's train step one-hot encodes the labels, hands images and targets to the
regularizer's `batch` hook and trains on what comes back with crossentropy on soft targets;
its test step one-hot encodes only. Accuracy compares argmax, so it means the same as the
sparse accuracy of other runs. The wrapper delegates to Keras's own train and test steps, so
it compiles with XLA like any model; only the inner model is counted, described and saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from regbench.plugins.keras import import_keras
from regbench.plugins.seam import Regularizer, RunContext


@cache
def _wrapper_class() -> type:
    keras = import_keras()
    ops = keras.ops

    class SoftTargetTraining(keras.Model):
        def __init__(self, inner, regularizer, params, run, seed):
            super().__init__(name=f"{inner.name}_training")
            self.inner = inner
            self.regularizer, self.params, self.run = regularizer, dict(params), run
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, x, training=False):
            return self.inner(x, training=training)

        def _one_hot(self, y):
            labels = ops.cast(ops.reshape(y, (-1,)), "int32")
            return ops.one_hot(labels, self.run.classes)

        def train_step(self, *args):  # TensorFlow and torch: (data); JAX: (state, data)
            *state, data = args
            x, y = data[0], self._one_hot(data[1])
            x, y = self.regularizer.batch(x, y, self.params, self.seed_generator, self.run)
            return super().train_step(*state, (x, y))

        def test_step(self, *args):
            *state, data = args
            return super().test_step(*state, (data[0], self._one_hot(data[1])))

    return SoftTargetTraining


def wrap_for_batches(
    model: Any, regularizer: Regularizer, params: Mapping[str, Any], run: RunContext
) -> Any:
    """`model` itself, or a trainable wrapper when `regularizer` rewrites training batches."""
    if not regularizer.uses_batches:
        return model
    return _wrapper_class()(model, regularizer, params, run, run.seed)


def soft_loss_and_metrics(keras: Any) -> tuple[Any, list[Any]]:
    """What a soft-target run trains with: crossentropy on the targets, argmax accuracy."""
    return keras.losses.CategoricalCrossentropy(), [
        keras.metrics.CategoricalAccuracy(name="accuracy")
    ]


def deployable(model: Any) -> Any:
    """The model to count, describe and save: the inner one of a wrapper."""
    return getattr(model, "inner", model)
