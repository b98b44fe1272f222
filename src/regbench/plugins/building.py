"""The build context an architecture's builder receives, and building a model through it.

The context applies the run's kernel regularizer to every conv/dense kernel it makes, inserts
the regularizer's layers at each point and records what it inserted, so the engine can tell
when a regularizer changes nothing on an architecture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regbench.errors import RegbenchError
from regbench.plugins.architecture import Architecture
from regbench.plugins.context import RunContext, invoke
from regbench.plugins.keras import import_keras
from regbench.plugins.points import BRANCH, NOISE, NORM, Point
from regbench.plugins.regularizer import Regularizer
from regbench.plugins.table import check_table, table_macs


@dataclass
class Inserted:
    """One point a build met, and how many layers the regularizer put there."""

    point: Point
    layers: int


class BuildContext:
    """What a builder makes its model with. Layers are created at every call, never shared."""

    def __init__(
        self,
        regularizer: Regularizer,
        params: Mapping[str, Any],
        *,
        classes: int,
        input_shape: tuple[int, int, int],
        hparams: Mapping[str, Any] | None = None,
        run: RunContext | None = None,
    ) -> None:
        self.keras = import_keras()
        self.regularizer = regularizer
        self.params = dict(params)
        self.classes = classes
        self.input_shape = tuple(input_shape)
        self.hparams = dict(hparams or {})
        self.run = run or RunContext(classes=classes, input_shape=self.input_shape)
        self.kernel_regularizer = invoke(regularizer.kernel_regularizer, self.params, ctx=self.run)
        self.inserted: list[Inserted] = []
        self.wrapped = 0  # layers the regularizer's `wrap_layer` replaced

    def conv(self, filters: int, kernel_size: int = 3, **kwargs: Any) -> Any:
        """A fresh Conv2D (Keras's arguments) carrying the run's kernel regularizer, as the
        regularizer's `wrap_layer` gives it back."""
        kwargs.setdefault("kernel_regularizer", self.kernel_regularizer)
        return self._wrapped(self.keras.layers.Conv2D(filters, kernel_size, **kwargs), "conv")

    def dense(self, units: int, **kwargs: Any) -> Any:
        """A fresh Dense layer (Keras's arguments) carrying the run's kernel regularizer, as
        the regularizer's `wrap_layer` gives it back."""
        return self._wrapped(self._dense(units, **kwargs), "dense")

    def classifier(self, x: Any) -> Any:
        """The softmax output over the run's classes (float32 even under mixed precision)."""
        layer = self._dense(self.classes, activation="softmax", dtype="float32")
        return self._wrapped(layer, "classifier")(x)

    def _dense(self, units: int, **kwargs: Any) -> Any:
        kwargs.setdefault("kernel_regularizer", self.kernel_regularizer)
        return self.keras.layers.Dense(units, **kwargs)

    def _wrapped(self, layer: Any, kind: str) -> Any:
        """`layer`, or what the regularizer's `wrap_layer` puts in its place (counted)."""
        used = invoke(self.regularizer.wrap_layer, layer, kind, self.params, ctx=self.run)
        self.wrapped += used is not layer
        return used

    def point(
        self,
        x: Any,
        name: str,
        kind: str,
        *,
        families: frozenset[str] = frozenset({NOISE, NORM}),
        meta: Mapping[str, Any] | None = None,
    ) -> Any:
        """A regularization point: `x` through whatever layers the regularizer puts here."""
        point = Point(name, kind, frozenset(families), dict(meta or {}), _shape(x))
        layers = (
            list(invoke(self.regularizer.layers_at, point, self.params, ctx=self.run))
            if point.accepts(self.regularizer.family)
            else []
        )
        self.inserted.append(Inserted(point, len(layers)))
        for layer in layers:
            x = layer(x)
        return x

    def residual(
        self,
        shortcut: Any,
        branch: Any,
        name: str,
        *,
        families: frozenset[str] = frozenset({BRANCH}),
        meta: Mapping[str, Any] | None = None,
    ) -> Any:
        """A merge point: a residual block's `shortcut` and `branch` joined by the regularizer's
        two-input layer (its `merge_at`), by default `keras.layers.Add()`. The point's kind
        and shape are the branch's; `meta` gets `role` "merge" unless it names one."""
        shape = _shape(branch)
        kind = "maps" if len(shape) == 3 else "vector"
        point = Point(name, kind, frozenset(families), {"role": "merge", **(meta or {})}, shape)
        layer = (
            invoke(self.regularizer.merge_at, point, self.params, ctx=self.run)
            if point.accepts(self.regularizer.family)
            else None
        )
        self.inserted.append(Inserted(point, int(layer is not None)))
        return (layer if layer is not None else self.keras.layers.Add())([shortcut, branch])


def _shape(x: Any) -> tuple[int | None, ...]:
    """A tensor's shape without the batch axis."""
    return tuple(x.shape[1:])


@dataclass
class Built:
    """A built model and what its build inserted where."""

    model: Any
    inserted: list[Inserted] = field(default_factory=list)
    input_layers: int = 0
    wrapped: int = 0

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(item.point for item in self.inserted)


def build_network(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any],
    input_shape: tuple[int, int, int],
    classes: int,
    *,
    arch_params: Mapping[str, Any] | None = None,
    run: RunContext | None = None,
) -> Built:
    """The model of `architecture` with `regularizer` (params already resolved). A plain chain
    of layers becomes a Sequential model (what the lab's tables are); anything else stays a
    functional model."""
    keras = import_keras()
    ctx = BuildContext(
        regularizer,
        params,
        classes=classes,
        input_shape=input_shape,
        hparams=architecture.resolve(arch_params),
        run=run,
    )
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    augment = list(invoke(regularizer.input_layers, ctx.params, ctx=ctx.run))
    for layer in augment:
        x = layer(x)
    outputs = architecture.build(ctx, x)
    name = f"{architecture.name}_{regularizer.name}".replace("+", "_")
    model = keras.Model(inputs, outputs, name=name)
    chain = model.layers[1:]
    if _is_chain(model):
        model = keras.Sequential([keras.Input(shape=tuple(input_shape)), *chain], name=name)
    return Built(model, ctx.inserted, len(augment), ctx.wrapped)


