"""Random draws that compile everywhere: keras.random only, and no Gamma sampler.

Keras's `keras.random.beta`/`gamma` lower to StatelessRandomGammaV3 on TensorFlow, which XLA
cannot compile on CPU; Mixup and CutMix need Beta draws inside the compiled training step.
"""

from __future__ import annotations

from typing import Any

from regbench.plugins.keras import import_keras


def beta(shape: tuple[int, ...], a: float, b: float, seed: Any, tries: int = 64) -> Any:
    """Beta(a, b) draws by Johnk's method, vectorised: `tries` candidate pairs per draw, the
    first accepted one kept (in log space, so small `a`, `b` do not underflow). `seed` is an
    int, a SeedGenerator or (JAX) a seed tensor, as keras.random takes it.

    Acceptance is at least 1/2 for a, b <= 1 and 1/6 at a = b = 2; a draw with no accepted
    candidate (probability (5/6)**64 < 1e-5 at a = b = 2) returns the mean a / (a + b).
    """
    keras = import_keras()
    ops = keras.ops
    # one draw for both uniforms: two calls with an int or tensor seed would draw the same
    # numbers twice (only a SeedGenerator advances between calls)
    uv = keras.random.uniform((*shape, tries, 2), minval=1e-12, maxval=1.0, seed=seed)
    log_x, log_y = ops.log(uv[..., 0]) / a, ops.log(uv[..., 1]) / b
    log_sum = ops.logaddexp(log_x, log_y)
    accepted = log_sum <= 0.0
    first = ops.argmax(ops.cast(accepted, "int32"), axis=-1)
    draws = ops.exp(log_x - log_sum)
    picked = ops.take_along_axis(draws, ops.expand_dims(first, -1), axis=-1)[..., 0]
    return ops.where(ops.any(accepted, axis=-1), picked, a / (a + b))
