"""A regularizer: what it does at each side of the seam, and the hyperparameters it declares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from regbench.plugins.context import RunContext
from regbench.plugins.hparams import HParam, resolve_hparams
from regbench.plugins.points import NOISE, Point
from regbench.plugins.steps import Step, WeightAverage

if TYPE_CHECKING:
    from regbench.plugins.architecture import Architecture


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer as data (a Keras optimizer name and its keyword arguments)."""

    name: str = "sgd"
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def with_kwargs(self, **extra: Any) -> OptimizerSpec:
        return replace(self, kwargs={**self.kwargs, **extra})


class Regularizer:
    """A regularization method. Override only the sides of the seam it acts on.

    `params` is always the full, validated dict of this regularizer's hyperparameters. Any hook
    may add a `ctx` parameter to receive the run's `RunContext` (epochs, steps, sizes, classes,
    learning rate, stage, seed, training progress).
    """

    name: str = ""
    description: str = ""
    family: str = NOISE
    hparams: tuple[HParam, ...] = ()
    baseline: bool = False  # the reference cell (`none`): never skipped for changing nothing
    # Claims that the conformance kit (regbench.testing) holds a regularizer to; set the true ones.
    adds_params: bool = False  # its layers have weights, so counts may exceed the `none` baseline
    adds_losses: bool = False  # its layers add losses beyond one per kernel it regularizes
    stochastic_inference: bool = False  # two training=False calls may give different outputs
    # Its declared version ("2"): recorded instead of a hash of its source, so its results go
    # stale when the author changes it, not on every edit (plugins.provenance).
    version: str | None = None
    # The plugin API it was written for (regbench.api.API_VERSION; plugins.versions): hooks
    # whose contract changed since are called the old way, with a deprecation warning.
    api_version: int = 1

    def layers_at(self, point: Point, params: Mapping[str, Any]) -> list:
        """Keras layers to insert at `point` (only called where `point.accepts(self.family)`)."""
        return []

    def merge_at(self, point: Point, params: Mapping[str, Any]) -> Any:
        """A two-input Keras layer joining a residual block's shortcut and branch at a merge
        point (`ctx.residual`), called as `layer([shortcut, branch])`; None keeps Keras's
        `Add()`. Only called where `point.accepts(self.family)`."""
        return None

    def wrap_layer(self, layer: Any, kind: str, params: Mapping[str, Any]) -> Any:
        """The layer to use in place of one that `ctx.conv`, `ctx.dense` or `ctx.classifier`
        made (`kind` "conv", "dense" or "classifier"): `layer` itself, or a Keras layer that
        wraps it (a `keras.layers.Wrapper`: spectral or weight normalization). Called once per
        layer, before the layer is built."""
        return layer

    def kernel_regularizer(self, params: Mapping[str, Any]) -> Any:
        """A Keras regularizer for every Conv2D/Dense kernel, or None."""
        return None

    def input_layers(self, params: Mapping[str, Any]) -> list:
        """Keras layers applied to the input before the model (augmentation: training only)."""
        return []

    def batch(
        self, images: Any, targets: Any, params: Mapping[str, Any], seed: Any, ctx: RunContext
    ) -> tuple[Any, Any]:
        """A training batch, `images` and one-hot `targets`, in; new images and soft targets
        out. Training only; written with keras.ops and keras.random drawing from `seed` (a
        keras.random.SeedGenerator), so it compiles with XLA on every backend. A regularizer
        that overrides this trains with crossentropy on soft targets and argmax accuracy."""
        return images, targets

    def loss(self, params: Mapping[str, Any], loss: Any) -> Any:
        """The training loss: return `loss` unchanged or a replacement."""
        return loss

    def optimizer(self, params: Mapping[str, Any], optimizer: OptimizerSpec) -> OptimizerSpec:
        """The optimizer to train with: return `optimizer` unchanged or a modified copy. Its
        `kwargs["learning_rate"]` is the protocol's rate under the protocol's schedule (a number,
        or a Keras LearningRateSchedule over the run's steps): keep it, wrap it or replace it."""
        return optimizer

    def callbacks(self, params: Mapping[str, Any]) -> list:
        """Keras callbacks to add to training."""
        return []

    def train_step(
        self, step: Step, images: Any, targets: Any, params: Mapping[str, Any], ctx: RunContext
    ) -> None:
        """One training step of one batch: evaluate `step.gradients(...)` as often as the
        method needs, at whatever weights, and `step.apply(gradients)`. `targets` are what the
        loss takes (class ids; soft targets after a `batch` hook). Written with keras.ops, so it
        compiles with XLA on every backend and inside the vmapped engine's program. The step's
        reported loss and accuracy are those of its first `gradients` call."""
        loss, gradients = step.gradients(images, targets)
        step.apply(gradients)

    def average(self, params: Mapping[str, Any]) -> WeightAverage | None:
        """The weights the run ends with: None keeps the last (or restored) ones; a
        `WeightAverage` makes the run evaluated, scored and saved with the average."""
        return None

    def refuse(self, architecture: Architecture, params: Mapping[str, Any]) -> str | None:
        """A reason this regularizer cannot be paired with `architecture`, or None. (A pairing
        where it would change nothing is detected without this: see design.applicability.)"""
        return None

    @property
    def uses_batches(self) -> bool:
        """Whether it overrides `batch`, so training switches to soft targets."""
        return overrides(self, "batch")

    @property
    def uses_steps(self) -> bool:
        """Whether it overrides `train_step`, so regbench's own step trains it."""
        return overrides(self, "train_step")

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Defaults overlaid with `overrides`, every value checked against its bounds."""
        return resolve_hparams(self.name, self.hparams, overrides)


def overrides(regularizer: Regularizer, hook: str) -> bool:
    """Whether `regularizer` replaces the base class's `hook`."""
    return getattr(type(regularizer), hook) is not getattr(Regularizer, hook)
