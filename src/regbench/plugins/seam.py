"""The seam between architectures and regularizers.

An architecture is a builder, `build(ctx, x)`, that makes fresh Keras layers through a build
context and names regularization points with `ctx.point(...)`; a layer table is sugar compiled to
such a builder. A regularizer decides what happens at those points and around the model
(kernels, loss, optimizer, input data, training batches, callbacks), may refuse a pairing, and
declares the hyperparameters it can be tuned on. Every regularizer hook may take a `ctx`
argument to receive the run's `RunContext`. Everything here is plain data: Keras is only
imported when a model is built.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from regbench.errors import RegbenchError

NOISE = "noise"  # layers that perturb activations while training (dropout and kin): the lab's [D]
NORM = "norm"  # layers that normalize activations (batch norm and kin): the lab's [B]
BRANCH = "branch"  # the end of a residual branch, before the skip is added (stochastic depth)
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


def resolve_hparams(
    owner: str, hparams: Sequence[HParam], overrides: Mapping[str, Any] | None
) -> dict[str, float | int]:
    """Defaults overlaid with `overrides`, every value checked against its bounds."""
    known = {h.name: h for h in hparams}
    values: dict[str, float | int] = {h.name: h.default for h in hparams}
    for key, value in (overrides or {}).items():
        if key not in known:
            valid = ", ".join(known) or "none"
            raise RegbenchError(f"{owner!r} has no hyperparameter {key!r} (it has: {valid})")
        values[key] = known[key].coerce(value, owner)
    return values


# ---------------------------------------------------------------- the run context


@dataclass(frozen=True)
class RunContext:
    """What a run is, for every regularizer hook that declares a `ctx` argument.

    `progress` is None outside training; in training it is an object whose `value()` gives the
    fraction of training steps done (0 to 1) as a tensor a layer can read inside a compiled
    step. It is not a model weight: it never shows in parameter counts or saved models.
    """

    epochs: int = 1
    steps_per_epoch: int = 1
    batch_size: int = 64
    train_size: int = 0
    classes: int = 10
    input_shape: tuple[int, ...] = (32, 32, 3)
    learning_rate: float | None = None
    stage: str = "grid"
    seed: int = 0
    progress: Any = None

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def invoke(method: Callable[..., Any], *args: Any, ctx: RunContext | None = None) -> Any:
    """Call a regularizer hook, passing `ctx` only to hooks that declare it (as pluggy passes
    a hook implementation only the arguments it names), so hooks written without it still work."""
    try:
        takes = "ctx" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes = False
    return method(*args, ctx=ctx) if takes else method(*args)


# ---------------------------------------------------------------- the layer table


@dataclass(frozen=True)
class Point:
    """A named place in a layer table where regularizers may insert layers.

    `kind` is "maps" (feature maps, after a conv trunk) or "vector" (flat features);
    `families` says which regularizer families act here (the lab's [D] and [B] marks); `meta`
    carries what a regularizer may need to know about the place, e.g. `role` ("trunk", or
    "branch" for the end of a residual branch just before the skip is added) and `block` /
    `blocks` (the residual block's 1-based index and the count, for stochastic depth).
    """

    name: str
    kind: str
    families: frozenset[str] = frozenset({NOISE, NORM})
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

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
    """A model: a builder `build(ctx, x) -> output`, or a layer table compiled to one.

    Give `layers` (a table read top to bottom, as in SPEC.md) or `builder` (a function of a
    build context and the input tensor that returns the classifier's output). A builder makes
    its layers through `ctx.conv` / `ctx.dense` (they carry the run's kernel regularizer),
    `ctx.point` (the regularizer's layers go there) and `ctx.classifier`, and may use any other
    Keras layer (`ctx.keras.layers...`); it runs at every build, so layers are always fresh.
    `hparams` are the architecture's own hyperparameters (depth, width), read as `ctx.hparams`.
    Override `refuse` in a subclass to turn down a regularizer with a reason.
    """

    name: str
    description: str
    layers: tuple[LayerSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    builder: Callable[[Any, Any], Any] | None = None
    hparams: tuple[HParam, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.layers) == (self.builder is not None):
            raise ValueError(f"architecture {self.name!r}: give either layers or builder")

    def build(self, ctx: Any, x: Any) -> Any:
        """The output tensor of the model on input `x`, layers made through `ctx`."""
        if self.builder is not None:
            return self.builder(ctx, x)
        for spec in self.layers:
            x = _compile_spec(ctx, spec, x)
        return x

    def refuse(self, regularizer: Regularizer, params: Mapping[str, Any]) -> str | None:
        """A reason this architecture cannot be paired with `regularizer`, or None."""
        return None

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        return resolve_hparams(self.name, self.hparams, overrides)

    @property
    def points(self) -> tuple[Point, ...]:
        """The table's points (a builder's points are known only once it has been built)."""
        return tuple(spec for spec in self.layers if isinstance(spec, Point))

    def macs(self, input_shape: tuple[int, int, int] = (32, 32, 3), classes: int = 10) -> int:
        """Multiply-accumulates per image of the Conv/Dense layers (to start the most expensive
        cells first). A table is costed by arithmetic; a builder's model is built and measured."""
        if self.builder is not None:
            from regbench.plugins.building import measure_macs

            return measure_macs(self, input_shape, classes)
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
        """Refuse an input too small for the model, naming the layer that would collapse it
        (a builder is built on the shape; a table is checked without Keras)."""
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise RegbenchError(f"input shape must be height,width,channels; got {input_shape}")
        if self.builder is not None:
            from regbench.plugins.building import check_builds

            check_builds(self, input_shape)
            return
        shape: tuple[int, ...] = tuple(input_shape)
        for index, spec in enumerate(self.layers):
            shape = output_shape(spec, shape)
            if min(shape) < 1:
                raise RegbenchError(
                    f"{self.name} needs a larger input than "
                    f"{'x'.join(map(str, input_shape))}: layer {index} "
                    f"({type(spec).__name__}) would have no pixels left"
                )


def _compile_spec(ctx: Any, spec: LayerSpec, x: Any) -> Any:
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

    def layers_at(self, point: Point, params: Mapping[str, Any]) -> list:
        """Keras layers to insert at `point` (only called where `point.accepts(self.family)`)."""
        return []

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
        """The optimizer to train with: return `optimizer` unchanged or a modified copy."""
        return optimizer

    def callbacks(self, params: Mapping[str, Any]) -> list:
        """Keras callbacks to add to training."""
        return []

    def refuse(self, architecture: Architecture, params: Mapping[str, Any]) -> str | None:
        """A reason this regularizer cannot be paired with `architecture`, or None. (A pairing
        where it would change nothing is detected without this: see engine.applicability.)"""
        return None

    @property
    def uses_batches(self) -> bool:
        """Whether it overrides `batch`, so training switches to soft targets."""
        return overrides(self, "batch")

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Defaults overlaid with `overrides`, every value checked against its bounds."""
        return resolve_hparams(self.name, self.hparams, overrides)


def overrides(regularizer: Regularizer, hook: str) -> bool:
    """Whether `regularizer` replaces the base class's `hook`."""
    return getattr(type(regularizer), hook) is not getattr(Regularizer, hook)


# ---------------------------------------------------------------- composition

EXCLUSIVE_HOOKS = {  # two components may not both do these: which one would win is arbitrary
    "loss": "replace the loss",
    "batch": "rewrite training batches",
    "kernel_regularizer": "set the kernel regularizer",
}


class Composite(Regularizer):
    """Several regularizers at once (`dropout+batchnorm`): each acts on its own side of the
    seam. Hyperparameters are addressed per component, `dropout.rate`."""

    family = ANY

    def __init__(self, components: Sequence[Regularizer]) -> None:
        names = [c.name for c in components]
        if len(components) < 2 or len(set(names)) != len(names):
            raise RegbenchError(f"a combination needs distinct regularizers; got {'+'.join(names)}")
        for hook, what in EXCLUSIVE_HOOKS.items():
            both = [c.name for c in components if overrides(c, hook)]
            if len(both) > 1:
                raise RegbenchError(
                    f"cannot combine {' and '.join(both)}: both {what}; choose one of them"
                )
        self.components = tuple(components)
        self.name = "+".join(names)
        self.description = "Together: " + "; ".join(c.description for c in components)
        self.hparams = tuple(
            replace(h, name=f"{c.name}.{h.name}") for c in components for h in c.hparams
        )
        self.adds_params = any(c.adds_params for c in components)
        self.adds_losses = any(c.adds_losses for c in components)
        self.stochastic_inference = any(c.stochastic_inference for c in components)

    def own(self, component: Regularizer, params: Mapping[str, Any]) -> dict[str, Any]:
        prefix = f"{component.name}."
        return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}

    def layers_at(self, point: Point, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return [
            layer
            for c in self.components
            if point.accepts(c.family)
            for layer in invoke(c.layers_at, point, self.own(c, params), ctx=ctx)
        ]

    def kernel_regularizer(self, params: Mapping[str, Any], ctx: Any = None) -> Any:
        for c in self.components:
            found = invoke(c.kernel_regularizer, self.own(c, params), ctx=ctx)
            if found is not None:
                return found
        return None

    def input_layers(self, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return [
            layer
            for c in self.components
            for layer in invoke(c.input_layers, self.own(c, params), ctx=ctx)
        ]

    def batch(
        self, images: Any, targets: Any, params: Mapping[str, Any], seed: Any, ctx: Any
    ) -> tuple[Any, Any]:
        for c in self.components:
            if c.uses_batches:
                return c.batch(images, targets, self.own(c, params), seed, ctx)
        return images, targets

    @property
    def uses_batches(self) -> bool:
        return any(c.uses_batches for c in self.components)

    def loss(self, params: Mapping[str, Any], loss: Any, ctx: Any = None) -> Any:
        for c in self.components:
            loss = invoke(c.loss, self.own(c, params), loss, ctx=ctx)
        return loss

    def optimizer(
        self, params: Mapping[str, Any], optimizer: OptimizerSpec, ctx: Any = None
    ) -> OptimizerSpec:
        for c in self.components:
            optimizer = invoke(c.optimizer, self.own(c, params), optimizer, ctx=ctx)
        return optimizer

    def callbacks(self, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return [
            cb for c in self.components for cb in invoke(c.callbacks, self.own(c, params), ctx=ctx)
        ]

    def refuse(self, architecture: Architecture, params: Mapping[str, Any]) -> str | None:
        for c in self.components:
            reason = c.refuse(architecture, self.own(c, params))
            if reason:
                return reason
        return None

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Keys are `component.name`; a bare name is taken when exactly one component has it."""
        full: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if "." not in key:
                owners = [c.name for c in self.components if any(h.name == key for h in c.hparams)]
                if len(owners) == 1:
                    key = f"{owners[0]}.{key}"
            full[key] = value
        return resolve_hparams(self.name, self.hparams, full)
