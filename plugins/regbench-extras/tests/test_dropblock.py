"""DropBlock as the paper has it, seeds only where a whole block fits, but at the gamma that
drops its rate on any map once overlapping blocks are counted; the kept units rescaled by the
fraction kept; the identity at inference; and its ramp advances in a compiled fit on
TensorFlow (with and without XLA) and on JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regbench.api import Point, RunContext
from regbench.engine.context import training_progress
from regbench.plugins.keras import import_keras
from scipy.signal import convolve2d

from regbench_extras.layers import DropBlock as DropBlockLayer
from regbench_extras.layers import drop_gamma
from regbench_extras.regularizers import DropBlock

keras = import_keras()
ops = keras.ops

MAPS = Point("maps", "maps")
MAPS_DRAWN = 8192  # feature maps per example, each an independent draw of the dropped share
SIGMAS = 6  # the sampled share within 6 standard errors of the rate: a false alarm < 1e-8


class Training(keras.layers.Layer):
    """Calls its layer in training mode, so `predict` runs the compiled training call (on
    JAX one compiled program per map shape, several times faster than op by op)."""

    def __init__(self, inner: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x: Any) -> Any:
        return self.inner(x, training=True)


def dropped_shares(height: int, width: int, block: int, rate: float, seed: int) -> np.ndarray:
    """The share of units a full-rate DropBlock zeroes in each feature map of one training
    call on ones, after checking that the kept units carry the whole sum and inference
    changes nothing."""
    batch = 8
    x = np.ones((batch, height, width, MAPS_DRAWN // batch), "float32")
    layer = DropBlockLayer(rate, block, seed=seed)
    assert np.array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    inputs = keras.Input(x.shape[1:])
    out = keras.Model(inputs, Training(layer)(inputs)).predict(x, batch_size=batch, verbose=0)
    kept = out[out != 0]
    assert kept.sum() == pytest.approx(x.size, rel=1e-4)  # rescaled by the fraction kept
    assert np.allclose(kept, kept[0])
    return np.mean(out == 0, axis=(1, 2)).ravel()


def assert_drops_its_rate(height: int, width: int, block: int, rate: float, seed: int) -> None:
    """The mean share over the maps is the rate, within SIGMAS standard errors of that mean
    (the maps are independent, so its error is their spread over sqrt(MAPS_DRAWN)): 0.003 to
    0.03 of a 0.5 rate, where the paper's gamma fell short by up to 0.15."""
    shares = dropped_shares(height, width, block, rate, seed)
    tolerance = SIGMAS * shares.std() / np.sqrt(shares.size) + 1e-6
    assert shares.mean() == pytest.approx(rate, abs=tolerance), (shares.mean(), tolerance)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "block", "rate"),
    # the first audit's cases (seeds over the whole map dropped 0.144 to 0.963 at rate 0.1),
    # then the second's: at 0.5 the paper's gamma drops 0.354 on 18 x 18 maps with blocks of 9
    [(32, 3, 0.1), (8, 3, 0.1), (8, 5, 0.1), (8, 7, 0.1), (8, 9, 0.1), (4, 9, 0.1)]
    + [(18, 9, 0.5), (8, 3, 0.5), (32, 5, 0.5)],
)
def test_dropblock_drops_its_rate_on_small_maps_too(size: int, block: int, rate: float) -> None:
    assert_drops_its_rate(size, size, block, rate, seed=0)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(4, 32),
    width=st.integers(4, 32),
    block=st.integers(1, 9),
    rate=st.floats(0.02, 0.5),  # up to DropBlock's bound
    seed=st.integers(0, 2**16),
)
def test_dropblock_drops_its_rate_on_any_map(height, width, block, rate, seed) -> None:
    assert_drops_its_rate(height, width, block, rate, seed)


