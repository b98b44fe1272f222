"""The two sides of the seam past Keras `fit`: the training step and the weights a run ends with.

A regularizer that changes *how a step trains* (SAM's two gradients of one batch, R-Drop's two
dropout passes) overrides `Regularizer.train_step` and gets a `Step`; one that changes *which
weights a run ends with* (SWA, EMA) returns a `WeightAverage` from `Regularizer.average`.
regbench implements both for every engine (engine.steps, engine.averaging), so a plugin
written here in `keras.ops` runs the same on TensorFlow, JAX and the vmapped engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

EVERY = ("step", "epoch")

# `objective(forward, images, targets)`: the training objective of one gradient evaluation,
# `forward(images)` being the model in training mode (fresh dropout masks at every call)
Objective = Callable[[Callable[[Any], Any], Any, Any], Any]


class Step(Protocol):
    """One training step of one batch, as regbench hands it to `Regularizer.train_step`.

    The weights are values, not variables: `gradients` evaluates the model at any weights
    without touching the run's own, so perturbing and restoring (SAM) is arithmetic on lists.
    """

    @property
    def weights(self) -> list[Any]:
        """The trainable weights' current values, in the model's order (after `apply`: the
        updated ones)."""
        ...

    def gradients(
        self,
        images: Any,
        targets: Any,
        *,
        weights: Sequence[Any] | None = None,
        objective: Objective | None = None,
    ) -> tuple[Any, list[Any]]:
        """The loss and its gradients with respect to the weights, at `weights` (default: the
        current ones). The loss is `objective(forward, images, targets)` (default: the run's
        loss of one forward pass, `self.loss(targets, forward(images))`) plus the model's own
        penalties (kernel regularizers, layers' losses) once, from the first forward pass.
        Each forward pass runs in training mode with its own dropout masks and updates the
        batch-norm statistics. Call it as often as the method needs: each forward pass counts
        as one pass of the step (`passes_per_step` in the run's row)."""
        ...

    def loss(self, targets: Any, predictions: Any) -> Any:
        """The run's compiled loss (the `loss` hook applied) of `predictions`, a mean."""
        ...

    def apply(self, gradients: Sequence[Any]) -> None:
        """One update of the current weights by the run's optimizer (its schedule, momentum,
        weight decay), as Keras `fit` would make it with these gradients."""
        ...


@dataclass(frozen=True)
class WeightAverage:
    """The weights a run ends with, evaluated, scored and saved with: an average of the weights
    it passed through in training (SWA: equal weights; EMA: exponential).

    A snapshot of the weights joins the average after every training step (`every="step"`) or
    at every epoch end (`"epoch"`), once more than `start` (a fraction) of the run's steps or
    epochs are done. With `decay` None every snapshot counts equally (the running mean); with a
    number, `average = decay * average + (1 - decay) * weights` (the first snapshot starts it).
    With `recalibrate_batchnorm`, regbench then recomputes every batch-norm layer's statistics
    for the averaged weights on the training images, one pass in the protocol's batches (the
    mean of the batches' statistics), as torch's `update_bn` does. Override `mix` for another
    rule; it is called inside the compiled step, with keras.ops on tensors.
    """

    start: float = 0.0
    every: str = "step"
    decay: float | None = None
    recalibrate_batchnorm: bool = True

    def __post_init__(self) -> None:
        if self.every not in EVERY:
            raise ValueError(f"WeightAverage.every must be one of {EVERY}; got {self.every!r}")
        if not 0.0 <= self.start < 1.0:
            raise ValueError(f"WeightAverage.start must be in [0, 1); got {self.start!r}")
        if self.decay is not None and not 0.0 <= self.decay < 1.0:
            raise ValueError(f"WeightAverage.decay must be in [0, 1) or None; got {self.decay!r}")

    def mix(self, average: Any, weights: Any, count: Any) -> Any:
        """The average after one more snapshot `weights`, `count` snapshots being in it
        already (a float32 scalar tensor, 0 before the first)."""
        from regbench.plugins.keras import import_keras

        ops = import_keras().ops
        if self.decay is None:
            return average + (weights - average) / (count + 1.0)
        blended = self.decay * average + (1.0 - self.decay) * weights
        return ops.where(count > 0.0, blended, weights)

    def first_snapshot(self, steps_per_epoch: int, epochs: int) -> int:
        """The 1-based training step after which the first snapshot is taken."""
        if self.every == "epoch":
            return (int(self.start * epochs) + 1) * max(1, steps_per_epoch)
        return int(self.start * epochs * max(1, steps_per_epoch)) + 1
