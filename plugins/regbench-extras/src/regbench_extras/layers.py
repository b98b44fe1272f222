"""The extras' own Keras layers. Imported only when a model needs one, or when regbench asks
the plugin to register its Keras objects (before any build or load_model): this imports Keras.

Everything is keras.ops / keras.random with a per-layer seed generator, so the layers run on
every backend and compile with XLA. None of them has trainable weights (DropBlock's step count,
when it ramps, and spectral normalization's singular vector are state the model carries).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from regbench.api import import_keras

keras = import_keras()
ops = keras.ops

NEWTON_STEPS = 6  # for DropBlock's gamma: its dropped share then within 3e-12 of the rate for
# rates up to 0.5 (2e-13 at 0.7, 5e-6 at 0.9) on any map, so float32 rounding is all that is left


def _coverage(size: int, block: int) -> np.ndarray:
    """For each position along an axis of `size`, how many of the seed positions (those where
    a whole `block` fits) start a block that covers it."""
    seeds = size - block + 1
    position = np.arange(size)
    return np.minimum(position, seeds - 1) - np.maximum(0, position - block + 1) + 1


def drop_gamma(rate: Any, height: int, width: int, block_h: int, block_w: int) -> Any:
    """The seed probability at which DropBlock drops `rate` of a height x width map in
    expectation. A unit that n seed positions cover is kept with probability (1 - gamma)**n,
    so gamma solves mean((1 - gamma)**n) = 1 - rate: by Newton's method from 0, which rises
    to the root without overshooting (the mean is convex in gamma). Its first step is the
    paper's gamma, which ignores that blocks overlap: at a rate of 0.5 it drops 0.35 at worst
    (an 18 x 18 map, blocks of 9)."""
    counts = np.outer(_coverage(height, block_h), _coverage(width, block_w)).ravel()
    n, units = np.unique(counts, return_counts=True)
    n = ops.convert_to_tensor(n.astype("float32"))
    share = ops.convert_to_tensor((units / counts.size).astype("float32"))
    gamma = ops.zeros(())
    for _ in range(NEWTON_STEPS):
        kept = share * ops.exp(n * ops.log1p(-gamma))  # (1 - gamma)**n, weighted
        excess = ops.sum(kept) - (1.0 - rate)  # the kept share above its target
        gamma = gamma + excess * (1.0 - gamma) / ops.sum(n * kept)
    return ops.clip(gamma, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="regbench_extras")
class Cutout(keras.layers.Layer):
    """Zeroes one random square per image in training (DeVries & Taylor 2017). `size` is the
    side as a fraction of the image's shorter side; the square may cross the border."""

    def __init__(self, size: float = 0.5, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size, self.seed = float(size), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool = False) -> Any:
        if not training or self.size <= 0:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        half = self.size * min(height, width) / 2.0
        centre_y = keras.random.uniform((batch, 1), 0, height, seed=self.seed_generator)
        centre_x = keras.random.uniform((batch, 1), 0, width, seed=self.seed_generator)
        rows = ops.cast(ops.arange(height), "float32")[None, :] + 0.5
        cols = ops.cast(ops.arange(width), "float32")[None, :] + 0.5
        in_rows = ops.abs(rows - centre_y) < half  # (batch, height)
        in_cols = ops.abs(cols - centre_x) < half  # (batch, width)
        hole = ops.logical_and(in_rows[:, :, None], in_cols[:, None, :])[..., None]
        return ops.where(hole, ops.zeros_like(images), images)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "seed": self.seed}


