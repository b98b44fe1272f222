"""The Beta sampler draws Beta(a, b), judged by Kolmogorov-Smirnov over 100k draws, for every
shape in its range and whatever the seed's form: an int, a SeedGenerator, or (on JAX) a seed
tensor. Before, an int seed drew the same numbers twice (Beta(1, 1) always gave 0.5), and
Johnk's method fell back to the mean for most draws once a + b > 4 (Beta(5, 5): 0.5 in 77%)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from regbench.errors import PluginError
from regbench.plugins.keras import import_keras
from regbench.plugins.randomness import SHAPES as RANGE
from regbench.plugins.randomness import beta

keras = import_keras()

DRAWS = 100_000
# the range's corners, Mixup's bounds (0.05, 2), and the shapes Johnk's method got wrong
SHAPES = [
    (1e-3, 1e-3),
    (0.05, 0.05),
    (0.2, 0.2),
    (0.5, 2.0),
    (1.0, 1.0),
    (2.0, 2.0),
    (5.0, 5.0),
    (2.0, 8.0),
    (30.0, 0.3),
    (1e4, 1e4),
    (1e4, 1e-3),
]
P_MIN = 1e-6  # each KS check fails by chance with this probability
EDGE = 1e-4  # draws this close to 0 or 1 are compared as a mass there (see ks_pvalue)


def ks_pvalue(draws: np.ndarray, a: float, b: float) -> float:
    """Kolmogorov-Smirnov p-value of `draws` against Beta(a, b), both clipped to [EDGE,
    1 - EDGE]: float32 rounds 22% of Beta(0.05, 0.05) draws to exactly 1.0, which scipy's
    kstest (for continuous data) reads as a gap of 0.22. Clipped, each end is a point mass,
    and the statistic compares the empirical and true distribution functions on both sides
    of every distinct draw."""
    x = np.clip(draws.astype(np.float64), EDGE, 1 - EDGE)
    values, counts = np.unique(x, return_counts=True)
    upper = np.cumsum(counts) / len(x)  # F_n(v)
    lower = upper - counts / len(x)  # F_n(v-)
    cdf = stats.beta(a, b).cdf(values)
    gap = max(
        np.max(np.abs(upper - np.where(values >= 1 - EDGE, 1.0, cdf))),
        np.max(np.abs(lower - np.where(values <= EDGE, 0.0, cdf))),
    )
    return float(stats.kstwo.sf(gap, len(x)))


def _draws(a: float, b: float, seed) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(beta((DRAWS,), a, b, seed)), dtype=np.float64)


@pytest.mark.slow
@pytest.mark.parametrize(("a", "b"), SHAPES)
def test_beta_with_an_int_seed_draws_the_distribution(a, b) -> None:
    draws = _draws(a, b, 7)
    assert draws.min() >= 0 and draws.max() <= 1
    assert ks_pvalue(draws, a, b) > P_MIN


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.5, 2.0), (5.0, 5.0)])
def test_beta_with_a_seed_generator_draws_the_distribution(a, b) -> None:
    assert ks_pvalue(_draws(a, b, keras.random.SeedGenerator(7)), a, b) > P_MIN


LOG_RANGE = st.floats(math.log10(RANGE[0]), math.log10(RANGE[1])).map(lambda e: 10.0**e)


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(a=LOG_RANGE, b=LOG_RANGE, seed=st.integers(0, 2**16))
def test_beta_draws_the_distribution_anywhere_in_its_range(a, b, seed) -> None:
    assert ks_pvalue(_draws(a, b, seed), a, b) > P_MIN


@pytest.mark.parametrize("shape", [0.0, RANGE[0] / 2, RANGE[1] * 2, math.nan])
def test_beta_refuses_shapes_outside_its_range(shape) -> None:
    with pytest.raises(PluginError, match=r"random_beta: b=.* is outside \[0.001, 10000\]"):
        beta((2,), 1.0, shape, 0)


def test_an_int_seed_repeats_its_draws_and_a_seed_generator_advances() -> None:
    assert np.array_equal(_draws(1.0, 1.0, 3), _draws(1.0, 1.0, 3))
    assert not np.array_equal(_draws(1.0, 1.0, 3), _draws(1.0, 1.0, 4))
    generator = keras.random.SeedGenerator(3)
    assert not np.array_equal(_draws(1.0, 1.0, generator), _draws(1.0, 1.0, generator))


class Draws(keras.layers.Layer):
    """Adds `sampler`'s Beta(5, 5) draws to its input, in a compiled predict."""

    def __init__(self, sampler, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sampler, self.generator = sampler, keras.random.SeedGenerator(0)

    def call(self, x):
        return x + self.sampler((DRAWS,), 5.0, 5.0, self.generator)[None, :]


def _compiled(sampler) -> np.ndarray:
    inputs = keras.Input((DRAWS,))
    model = keras.Model(inputs, Draws(sampler)(inputs))
    model.compile(jit_compile=True)
    return model.predict(np.zeros((1, DRAWS), "float32"), verbose=0)[0]


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's XLA on CPU")
def test_beta_compiles_with_xla_where_keras_beta_does_not() -> None:
    assert ks_pvalue(_compiled(beta), 5.0, 5.0) > P_MIN
    with pytest.raises(Exception, match="StatelessRandomGammaV3"):  # the model is XLA's
        _compiled(lambda shape, a, b, seed: keras.random.beta(shape, a, b, seed=seed))


# keras.random takes a seed tensor on JAX only (TensorFlow's accepts an int or a generator)
TENSOR_SEED = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from regbench.plugins.keras import import_keras
    from regbench.plugins.randomness import beta
    keras = import_keras()
    seed = keras.ops.convert_to_tensor(np.array([7, 0], "uint32"))
    n = int(sys.argv[1])
    draw = jax.jit(beta, static_argnums=(0, 1, 2))  # compiled, as in a training step
    out = {f"{a},{b}": np.asarray(draw((n,), a, b, seed)).tolist()
           for a, b in json.loads(sys.argv[2])}
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), **out}))
    """
)


@pytest.mark.slow
def test_beta_with_a_jax_seed_tensor_draws_the_distribution() -> None:
    pytest.importorskip("jax", reason="seed tensors are a JAX backend feature")
    done = subprocess.run(
        [sys.executable, "-c", TENSOR_SEED, str(DRAWS), json.dumps(SHAPES)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"},
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out.pop("backend") == "jax"
    for a, b in SHAPES:
        draws = np.asarray(out[f"{a},{b}"])
        assert draws.min() >= 0 and draws.max() <= 1
        assert ks_pvalue(draws, a, b) > P_MIN, (a, b)
