"""The Beta sampler draws its two uniforms independently whatever the seed's form: an int, a
SeedGenerator, or (on JAX) a seed tensor. Before, an int seed drew the same numbers twice, so
Beta(1, 1) always gave 0.5 and Beta(0.5, 2) had mean 0.124 instead of 0.2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from regbench.plugins.keras import import_keras
from regbench.plugins.randomness import beta

keras = import_keras()

DRAWS = 100_000
SHAPES = [(1.0, 1.0), (0.5, 2.0), (2.0, 2.0), (0.2, 0.2)]
SIGMAS = 5  # each check fails by chance with probability below 1e-6


def moments_match(draws: np.ndarray, a: float, b: float) -> None:
    """Sample mean and variance within SIGMAS standard errors of Beta(a, b)'s: the mean's
    error is sqrt(var / n); the variance's is var * sqrt((excess kurtosis + 2) / n)."""
    n, s = len(draws), a + b
    mean, var = a / s, a * b / (s * s * (s + 1))
    excess = 6 * ((a - b) ** 2 * (s + 1) - a * b * (s + 2)) / (a * b * (s + 2) * (s + 3))
    assert draws.min() >= 0 and draws.max() <= 1
    assert draws.mean() == pytest.approx(mean, abs=SIGMAS * math.sqrt(var / n))
    assert draws.var() == pytest.approx(var, abs=SIGMAS * var * math.sqrt((excess + 2) / n))


def _draws(a: float, b: float, seed) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(beta((DRAWS,), a, b, seed)), dtype=np.float64)


@pytest.mark.parametrize(("a", "b"), SHAPES)
def test_beta_with_an_int_seed_has_the_moments_of_the_distribution(a, b) -> None:
    moments_match(_draws(a, b, 7), a, b)


@pytest.mark.parametrize(("a", "b"), SHAPES)
def test_beta_with_a_seed_generator_has_the_moments_of_the_distribution(a, b) -> None:
    moments_match(_draws(a, b, keras.random.SeedGenerator(7)), a, b)


def test_an_int_seed_repeats_its_draws_and_a_seed_generator_advances() -> None:
    assert np.array_equal(_draws(1.0, 1.0, 3), _draws(1.0, 1.0, 3))
    assert not np.array_equal(_draws(1.0, 1.0, 3), _draws(1.0, 1.0, 4))
    generator = keras.random.SeedGenerator(3)
    assert not np.array_equal(_draws(1.0, 1.0, generator), _draws(1.0, 1.0, generator))


# keras.random takes a seed tensor on JAX only (TensorFlow's accepts an int or a generator)
TENSOR_SEED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from regbench.plugins.keras import import_keras
    from regbench.plugins.randomness import beta
    keras = import_keras()
    seed = keras.ops.convert_to_tensor(np.array([7, 0], "uint32"))
    out = {f"{a},{b}": np.asarray(beta((int(sys.argv[1]),), a, b, seed)).tolist()
           for a, b in json.loads(sys.argv[2])}
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), **out}))
    """
)


@pytest.mark.slow
def test_beta_with_a_jax_seed_tensor_has_the_moments_of_the_distribution() -> None:
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
        moments_match(np.asarray(out[f"{a},{b}"]), a, b)
