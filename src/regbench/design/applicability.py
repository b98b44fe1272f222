"""Whether a regularizer can be, and is worth, training on an architecture.

A cell is skipped (not trained, not ranked) when either side refuses the pairing, or when the
regularizer would change nothing: it inserts no layer at the architecture's points, wraps none
of its layers and has no kernel regularizer, input layers, batch rewrite, loss, optimizer or
callbacks of its own, so the run would be a copy of `none` with a rank of its own. A
combination is skipped when one of its parts changes nothing (it would be a copy of the
others).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.plugins.architecture import Architecture
from regbench.plugins.composition import Composite
from regbench.plugins.context import RunContext
from regbench.plugins.regularizer import Regularizer, overrides

DEFAULT_INPUT_SHAPE = (32, 32, 3)  # a cell is checked, and a model built, at CIFAR's shape
DEFAULT_CLASSES = 10  # unless its dataset says otherwise

_CACHE: dict[tuple[str, str, str, tuple[int, int, int], int], str | None] = {}


def why_not(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any],
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> str | None:
    """The reason `regularizer` with `params` is not run on `architecture`, or None."""
    reason = architecture.refuse(regularizer, params) or regularizer.refuse(architecture, params)
    if reason:
        return reason
    if regularizer.baseline:
        return None
    key = (architecture.name, regularizer.name, repr(sorted(params.items())), input_shape, classes)
    if key not in _CACHE:
        _CACHE[key] = _inert(architecture, regularizer, params, input_shape, classes)
    return _CACHE[key]


def _inert(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any],
    input_shape: tuple[int, int, int],
    classes: int,
) -> str | None:
    parts = regularizer.components if isinstance(regularizer, Composite) else (regularizer,)
    for part in parts:
        own = regularizer.own(part, params) if isinstance(regularizer, Composite) else params
        inert = not changes_something(architecture, part, own, input_shape, classes)
        if inert and not part.baseline:
            where = f" (part of {regularizer.name})" if part is not regularizer else ""
            return (
                f"{part.name}{where} changes nothing on {architecture.name}: no layer at its "
                "points or wrapped, no kernel, loss, optimizer, input, batch, callback, step or "
                "weights change"
            )
    return None


GLOBAL_HOOKS = (
    "kernel_regularizer",
    "input_layers",
    "batch",
    "loss",
    "optimizer",
    "callbacks",
    "train_step",
    "average",
)


def changes_something(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any],
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> bool:
    """Whether training with `regularizer` differs from training without it: it acts beyond
    the points (overrides a hook other than `layers_at`, `merge_at` and `wrap_layer`), or the
    model built with it has a layer at one of its points or merges, or a layer it wrapped. Only
    the second needs a build (and Keras)."""
    if any(overrides(regularizer, hook) for hook in GLOBAL_HOOKS):
        return True
    if not any(overrides(regularizer, hook) for hook in ("layers_at", "merge_at", "wrap_layer")):
        return False
    from regbench.plugins.building import build_network

    run = RunContext(classes=classes, input_shape=input_shape)
    values = regularizer.resolve(params)
    built = build_network(architecture, regularizer, values, input_shape, classes, run=run)
    return built.wrapped > 0 or any(item.layers for item in built.inserted)
