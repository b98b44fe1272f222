"""Training with a batch-level regularizer (Mixup, CutMix): a thin model around the real one.

The wrapper's train step one-hot encodes the labels, hands images and targets to the
regularizer's `batch` hook and trains on what comes back with crossentropy on soft targets;
its loss and metrics one-hot encode sparse labels (evaluation, Keras's symbolic build).
Accuracy compares argmax, so it means the same as the sparse accuracy of other runs. The
wrapper delegates to Keras's own train and test steps, so it compiles with XLA like any model
(TensorFlow, JAX); only the inner model is counted, described and saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from regbench.plugins.context import RunContext
from regbench.plugins.keras import import_keras
from regbench.plugins.regularizer import Regularizer


@cache
def _wrapper_class() -> type:
    keras = import_keras()
    ops = keras.ops

    class SoftTargetTraining(keras.Model):  # type: ignore[name-defined]
        def __init__(self, inner, regularizer, params, run, seed):
            super().__init__(name=f"{inner.name}_training")
            self.inner = inner
            self.regularizer, self.params, self.run = regularizer, dict(params), run
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, x, training=False):
            return self.inner(x, training=training)

        def _targets(self, y):
            """Sparse labels as one-hot rows; soft targets (already rows) as they are."""
            if len(y.shape) == 2 and y.shape[-1] == self.run.classes:
                return y
            labels = ops.cast(ops.reshape(y, (-1,)), "int32")
            return ops.one_hot(labels, self.run.classes)

        def train_step(self, *args):  # TensorFlow and torch: (data); JAX: (state, data)
            *state, data = args
            x, y = data[0], self._targets(data[1])
            if not state:
                x, y = self.regularizer.batch(x, y, self.params, self.seed_generator, self.run)
                return super().train_step((x, y))
            (x, y), state = self._stateless_batch(x, y, state[0])
            return super().train_step(state, (x, y))

        def _stateless_batch(self, x, y, state):
            """JAX: draw from the seed generator through the step's own state, as Keras's
            stateless calls do, and hand the advanced state on."""
            trainable, non_trainable, *rest = state
            variables = self.non_trainable_variables
            with keras.StatelessScope(
                state_mapping=list(zip(variables, non_trainable, strict=True))
            ) as scope:
                out = self.regularizer.batch(x, y, self.params, self.seed_generator, self.run)
            advanced = [
                scope.get_current_value(v) if scope.get_current_value(v) is not None else old
                for v, old in zip(variables, non_trainable, strict=True)
            ]
            return out, (trainable, advanced, *rest)

        # Keras also computes losses and metrics outside the steps (JAX's symbolic build)
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            y = None if y is None else self._targets(y)
            return super().compute_loss(x, y, y_pred, sample_weight, training)

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, self._targets(y), y_pred, sample_weight)

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
