"""The architecture kit: `check_architecture`."""

from __future__ import annotations

from collections.abc import Sequence

from regbench.api import Architecture
from regbench.engine.models import (
    DEFAULT_CLASSES,
    DEFAULT_INPUT_SHAPE,
    build,
    build_model,
    count_regularized_kernels,
)
from regbench.testing.backend_neutral import check_backend_neutral
from regbench.testing.probes import (
    Baseline,
    InputShape,
    check_rows,
    flat_layers,
    images,
    kernels,
    predict,
    require,
)
from regbench.testing.training import check_training_contract


def check_architecture(
    architecture: Architecture,
    *,
    input_shapes: Sequence[InputShape] = (DEFAULT_INPUT_SHAPE, (16, 16, 1)),
    classes: int = DEFAULT_CLASSES,
    fresh_process: bool = True,
    xla: bool = True,
) -> None:
    """An architecture that passes has a name and description; builds probability rows on
    each of `input_shapes`; makes fresh layers at every build (two builds share no layer);
    puts the run's kernel regularizer on every Conv2D/Dense kernel; names its points uniquely
    with kind "maps" or "vector"; trains (compiled with XLA unless `xla` is False) and
    reloads in a fresh process; and its package imports no backend directly."""
    from regbench.builtins.regularizers import L2

    label = architecture.name or type(architecture).__name__
    require(bool(architecture.name), f"{label}: no name")
    require(bool(architecture.description), f"{label}: no description for the list")
    check_backend_neutral(architecture)
    for shape in input_shapes:
        first = build(architecture, Baseline(), {}, shape, classes, seed=0)
        second = build(architecture, Baseline(), {}, shape, classes, seed=0)
        check_rows(predict(first.model, images(2, shape), False), 2, classes, f"{label} at {shape}")
        shared = {id(layer) for layer in flat_layers(first.model)} & {
            id(layer) for layer in flat_layers(second.model)
        }
        require(not shared, f"{label}: two builds share {len(shared)} layer(s); make them fresh")
        names = [point.name for point in first.points]
        require(len(set(names)) == len(names), f"{label}: point names repeat: {names}")
        for point in first.points:
            require(
                point.kind in ("maps", "vector"),
                f"{label}: point {point.name} has kind {point.kind!r}",
            )
        penalised = build_model(architecture, L2(), {}, shape, classes, seed=0)
        expected, covered = kernels(penalised), count_regularized_kernels(penalised)
        require(
            expected > 0 and covered == expected,
            f"{label}: {covered} of {expected} "
            "kernels carry the run's kernel regularizer; make them with ctx.conv/ctx.dense",
        )
    check_training_contract(
        Baseline(),
        architecture,
        input_shape=input_shapes[0],
        classes=classes,
        fresh_process=fresh_process,
        xla=xla,
    )