def _is_chain(model: Any) -> bool:
    """Whether each layer takes exactly the previous layer's output (no branches, no skips)."""
    previous = model.layers[0].output
    for layer in model.layers[1:]:
        if len(layer._inbound_nodes) != 1 or layer.input is not previous:
            return False
        previous = layer.output
    return True


def count_macs(model: Any) -> int:
    """Multiply-accumulates per image of a built model's Conv2D and Dense layers (wrapped
    ones included)."""
    keras = import_keras()
    total = 0
    for layer, placed in _all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            in_channels = int(placed.input.shape[-1])
            groups = max(1, int(getattr(layer, "groups", 1)))
            outputs = math.prod(int(d) for d in placed.output.shape[1:])
            total += outputs * kh * kw * in_channels // groups
        elif isinstance(layer, keras.layers.Dense):
            positions = math.prod(int(d) for d in placed.output.shape[1:-1])
            total += positions * int(placed.input.shape[-1]) * layer.units
    return total


def _all_layers(model: Any) -> list[tuple[Any, Any]]:
    """(layer, placed) for every leaf layer of a model: `placed` is the layer in the model's
    graph, the leaf itself or the wrapper (`wrap_layer`) around it, whose input and output
    are the leaf's (a wrapped layer has no graph node of its own)."""
    keras = import_keras()
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
        elif isinstance(layer, keras.layers.Wrapper):
            out.append((layer.layer, layer))
        else:
            out.append((layer, layer))
    return out


def count_regularized_kernels(model: Any) -> int:
    """How many kernels of a built model carry a kernel regularizer."""
    return sum(
        1
        for layer, _ in _all_layers(model)
        if getattr(layer, "kernel_regularizer", None) is not None
        and getattr(layer, "kernel", None) is not None
    )


class _Plain(Regularizer):
    name = "none"


_MACS: dict[tuple[str, tuple[int, ...], int], int] = {}


def macs(
    architecture: Architecture, input_shape: tuple[int, int, int] = (32, 32, 3), classes: int = 10
) -> int:
    """Multiply-accumulates per image of the Conv/Dense layers (to start the most expensive
    cells first). A table is costed by arithmetic; a builder's model is built without
    regularization and measured (memoized)."""
    if architecture.builder is None:
        return table_macs(architecture.layers, input_shape, classes)
    key = (architecture.name, tuple(input_shape), classes)
    if key not in _MACS:
        built = build_network(architecture, _Plain(), {}, input_shape, classes)
        _MACS[key] = count_macs(built.model)
    return _MACS[key]


def check_input(architecture: Architecture, input_shape: tuple[int, int, int]) -> None:
    """Refuse an input too small for the model, naming the layer that would collapse it (a
    builder is built on the shape, with the layer's complaint; a table is checked without Keras)."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise RegbenchError(f"input shape must be height,width,channels; got {input_shape}")
    if architecture.builder is None:
        check_table(architecture.name, architecture.layers, input_shape)
        return
    try:
        build_network(architecture, _Plain(), {}, input_shape, 2)
    except RegbenchError:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())[:200]
        raise RegbenchError(
            f"{architecture.name} cannot take a {'x'.join(map(str, input_shape))} input: {message}"
        ) from None
