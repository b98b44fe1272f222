"""Random draws that compile everywhere: keras.random only, and no Gamma sampler.

Keras's `keras.random.beta`/`gamma` lower to StatelessRandomGammaV3 on TensorFlow, which XLA
cannot compile on CPU; Mixup and CutMix need Beta draws inside the compiled training step.
"""

from __future__ import annotations

import math
from typing import Any

from regbench.errors import PluginError
from regbench.plugins.keras import import_keras

SHAPES = (1e-3, 1e4)  # the Beta shapes `beta` takes; float32 keeps it exact within them
TRIES = 8  # Marsaglia-Tsang candidates per Gamma variate: all rejected with p < 3e-11


def _checked(name: str, value: float) -> float:
    low, high = SHAPES
    shape = float(value)
    if not low <= shape <= high:  # also refuses NaN
        raise PluginError(
            f"random_beta: {name}={shape:g} is outside [{low:g}, {high:g}], the shapes it "
            "draws exactly; bound the hyperparameter that sets it to that range"
        )
    return shape


def _log_gamma(shape: float, normal: Any, accept: Any, boost: Any) -> Any:
    """log Gamma(shape): Marsaglia and Tsang's (2000) method for Gamma(shape + 1), the first
    accepted of the candidates on the last axis (a draw with none takes the mode-like d),
    times U**(1/shape), which makes it Gamma(shape) for any shape > 0 (their boost)."""
    ops = import_keras().ops
    d = shape + 1.0 - 1.0 / 3.0
    w = normal / math.sqrt(9.0 * d)  # v = (1 + w)**3
    log_v = 3.0 * ops.log1p(ops.maximum(w, -0.999999))  # w <= -1 is rejected: kept finite
    # log(accept) < z**2/2 + d - d v + d log v, as d (log v - (v - 1)): no large terms cancel
    bound = 0.5 * ops.square(normal) + d * (log_v - w * (3.0 + w * (3.0 + w)))
    accepted = ops.logical_and(w > -1.0, ops.log(accept) < bound)
    first = ops.argmax(ops.cast(accepted, "int32"), axis=-1)
    picked = ops.take_along_axis(log_v, ops.expand_dims(first, -1), axis=-1)[..., 0]
    log_v = ops.where(ops.any(accepted, axis=-1), picked, 0.0)
    return math.log(d) + log_v + ops.log(boost) / shape


def beta(shape: tuple[int, ...], a: float, b: float, seed: Any, tries: int = TRIES) -> Any:
    """Beta(a, b) draws as Ga / (Ga + Gb) of two Gamma variates, for any a and b in `SHAPES`
    (PluginError outside): exact up to float32 rounding. `seed` is an int, a SeedGenerator or
    (JAX) a seed tensor, as keras.random takes it.

    Each Gamma variate takes the first accepted of `tries` Marsaglia-Tsang candidates, its
    normals by Box-Muller. A candidate is rejected with probability 0.048 at most (shapes near
    0; 0.018 at 1, 0.005 at 5), so a variate with none accepted (it takes a fixed value) comes
    with probability under 0.048**tries: 3e-11 at the default 8. The ratio is a logistic of
    the log-Gammas, so tiny shapes neither underflow to 0 / 0 nor lose the draws near 0 and 1.
    """
    a, b = _checked("a", a), _checked("b", b)
    keras = import_keras()
    ops = keras.ops
    # one draw for every uniform: two calls with an int or tensor seed would draw the same
    # numbers twice (only a SeedGenerator advances between calls)
    u = keras.random.uniform((*shape, tries + 1, 4), minval=1e-12, maxval=1.0, seed=seed)
    radius = ops.sqrt(-2.0 * ops.log(u[..., :tries, 0]))
    angle = (2.0 * math.pi) * u[..., :tries, 1]
    log_ga = _log_gamma(a, radius * ops.cos(angle), u[..., :tries, 2], u[..., tries, 0])
    log_gb = _log_gamma(b, radius * ops.sin(angle), u[..., :tries, 3], u[..., tries, 1])
    return ops.sigmoid(log_ga - log_gb)
