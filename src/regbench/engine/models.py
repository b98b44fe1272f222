"""Turn an architecture's layer table plus a regularizer into a Keras model, and describe it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.plugins.keras import import_keras
from regbench.plugins.seam import (
    Architecture,
    Classifier,
    Conv,
    Dense,
    Flatten,
    MaxPool,
    Point,
    Regularizer,
)

DEFAULT_INPUT_SHAPE = (32, 32, 3)
DEFAULT_CLASSES = 10


def build_model(
    architecture: Architecture,
    regularizer: Regularizer,
    params: Mapping[str, Any] | None = None,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    seed: int | None = None,
) -> Any:
    """A Sequential model of `architecture` regularized by `regularizer` (params validated here)."""
    keras = import_keras()
    layers = keras.layers
    architecture.check_input(tuple(input_shape))
    if classes < 2:
        from regbench.errors import RegbenchError

        raise RegbenchError(f"a classifier needs at least 2 classes; got {classes}")
    values = regularizer.resolve(params)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    kernel_regularizer = regularizer.kernel_regularizer(values)

    stack: list = [keras.Input(shape=tuple(input_shape))]
    stack.extend(regularizer.input_layers(values))
    for spec in architecture.layers:
        if isinstance(spec, Point):
            if spec.accepts(regularizer.family):
                stack.extend(regularizer.layers_at(spec, values))
        elif isinstance(spec, Conv):
            stack.append(
                layers.Conv2D(
                    spec.filters,
                    spec.kernel,
                    strides=spec.strides,
                    padding=spec.padding,
                    activation=spec.activation,
                    kernel_regularizer=kernel_regularizer,
                )
            )
        elif isinstance(spec, MaxPool):
            stack.append(layers.MaxPooling2D(spec.size))
        elif isinstance(spec, Flatten):
            stack.append(layers.Flatten())
        elif isinstance(spec, Dense):
            stack.append(
                layers.Dense(
                    spec.units, activation=spec.activation, kernel_regularizer=kernel_regularizer
                )
            )
        elif isinstance(spec, Classifier):
            stack.append(
                layers.Dense(  # float32 probabilities even under a mixed-precision policy
                    classes,
                    activation="softmax",
                    kernel_regularizer=kernel_regularizer,
                    dtype="float32",
                )
            )
        else:  # a plugin may put ready-made Keras layers in its table
            stack.append(spec)
    return keras.Sequential(stack, name=f"{architecture.name}_{regularizer.name}")


def count_params(model: Any) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts of a built model."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    non_trainable = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return {
        "total_params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
    }


def describe_model(model: Any) -> dict[str, Any]:
    """The model summary as the lab printed it: per-layer name, type, shape, params; and totals."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape)
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": [None if d is None else int(d) for d in shape],
                "params": int(layer.count_params()),
            }
        )
    return {**count_params(model), "layers": rows}
