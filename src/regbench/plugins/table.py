"""The layer-table language: an architecture written as rows (as the lab's tables are), its
shape arithmetic, and its compilation to layers made through a build context."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from regbench.errors import RegbenchError
from regbench.plugins.points import Point


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


def compile_row(ctx: Any, spec: LayerSpec, x: Any) -> Any:
    """One table row as layers made through the build context."""
    if isinstance(spec, Point):
        return ctx.point(x, spec.name, spec.kind, families=spec.families, meta=spec.meta)
    if isinstance(spec, Conv):
        return ctx.conv(
            spec.filters,
            spec.kernel,
            strides=spec.strides,
            padding=spec.padding,
            activation=spec.activation,
        )(x)
    if isinstance(spec, MaxPool):
        return ctx.keras.layers.MaxPooling2D(spec.size)(x)
    if isinstance(spec, Flatten):
        return ctx.keras.layers.Flatten()(x)
    if isinstance(spec, Dense):
        return ctx.dense(spec.units, activation=spec.activation)(x)
    if isinstance(spec, Classifier):
        return ctx.classifier(x)
    raise TypeError(
        f"{type(spec).__name__} is not a layer table row; write a builder to use Keras layers"
    )


def table_macs(layers: tuple[LayerSpec, ...], input_shape: tuple[int, ...], classes: int) -> int:
    """Multiply-accumulates per image of a table's Conv/Dense layers, by shape arithmetic."""
    total, shape = 0, tuple(input_shape)
    for spec in layers:
        after = output_shape(spec, shape)
        if isinstance(spec, Conv):
            total += math.prod(after) * spec.kernel * spec.kernel * shape[-1]
        elif isinstance(spec, Dense):
            total += shape[-1] * spec.units
        elif isinstance(spec, Classifier):
            total += shape[-1] * classes
        shape = after
    return total


def check_table(name: str, layers: tuple[LayerSpec, ...], input_shape: tuple[int, ...]) -> None:
    """Refuse an input too small for a table, naming the layer that would collapse it."""
    shape: tuple[int, ...] = tuple(input_shape)
    for index, spec in enumerate(layers):
        shape = output_shape(spec, shape)
        if min(shape) < 1:
            raise RegbenchError(
                f"{name} needs a larger input than "
                f"{'x'.join(map(str, input_shape))}: layer {index} "
                f"({type(spec).__name__}) would have no pixels left"
            )
