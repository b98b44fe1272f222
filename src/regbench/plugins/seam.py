"""The seam between architectures and regularizers.

An architecture is a layer table with named regularization points; a regularizer decides what
happens at those points and around the model (kernels, loss, optimizer, input data, callbacks)
and declares the hyperparameters it can be tuned on. Everything here is plain data: Keras is
only imported when `models.build_model` turns a table into layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from regbench.errors import RegbenchError

NOISE = "noise"  # layers that perturb activations while training (dropout and kin): the lab's [D]
NORM = "norm"  # layers that normalize activations (batch norm and kin): the lab's [B]
ANY = "any"  # a regularizer of this family is asked at every point


# ---------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class HParam:
    """A tunable hyperparameter of a regularizer: its default, bounds and search scale."""

    name: str
    default: float
    low: float
    high: float
    log: bool = False
    integer: bool = False
    help: str = ""

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(
                f"{self.name}: default {self.default} outside [{self.low}, {self.high}]"
            )
        if self.log and self.low <= 0:
            raise ValueError(
                f"{self.name}: a log-scale hyperparameter needs a positive lower bound"
            )

    def coerce(self, value: Any, owner: str = "") -> float | int:
        """Parse and bound-check one value; refuse anything outside [low, high]."""
        label = f"{owner}.{self.name}" if owner else self.name
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RegbenchError(f"{label}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise RegbenchError(f"{label}={value!r} is not a finite number")
        if self.integer:
            if number != int(number):
                raise RegbenchError(f"{label}={value!r} must be a whole number")
            number = int(number)
        if not self.low <= number <= self.high:
            raise RegbenchError(
                f"{label}={value} is outside its bounds [{self.low:g}, {self.high:g}]"
            )
        return number


# ---------------------------------------------------------------- the layer table


@dataclass(frozen=True)
class Point:
    """A named place in a layer table where regularizers may insert layers.

    `kind` is "maps" (feature maps, after a conv trunk) or "vector" (flat features);
    `families` says which regularizer families act here (the lab's [D] and [B] marks).
    """

    name: str
    kind: str
    families: frozenset[str] = frozenset({NOISE, NORM})

    def accepts(self, family: str) -> bool:
        return family == ANY or family in self.families


@dataclass(frozen=True)
class Conv:
    """Conv2D with ReLU; the kernel regularizer of the run is applied to it."""

    filters: int
    kernel: int = 3
    strides: int = 1
    padding: str = "valid"
    activation: str | None = "relu"


@dataclass(frozen=True)
class MaxPool:
    """MaxPooling2D with a square window and stride equal to it."""

    size: int = 2


@dataclass(frozen=True)
class Flatten:
    """Flatten feature maps into a vector."""


@dataclass(frozen=True)
class Dense:
    """A hidden Dense layer with ReLU; the kernel regularizer of the run is applied to it."""

    units: int
    activation: str | None = "relu"


@dataclass(frozen=True)
class Classifier:
    """The softmax output layer: Dense(classes); the kernel regularizer applies here too."""


LayerSpec = Conv | MaxPool | Flatten | Dense | Classifier | Point


def output_shape(spec: LayerSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape after one spec (without the batch axis); raises if the input has become too small."""
    if isinstance(spec, Conv):
        h, w, _ = shape
        if spec.padding == "same":
            h, w = math.ceil(h / spec.strides), math.ceil(w / spec.strides)
        else:
            h = (h - spec.kernel) // spec.strides + 1
            w = (w - spec.kernel) // spec.strides + 1
        return (h, w, spec.filters)
    if isinstance(spec, MaxPool):
        h, w, c = shape
        return (h // spec.size, w // spec.size, c)
    if isinstance(spec, Flatten):
        return (math.prod(shape),)
    if isinstance(spec, Dense):
        return (spec.units,)
    return shape


@dataclass(frozen=True)
class Architecture:
    """A model as a layer table: specs and regularization points, read top to bottom."""

    name: str
    description: str
    layers: tuple[LayerSpec, ...]
    aliases: tuple[str, ...] = ()

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(spec for spec in self.layers if isinstance(spec, Point))

    def macs(self, input_shape: tuple[int, int, int] = (32, 32, 3), classes: int = 10) -> int:
        """Multiply-accumulates per image of the table's Conv/Dense layers: a cost estimate
        that needs no framework (used to start the most expensive cells first)."""
        total, shape = 0, tuple(input_shape)
        for spec in self.layers:
            after = output_shape(spec, shape)
            if isinstance(spec, Conv):
                total += math.prod(after) * spec.kernel * spec.kernel * shape[-1]
            elif isinstance(spec, Dense):
                total += shape[-1] * spec.units
            elif isinstance(spec, Classifier):
                total += shape[-1] * classes
            shape = after
        return total

    def check_input(self, input_shape: tuple[int, int, int]) -> None:
        """Refuse an input too small for the table, naming the layer that would collapse it."""
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise RegbenchError(f"input shape must be height,width,channels; got {input_shape}")
        shape: tuple[int, ...] = tuple(input_shape)
        for index, spec in enumerate(self.layers):
            shape = output_shape(spec, shape)
            if min(shape) < 1:
                raise RegbenchError(
                    f"{self.name} needs a larger input than "
                    f"{'x'.join(map(str, input_shape))}: layer {index} "
                    f"({type(spec).__name__}) would have no pixels left"
                )


# ---------------------------------------------------------------- regularizers


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer as data (a Keras optimizer name and its keyword arguments)."""

    name: str = "sgd"
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def with_kwargs(self, **extra: Any) -> OptimizerSpec:
        return replace(self, kwargs={**self.kwargs, **extra})


class Regularizer:
    """A regularization method. Override only the sides of the seam it acts on.

    `params` is always the full, validated dict of this regularizer's hyperparameters.
    """

    name: str = ""
    description: str = ""
    family: str = NOISE
    hparams: tuple[HParam, ...] = ()
    # Claims that the conformance kit (regbench.testing) holds a regularizer to; set the true ones.
    adds_params: bool = False  # its layers have weights, so counts may exceed the `none` baseline
    adds_losses: bool = False  # its layers add losses beyond one per kernel it regularizes
    stochastic_inference: bool = False  # two training=False calls may give different outputs

    def layers_at(self, point: Point, params: Mapping[str, Any]) -> list:
        """Keras layers to insert at `point` (only called where `point.accepts(self.family)`)."""
        return []

    def kernel_regularizer(self, params: Mapping[str, Any]) -> Any:
        """A Keras regularizer for every Conv2D/Dense kernel, or None."""
        return None

    def input_layers(self, params: Mapping[str, Any]) -> list:
        """Keras layers applied to the input before the table (augmentation: training only)."""
        return []

    def loss(self, params: Mapping[str, Any], loss: Any) -> Any:
        """The training loss: return `loss` unchanged or a replacement."""
        return loss

    def optimizer(self, params: Mapping[str, Any], optimizer: OptimizerSpec) -> OptimizerSpec:
        """The optimizer to train with: return `optimizer` unchanged or a modified copy."""
        return optimizer

    def callbacks(self, params: Mapping[str, Any]) -> list:
        """Keras callbacks to add to training."""
        return []

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Defaults overlaid with `overrides`, every value checked against its bounds."""
        known = {h.name: h for h in self.hparams}
        values: dict[str, float | int] = {h.name: h.default for h in self.hparams}
        for key, value in (overrides or {}).items():
            if key not in known:
                valid = ", ".join(known) or "none"
                raise RegbenchError(
                    f"regularizer {self.name!r} has no hyperparameter {key!r} (it has: {valid})"
                )
            values[key] = known[key].coerce(value, self.name)
        return values
