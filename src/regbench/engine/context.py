"""The run context every regularizer hook may receive, and the training progress it carries.

Progress is a non-trainable Keras variable created outside the model (so it is no weight of
the model: not counted, not saved) and advanced by a callback before every training batch;
layers read it inside the compiled step, on TensorFlow with or without XLA. On JAX a compiled
step sees the value it was traced with, so there a ramp stays at its start.
"""

from __future__ import annotations

import math
from typing import Any

from regbench.plugins.keras import import_keras
from regbench.plugins.seam import RunContext


class TrainingProgress:
    """Fraction of the run's training steps done: 0 at the first batch, near 1 at the last."""

    def __init__(self, epochs: int, steps_per_epoch: int) -> None:
        keras = import_keras()
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = max(1, int(epochs)) * self.steps_per_epoch
        # 1 until the callback runs: without it a ramp sits at its full value, not at zero
        self.variable = keras.Variable(1.0, dtype="float32", trainable=False, name="progress")

    def value(self) -> Any:
        return self.variable.value

    def callback(self) -> Any:
        """The Keras callback that advances the value before each training batch."""
        keras = import_keras()
        progress = self

        class Advance(keras.callbacks.Callback):  # type: ignore[name-defined]
            epoch = 0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.epoch = epoch

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                done = self.epoch * progress.steps_per_epoch + batch
                progress.variable.assign(min(1.0, done / progress.total_steps))

        return Advance()


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
        stage=stage,
        seed=seed,
        progress=TrainingProgress(epochs, steps) if training else None,
    )
