"""Feeding the model: Keras's in-memory arrays, or a tf.data pipeline that shuffles, batches and
prefetches in the background. `auto` is arrays on every backend: on 2 CPU cores a whole
`regbench run` of model3+batchnorm on the lab's CIFAR split took 0.97x the wall time with arrays
than with tf.data, and 340 MiB less memory (tf.data's shuffle buffer holds a copy of the
training set); benchmarks/RESULTS.md 1e. tf.data stays available on TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np


def resolve(pipeline: str, backend: str) -> str:
    """The pipeline a run really uses ('auto' is arrays; tf.data needs TensorFlow)."""
    return "tf.data" if pipeline == "tf.data" and backend == "tensorflow" else "arrays"


def fit_inputs(
    pipeline: str, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int
) -> dict[str, Any]:
    """Keyword arguments for `model.fit`'s data: shuffled every epoch, reproducible by seed."""
    if pipeline != "tf.data":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # shuffled above: fit's own shuffle flag only applies to arrays (and warns otherwise)
    return {"x": data.batch(batch_size).prefetch(tf.data.AUTOTUNE), "shuffle": False}


def eval_data(pipeline: str, x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
    """Validation data in the form `model.fit(validation_data=...)` takes."""
    if pipeline != "tf.data":
        return (x, y)
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