@keras.saving.register_keras_serializable(package="regbench_extras")
class DropBlock(keras.layers.Layer):
    """Drops contiguous `block_size` squares of each feature map, channel by channel, in
    training (Ghiasi et al. 2018): block seeds fall only where a whole block fits, at the
    rate gamma that drops `rate` of the units in expectation, overlapping blocks counted
    (`drop_gamma`), and what is kept is rescaled by the fraction actually kept.

    Given a run's `progress` (a layer of its own: `ctx.progress.fresh()`), the rate ramps
    linearly from 0 to `rate` over the run, as the paper recommends; without one it is `rate`
    from the start. The progress is no part of the config: a reloaded model predicts the same
    (DropBlock is the identity at inference) and trains at the full rate.
    """

    def __init__(
        self,
        rate: float = 0.1,
        block_size: int = 3,
        seed: int | None = None,
        progress: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rate, self.block_size, self.seed = float(rate), int(block_size), seed
        self.progress = progress  # tracked: the model carries (and advances) its step count
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training or self.rate <= 0:
            return x
        height, width = x.shape[1], x.shape[2]
        block = max(1, self.block_size)
        block_h, block_w = min(block, height), min(block, width)  # clipped to the map
        rows, cols = height - block_h + 1, width - block_w + 1  # where a whole block fits
        rate = self.rate if self.progress is None else self.rate * self.progress.value()
        gamma = drop_gamma(rate, height, width, block_h, block_w)
        shape = (ops.shape(x)[0], rows, cols, x.shape[3])
        seeds = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) < gamma, "float32")
        # each seed is a block's top-left corner: pad, then a block-sized max pool (one axis
        # at a time: the same maximum, in block_h + block_w steps rather than their product)
        padded = ops.pad(seeds, [[0, 0], [block_h - 1] * 2, [block_w - 1] * 2, [0, 0]])
        spread = ops.max_pool(padded, (block_h, 1), strides=1, padding="valid")
        keep = 1.0 - ops.max_pool(spread, (1, block_w), strides=1, padding="valid")
        scale = ops.cast(ops.size(keep), "float32") / ops.maximum(ops.sum(keep), 1.0)
        return x * ops.cast(keep * scale, x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rate": self.rate,
            "block_size": self.block_size,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="regbench_extras")
class DropPath(keras.layers.Layer):
    """Stochastic depth (Huang et al. 2016): in training, drops a residual branch for whole
    samples with probability `rate` and rescales the branch when kept."""

    def __init__(self, rate: float = 0.1, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator)
        return x * ops.cast(draw < keep, x.dtype) / keep

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _unit(x: Any) -> Any:
    """`x` scaled to unit length (a zero `x` stays zero)."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x)), 1e-12))


@keras.saving.register_keras_serializable(package="regbench_extras")
class SpectralNormalized(keras.layers.SpectralNormalization):
    """Keras's SpectralNormalization (Miyato et al. 2018) computed alike on every backend: the
    wrapped Dense or Conv layer runs with its kernel divided by its largest singular value,
    estimated by power iteration from the stored vector u, in training and in inference; only
    training updates u. The kernel variable stays the raw, trained one.

    Keras's own layer assigns the normalized kernel to the kernel variable as it trains:
    TensorFlow then trains and infers with that, while JAX's stateless training drops the
    assignment, so its model infers with the raw kernel: two different models on two backends.
    """

    def build(self, input_shape: Any) -> None:
        wraps = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)
        if not isinstance(self.layer, wraps):
            raise ValueError(
                f"SpectralNormalized wraps Dense and Conv layers; got {type(self.layer).__name__}"
            )
        super().build(input_shape)

    def call(self, inputs: Any, training: bool = False) -> Any:
        kernel, vector_u = self.normalized()
        if training:
            self.vector_u.assign(vector_u)
        layer = self.layer
        if isinstance(layer, keras.layers.Dense):
            outputs = ops.matmul(inputs, ops.cast(kernel, inputs.dtype))
            bias_shape: tuple[int, ...] = (layer.units,)
        else:
            outputs = layer.convolution_op(inputs, ops.cast(kernel, inputs.dtype))
            last = layer.data_format == "channels_last"
            ones = (1,) * (layer.rank + 1)
            bias_shape = ones + (layer.filters,) if last else (1, layer.filters) + ones[1:]
        if layer.bias is not None:
            outputs = ops.add(outputs, ops.reshape(ops.cast(layer.bias, outputs.dtype), bias_shape))
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def normalized(self) -> tuple[Any, Any]:
        """The kernel divided by its spectral norm, and the power iteration's new u."""
        weights = ops.reshape(self.kernel, (-1, self.kernel_shape[-1]))
        vector_u = self.vector_u
        for _ in range(self.power_iterations):
            vector_v = _unit(ops.matmul(vector_u, ops.transpose(weights)))
            vector_u = _unit(ops.matmul(vector_v, weights))
        vector_u, vector_v = ops.stop_gradient(vector_u), ops.stop_gradient(vector_v)
        sigma = ops.matmul(ops.matmul(vector_v, weights), ops.transpose(vector_u))  # >= 0
        return self.kernel / ops.maximum(sigma[0, 0], 1e-12), vector_u
