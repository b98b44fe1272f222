"""The run context every regularizer hook may receive, and the training progress it carries.

Progress is counted inside the model, so a ramp advances wherever the model trains: the
progress is a weightless Keras layer whose step count is a non-trainable variable, and a layer
that ramps keeps one as an attribute, which makes the count part of the model's state.
TensorFlow updates it in the compiled step (with or without XLA); JAX's `fit` and the vmapped
engine thread it through their stateless steps as they thread BatchNorm's statistics. The count
is state, like a seed generator's, not a weight: parameter counts leave it out, and a saved
model keeps it (and reloads without it, when its layer's config does not recreate it).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from regbench.api import RunContext
from regbench.plugins.keras import import_keras


@cache
def _progress_class() -> type:
    """The Keras layer class of a run's training progress (made once Keras is imported)."""
    keras = import_keras()
    ops = keras.ops

    class TrainingProgress(keras.layers.Layer):  # type: ignore[name-defined]
        """Fraction of a run's training steps done, counted by the layer that keeps it."""

        def __init__(self, total_steps: int = 1, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.total_steps = max(1, int(total_steps))
            self.steps = self.add_weight(
                shape=(),
                initializer="zeros",
                dtype="float32",
                trainable=False,
                autocast=False,  # a float16 count would stop at 2048
                aggregation="only_first_replica",
                name="steps",
            )
            self.built = True

        @property
        def weights(self) -> list[Any]:
            """None: the count is state (it stays in `variables`), so no parameter count moves."""
            return []

        def value(self) -> Any:
            """The fraction done before this step, in [0, 1], as a float32 tensor. Each read
            counts one training step: read it once in each training call of the layer that
            keeps this progress (the first read gives 0, the last one (total - 1) / total)."""
            done = self.steps.value * 1.0  # a copy: TensorFlow's value would see the assign
            self.steps.assign(done + 1.0)
            return ops.minimum(done / self.total_steps, 1.0)

        def fresh(self) -> Any:
            """A new progress over the same run, at step 0: one for each layer that ramps
            (several layers reading one progress would count each step several times)."""
            return TrainingProgress(self.total_steps)

    return TrainingProgress


def training_progress(total_steps: int) -> Any:
    """A run's training progress over `total_steps` steps, at step 0."""
    return _progress_class()(total_steps)


def run_context(
    *,
    epochs: int,
    batch_size: int,
    train_size: int,
    classes: int,
    input_shape: tuple[int, ...],
    learning_rate: float | None,
    stage: str,
    seed: int,
    training: bool = True,
    lr_schedule: str = "constant",
) -> RunContext:
    """The context of one run; `training` gives it a live progress value."""
    steps = max(1, math.ceil(train_size / batch_size))
    return RunContext(
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        train_size=train_size,
        classes=classes,
        input_shape=tuple(input_shape),
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        stage=stage,
        seed=seed,
        progress=training_progress(max(1, epochs) * steps) if training else None,
    )
