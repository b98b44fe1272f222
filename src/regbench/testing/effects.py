"""The regularizer kit's effect checks: a regularizer changes training where it claims to act
and leaves inference alone where it claims to.

Shape checks cannot tell a dropout that drops from one that does nothing: softmax rows look
the same either way. These compare behaviour instead: the model with the regularizer's layers
against the same model, same weights, with those layers bypassed; the kernels' penalty; the
batch before and after its rewrite; its loss, optimizer and callbacks against the trainer's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from regbench.api import NORM, Architecture, Composite, Regularizer, import_keras
from regbench.engine.models import DEFAULT_CLASSES, DEFAULT_INPUT_SHAPE, build
from regbench.plugins.context import invoke
from regbench.plugins.regularizer import overrides
from regbench.testing.probes import (
    InputShape,
    flat_layers,
    images,
    labels,
    predict,
    require,
    resolve_claims,
    run_context,
)
from regbench.testing.training import check_hooks, loss_targets, plain_loss

SAME: dict[str, Any] = {"rtol": 1e-5, "atol": 1e-6}  # outputs closer than this count as unchanged


@cache
def _switch_class() -> type:
    keras = import_keras()

    class Switch(keras.layers.Layer):  # type: ignore[name-defined]
        """A regularizer's layer that the kit can bypass without rebuilding the model, so the
        comparison keeps every weight and every other layer as it was."""

        def __init__(self, inner: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.inner = inner
            self.on = True

        def call(self, x: Any, training: Any = None) -> Any:
            if self.on:
                return self.inner(x, training=training)
            return x[0] + x[1] if isinstance(x, list | tuple) else x  # a merge: plain Add

    return Switch


@dataclass
class _Group:
    """The layers one regularizer put in one place (its input layers, or its points)."""

    owner: str
    where: str
    inert: bool  # claims to act in training only, so inference must not see it
    switches: list[Any] = field(default_factory=list)


def _switchable(regularizer: Regularizer, groups: dict[tuple[str, str], _Group]) -> Regularizer:
    """A copy of `regularizer` (of each component of a combination) whose input layers, layers
    at points and merges come wrapped in switches, filed into `groups`."""
    proxy = copy.copy(regularizer)
    if isinstance(regularizer, Composite):
        parts = tuple(_switchable(c, groups) for c in regularizer.components)
        object.__setattr__(proxy, "components", parts)
        return proxy
    switch = _switch_class()

    def switched(where: str, inert: bool, layers: Any) -> list[Any]:
        key = (regularizer.name, where)
        group = groups.setdefault(key, _Group(regularizer.name, where, inert))
        made = [switch(layer) for layer in layers]
        group.switches.extend(made)
        return made

    def layers_at(point: Any, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        made = invoke(regularizer.layers_at, point, params, ctx=ctx)
        return switched("layers at points", regularizer.family != NORM, made)

    def input_layers(params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return switched("input layers", True, invoke(regularizer.input_layers, params, ctx=ctx))

    def merge_at(point: Any, params: Mapping[str, Any], ctx: Any = None) -> Any:
        made = invoke(regularizer.merge_at, point, params, ctx=ctx)
        if made is None:
            return None
        return switched("merges", regularizer.family != NORM, [made])[0]

    object.__setattr__(proxy, "layers_at", layers_at)
    object.__setattr__(proxy, "input_layers", input_layers)
    object.__setattr__(proxy, "merge_at", merge_at)
    return proxy


def _check_layers(
    model: Any,
    groups: list[_Group],
    x: np.ndarray,
    label: str,
    stochastic_inference: bool,
    draws: Sequence[Callable[[], None]] = (lambda: None,),
) -> None:
    """Each group's layers, switched on alone, change the training output (in one of the
    `draws`: each sets a step's shared state as the engines do before a training forward
    pass), and leave the inference output as it is when they claim to act in training only.
    Inference comes first: a training call moves batch-norm statistics."""
    switches = [s for group in groups for s in group.switches]

    def output(group: _Group | None, training: bool) -> np.ndarray:
        active = {id(s) for s in group.switches} if group else set()
        for s in switches:
            s.on = id(s) in active
        try:
            return predict(model, x, training)
        finally:
            for s in switches:
                s.on = True

    if not stochastic_inference:
        plain = output(None, False)
        for group in (g for g in groups if g.inert):
            require(
                bool(np.allclose(output(group, False), plain, **SAME)),
                f"{label}: the {group.where} of {group.owner} change the inference "
                "(training=False) output; they must act in training only, or claim "
                "stochastic_inference",
            )
    for group in groups:
        changed = False
        for draw in draws:
            draw()
            if not np.allclose(output(group, True), output(None, True), **SAME):
                changed = True
                break
        require(
            changed,
            f"{label}: the {group.where} of {group.owner} change nothing in training: the output "
            "equals that of the same network without them",
        )


def _step_draws(
    regularizer: Regularizer, values: Mapping[str, Any], x: np.ndarray, classes: int, run: Any
) -> list[Callable[[], None]]:
    """Training steps as the engines begin them: a new step's state, then the batch hook (its
    draw may be shared with the regularizer's layers, as manifold mixup's is). One plain step
    for a regularizer without a batch hook."""
    if not regularizer.uses_batches:
        return [lambda: None]
    keras = import_keras()
    images_in = keras.ops.convert_to_tensor(x)
    onehot = keras.ops.convert_to_tensor(np.eye(classes, dtype=np.float32)[labels(len(x), classes)])
    seed = keras.random.SeedGenerator(0)

    def draw() -> None:
        run.state.new_step()
        regularizer.batch(images_in, onehot, values, seed, run)

    return [draw] * 8


def _check_penalty(model: Any, label: str) -> None:
    """The kernel regularizer adds a positive, finite penalty to the loss."""
    ops = import_keras().ops
    penalty = sum(
        float(ops.convert_to_numpy(layer.kernel_regularizer(layer.kernel)))
        for layer in flat_layers(model)
        if getattr(layer, "kernel_regularizer", None) is not None
        and getattr(layer, "kernel", None) is not None
    )
    require(
        np.isfinite(penalty) and penalty > 0,
        f"{label}: its kernel regularizer adds a penalty of {penalty:g} to the loss, not > 0",
    )


def _parts(regularizer: Regularizer, values: Mapping[str, Any]) -> list[tuple[Regularizer, Any]]:
    if isinstance(regularizer, Composite):
        return [(c, regularizer.own(c, values)) for c in regularizer.components]
    return [(regularizer, values)]


def _optimizer_config(optimizer: Any) -> dict[str, Any]:
    return {k: v for k, v in optimizer.get_config().items() if k != "name"}


def _check_batch(
    part: Regularizer, values: Mapping[str, Any], input_shape: InputShape, classes: int
) -> None:
    """The batch hook changes the images or the targets within three draws."""
    keras = import_keras()
    ops = keras.ops
    x = images(6, input_shape)
    onehot = np.eye(classes, dtype=np.float32)[labels(6, classes)]
    seed = keras.random.SeedGenerator(0)
    for _ in range(3):
        new_x, new_y = part.batch(
            ops.convert_to_tensor(x),
            ops.convert_to_tensor(onehot),
            values,
            seed,
            run_context(input_shape, classes),
        )
        same_x = np.allclose(ops.convert_to_numpy(new_x), x, **SAME)
        if not (same_x and np.allclose(ops.convert_to_numpy(new_y), onehot, **SAME)):
            return
    raise AssertionError(f"{part.name}: its batch hook returned the batch unchanged 3 times")


def _check_hooks(
    part: Regularizer, values: Mapping[str, Any], input_shape: InputShape, classes: int
) -> None:
    """Each hook the part overrides beyond its layers changes what the trainer uses."""
    keras = import_keras()
    name = part.name
    loss, optimizer, callbacks = check_hooks(part, values, input_shape, classes)
    if overrides(part, "loss"):
        y = labels(4, classes)
        logits = np.random.default_rng(0).normal(size=(4, classes))
        p = (np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)).astype(np.float32)
        plain, targets = plain_loss(part), loss_targets(part, y, classes)
        ours, theirs = (
            float(np.mean(keras.ops.convert_to_numpy(f(targets, p)))) for f in (loss, plain)
        )
        require(
            not np.isclose(ours, theirs, **SAME),
            f"{name}: its loss equals the plain crossentropy ({ours:g}); it changes nothing",
        )
    if overrides(part, "optimizer"):
        plain = keras.optimizers.get({"class_name": "sgd", "config": {}})
        require(
            _optimizer_config(optimizer) != _optimizer_config(plain),
            f"{name}: its optimizer hook leaves the optimizer's configuration as it was",
        )
    if overrides(part, "callbacks"):
        require(bool(callbacks), f"{name}: its callbacks hook adds no callback")
    if part.uses_batches:
        _check_batch(part, values, input_shape, classes)


def check_effects(
    regularizer: Regularizer,
    architecture: Architecture,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    claims: Mapping[str, bool] | None = None,
) -> None:
    """Training with the regularizer differs from training without it wherever it claims to
    act, and inference does not where it claims not to. Its layers (input layers, layers at
    the points of `architecture`, merges) change the training output of the same network, same
    weights, with them bypassed; unless it claims `stochastic_inference`, they leave the
    inference output unchanged (layers of the `norm` family excepted: they act at inference
    by design). A kernel regularizer adds a positive penalty; a batch hook changes the batch;
    a loss differs from the plain crossentropy; an optimizer hook changes the optimizer's
    configuration; a callbacks hook adds a callback. Components of a combination are held
    to this one by one. A regularizer acting at none of the architecture's points passes."""
    claimed = resolve_claims(regularizer, claims)
    label = f"{regularizer.name} on {architecture.name}"
    values = regularizer.resolve(params)
    groups: dict[tuple[str, str], _Group] = {}
    proxy = _switchable(regularizer, groups)
    run = run_context(input_shape, classes)
    model = build(architecture, proxy, values, input_shape, classes, seed=0, run=run).model
    acting = [group for group in groups.values() if group.switches]
    x = images(8, input_shape)
    draws = _step_draws(regularizer, values, x, classes, run)
    _check_layers(model, acting, x, label, claimed["stochastic_inference"], draws)
    if invoke(regularizer.kernel_regularizer, values, ctx=run) is not None:
        _check_penalty(model, label)
    for part, own in _parts(regularizer, values):
        inputs = groups.get((part.name, "input layers"))
        require(
            not overrides(part, "input_layers") or bool(inputs and inputs.switches),
            f"{part.name}: its input_layers hook gives no layer",
        )
        _check_hooks(part, own, input_shape, classes)