def expected_share(gamma: float, height: int, width: int, block: int) -> float:
    """What seeds at `gamma` drop in expectation, counted by brute force: each unit is kept
    when none of the seeds whose block covers it falls."""
    block_h, block_w = min(block, height), min(block, width)
    seeds = np.ones((height - block_h + 1, width - block_w + 1))  # where a whole block fits
    covers = convolve2d(seeds, np.ones((block_h, block_w)))  # each seed spread over its block
    assert covers.shape == (height, width)
    return float(1.0 - np.mean((1.0 - gamma) ** covers))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    block=st.integers(1, 9),
    rate=st.floats(0.0, 0.5),
)
def test_dropblock_seeds_at_the_gamma_that_drops_its_rate(height, width, block, rate) -> None:
    """Exactly, in expectation, on any map; float32 rounding of gamma is all the error."""
    gamma = float(drop_gamma(rate, height, width, min(block, height), min(block, width)))
    assert expected_share(gamma, height, width, block) == pytest.approx(rate, abs=1e-5)


EPOCHS, STEPS, BATCH = 3, 4, 4


@keras.saving.register_keras_serializable(package="test_dropblock")
class ZeroShare(keras.layers.Layer):
    """Each sample's share of exact zeros: on ones, what DropBlock dropped."""

    def call(self, x: Any) -> Any:
        return ops.mean(ops.cast(ops.equal(x, 0.0), "float32"), axis=(1, 2, 3))[:, None]


def ramp_under_fit(jit: bool = False) -> dict[str, Any]:
    """Each epoch's mean dropped share in a compiled fit (the loss: a frozen dense branch adds
    nothing), with the DropBlock layer the regularizer makes for a run; then a safe-mode
    reload of the trained model, which must predict the same."""
    progress = training_progress(EPOCHS * STEPS)
    (layer,) = DropBlock().layers_at(
        MAPS, {"rate": 0.3, "block_size": 3}, RunContext(progress=progress)
    )
    x = keras.Input((8, 8, 64))
    frozen = keras.layers.Dense(1, kernel_initializer="zeros")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    model = keras.Model(x, keras.layers.Add()([ZeroShare()(layer(x)), frozen]))
    model.compile(keras.optimizers.SGD(0.0), "mae", jit_compile=jit)
    ones = np.ones((STEPS * BATCH, 8, 8, 64), "float32")
    history = model.fit(
        ones, np.zeros((STEPS * BATCH, 1)), batch_size=BATCH, epochs=EPOCHS, verbose=0
    )
    out = {"backend": keras.backend.backend(), "losses": history.history["loss"]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        out["reloads"] = bool(
            np.array_equal(model.predict(ones, verbose=0), reloaded.predict(ones, verbose=0))
        )
    return out


def _check_ramp(out: dict[str, Any]) -> None:
    first, *_, last = out["losses"]
    # mean ramp per epoch: 0.125, 0.46, 0.79 of the 0.3 rate
    assert first < 0.06 and last > 0.18, out["losses"]
    assert out["losses"] == sorted(out["losses"])
    assert out["reloads"]


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True], ids=["plain", "xla"])
def test_dropblock_ramps_up_during_a_compiled_fit(jit: bool) -> None:
    _check_ramp(ramp_under_fit(jit))


def in_jax(function: str, *args: Any) -> Any:
    """`function(*args)` of this module in a fresh process on the JAX backend."""
    pytest.importorskip("jax", reason="the JAX backend needs jax installed")
    script = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('under_jax', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print('RESULT ' + json.dumps(getattr(module, sys.argv[2])(*json.loads(sys.argv[3]))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, __file__, function, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"},
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def jax_properties() -> str:
    """The rate property and the audit's cases, run where Keras is on JAX."""
    test_dropblock_drops_its_rate_on_any_map()
    for size, block, rate in [(8, 3, 0.1), (8, 9, 0.1), (18, 9, 0.5)]:
        test_dropblock_drops_its_rate_on_small_maps_too(size, block, rate)
    return keras.backend.backend()


@pytest.mark.slow
def test_dropblock_drops_its_rate_on_jax() -> None:
    assert in_jax("jax_properties") == "jax"


@pytest.mark.slow
def test_dropblock_ramps_up_during_a_jax_fit() -> None:
    out = in_jax("ramp_under_fit", True)
    assert out["backend"] == "jax"
    _check_ramp(out)
