"""The kit's ramp check: a regularizer that declares a ramp (its layers read the run's
training progress) behaves differently at the start of training than at the end.

A ramp that is wired wrongly fails silently: a layer that keeps no progress, or reads it and
ignores it, trains at one rate throughout and every shape check passes. This compares the
training-mode output of one model, same weights and same random state, with its progress set
to 0 and then to 1, so the only thing that differs between the two calls is the progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from regbench.api import Architecture, Regularizer
from regbench.engine.context import run_context, training_progress
from regbench.engine.models import DEFAULT_CLASSES, DEFAULT_INPUT_SHAPE, build
from regbench.testing.effects import SAME
from regbench.testing.probes import InputShape, images, predict, require

STEPS = 10  # the run's length in steps: the count a progress of 1 is set to


def progress_layers(model: Any) -> list[Any]:
    """The training-progress layers a built model keeps (one per layer that ramps)."""
    kind = type(training_progress(1))
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, kind)]


def _output_at(model: Any, state: list[np.ndarray], fraction: float, x: np.ndarray) -> np.ndarray:
    """The training-mode output with every variable as in `state` and every progress at
    `fraction` of the run."""
    for variable, value in zip(model.variables, state, strict=True):
        variable.assign(value)
    for progress in progress_layers(model):
        progress.steps.assign(fraction * progress.total_steps)
    return predict(model, x, training=True)


def check_ramp(
    regularizer: Regularizer,
    architecture: Architecture,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> None:
    """The regularizer's layers on `architecture` keep a training progress
    (`ctx.progress.fresh()`), and the training-mode output at progress 0 differs from the one
    at progress 1, weights and random state alike: the ramp reaches the layers' behaviour."""
    label = f"{regularizer.name} on {architecture.name}"
    run = run_context(
        epochs=1,
        batch_size=1,
        train_size=STEPS,
        classes=classes,
        input_shape=input_shape,
        learning_rate=None,
        stage="grid",
        seed=0,
    )
    model = build(architecture, regularizer, params, input_shape, classes, seed=0, run=run).model
    require(
        bool(progress_layers(model)),
        f"{label}: no layer keeps the run's progress; a layer that ramps keeps its own, "
        "`self.progress = ctx.progress.fresh()`, and reads `self.progress.value()` in training",
    )
    x = images(8, input_shape)
    state = [np.array(variable.numpy()) for variable in model.variables]
    start, end = (_output_at(model, state, fraction, x) for fraction in (0.0, 1.0))
    for variable, value in zip(model.variables, state, strict=True):
        variable.assign(value)
    require(
        not np.allclose(start, end, **SAME),
        f"{label}: the training output at progress 0 equals the one at progress 1; its layers "
        "keep a progress but their behaviour does not follow it",
    )
