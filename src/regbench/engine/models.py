"""Turn an architecture plus a regularizer into a Keras model, and describe it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from regbench.design.applicability import DEFAULT_CLASSES, DEFAULT_INPUT_SHAPE
from regbench.errors import RegbenchError
from regbench.plugins.architecture import Architecture
from regbench.plugins.building import (
    Built,
    build_network,
    check_input,
    count_regularized_kernels,
)
from regbench.plugins.context import RunContext
from regbench.plugins.manager import keras_with_plugins
from regbench.plugins.regularizer import Regularizer

__all__ = [
    "DEFAULT_CLASSES",
    "DEFAULT_INPUT_SHAPE",
    "build",
    "build_model",
    "count_params",
    "count_regularized_kernels",
    "describe_model",
]


def build(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any] | None = None,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    seed: int | None = None,
    *,
    run: RunContext | None = None,
    arch_params: Mapping[str, Any] | None = None,
) -> Built:
    """The model and what was inserted where (params validated here)."""
    keras = keras_with_plugins()
    check_input(architecture, input_shape)
    if classes < 2:
        raise RegbenchError(f"a classifier needs at least 2 classes; got {classes}")
    values = regularizer.resolve(params)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return build_network(
        architecture,
        regularizer,
        values,
        input_shape,
        classes,
        arch_params=arch_params,
        run=run,
    )


def build_model(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any] | None = None,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    seed: int | None = None,
    *,
    run: RunContext | None = None,
) -> Any:
    """A Keras model of `architecture` regularized by `regularizer` (params validated here)."""
    return build(architecture, regularizer, params, input_shape, classes, seed, run=run).model


def count_params(model: Any) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts of a built model."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return {
        "total_params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
    }


def describe_model(model: Any) -> dict[str, Any]:
    """The model summary as the lab printed it: per-layer name, type, shape, params; and totals."""
    rows = []
    for layer in model.layers:
        output = layer.output
        shape = tuple((output[0] if isinstance(output, list | tuple) else output).shape)
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": [None if d is None else int(d) for d in shape],
                "params": int(layer.count_params()),
            }
        )
    return {
        **count_params(model),
        "regularized_kernels": count_regularized_kernels(model),
        "layers": rows,
    }
