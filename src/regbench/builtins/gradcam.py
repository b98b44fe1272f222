"""Grad-CAM's maths: which layer to explain, the gradient of a class score with respect to
its feature maps on whichever backend Keras runs, and the heat map those give.

Keras has no backend-neutral gradient, so this is the one built-in module that asks the
backend (TensorFlow, JAX or torch) directly, each imported only when it is the one running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from regbench.builtins.drawing import to_numpy
from regbench.errors import RegbenchError
from regbench.plugins.keras import import_keras
from regbench.plugins.visualizers import check_image, layer_outputs


def _value_and_gradient(function: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """d function(x) / dx for a scalar function, on whichever backend Keras runs."""
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        return value, tape.gradient(value, x)
    if backend == "jax":
        import jax

        return jax.value_and_grad(function)(x)
    if backend == "torch":
        import torch

        x = x.detach().clone().requires_grad_(True)
        value = function(x)
        (gradient,) = torch.autograd.grad(value, x)
        return value.detach(), gradient
    raise RegbenchError(f"gradcam needs gradients, which the {backend!r} Keras backend lacks")


MERGES = {"Add", "Concatenate", "Multiply", "Average", "Maximum", "Minimum", "Subtract"}


def _target_layer(model: Any, outputs: Sequence[tuple[Any, Any]]) -> int:
    """Index of the last Conv2D layer, else of the last layer with a feature-map output."""
    keras = import_keras()
    # after the last merge (a residual Add, a Concatenate) the layers form a chain that the
    # score can be replayed through; a merge itself has a feature-map output too
    merges = [i for i, layer in enumerate(model.layers) if type(layer).__name__ in MERGES]
    start = merges[-1] if merges else -1
    convs = [
        i
        for i, layer in enumerate(model.layers)
        if isinstance(layer, keras.layers.Conv2D) and i > start
    ]
    if convs:
        return convs[-1]
    maps = [i for i, (_, output) in enumerate(outputs) if len(output.shape) == 4 and i >= start]
    if maps:
        return maps[-1]
    raise RegbenchError(f"gradcam needs a layer with feature-map output; {model.name} has none")


def gradcam(model: Any, image: np.ndarray, class_index: int | None = None) -> dict[str, Any]:
    """Grad-CAM for one image: which places of the last conv layer's maps raise a class score.

    The score is the class's logit (the pre-softmax value when the model ends in a softmax
    Dense layer, the log-probability when it ends in another probability output), so a
    saturated softmax does not flatten the gradients. Returns `heatmap` (HxW in [0, 1] at the
    image size), `coarse` (the map at the layer's resolution, unnormalised), `probs`,
    `predicted`, `target` and `layer` (its name).
    """
    keras = import_keras()
    ops = keras.ops
    image = check_image(image, model)
    outputs = layer_outputs(model, image)
    final = to_numpy(outputs[-1][1])
    if final.ndim != 2:
        raise RegbenchError(f"gradcam needs a classifier; {model.name} outputs {final.shape}")
    scores = final[0]
    is_probs = bool(np.all(scores >= 0) and abs(float(scores.sum()) - 1.0) < 1e-3)
    probs = scores if is_probs else _softmax(scores)
    predicted = int(np.argmax(probs))
    target = predicted if class_index is None else int(class_index)
    if not 0 <= target < probs.size:
        raise RegbenchError(
            f"label {class_index} is out of range: the model has {probs.size} classes"
        )

    index = _target_layer(model, outputs)
    layer, features = outputs[index]
    tail = model.layers[index + 1 :]
    last = tail[-1] if tail else None
    softmax_dense = (
        isinstance(last, keras.layers.Dense)
        and getattr(last.activation, "__name__", "") == "softmax"
    )

    def score(x):
        for later in tail[:-1] if softmax_dense else tail:
            x = later(x, training=False)
        if softmax_dense:
            x = ops.matmul(x, last.kernel)
            if last.use_bias:
                x = x + last.bias
            return x[0, target]
        if is_probs:
            return ops.log(x[0, target] + 1e-12)
        return x[0, target]

    _, gradient = _value_and_gradient(score, features)
    weights = ops.mean(gradient, axis=(1, 2))  # one weight per channel: (1, C)
    coarse = ops.relu(ops.sum(features * weights[:, None, None, :], axis=-1))[0]
    height, width = image.shape[:2]
    fine = ops.image.resize(coarse[None, :, :, None], (height, width), interpolation="bilinear")
    coarse_np, fine_np = to_numpy(coarse), np.maximum(to_numpy(fine)[0, :, :, 0], 0.0)
    peak = float(fine_np.max())
    heatmap = fine_np / peak if peak > 0 else np.zeros_like(fine_np)
    return {
        "heatmap": heatmap,
        "coarse": coarse_np,
        "probs": probs,
        "predicted": predicted,
        "target": target,
        "layer": layer.name,
    }


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()
