"""A run's training progress: counted inside the model, so a ramp advances wherever it trains
(TensorFlow with and without XLA, JAX's fit, the vmapped engine's stateless steps), without
moving a parameter count, and a trained model saves and reloads with it."""

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

from regbench.engine.context import run_context, training_progress
from regbench.engine.models import count_params, describe_model
from regbench.plugins.keras import import_keras

keras = import_keras()
ops = keras.ops

EPOCHS, STEPS, BATCH = 2, 4, 3


@keras.saving.register_keras_serializable(package="test_progress")
class Ramp(keras.layers.Layer):
    """Outputs the progress it reads in training (0 at inference); recreates its progress from
    the config, so a reloaded model carries the saved count."""

    def __init__(self, total_steps: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total_steps = total_steps
        self.progress = training_progress(total_steps)

    def call(self, x: Any, training: bool = False) -> Any:
        return x * 0.0 + (self.progress.value() if training else 0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "total_steps": self.total_steps}


def _model(jit: bool) -> Any:
    """Loss = mean absolute output = the progress the ramp read (a frozen dense layer gives
    the optimizer something to hold)."""
    x = keras.Input((1,))
    out = keras.layers.Add()(
        [Ramp(EPOCHS * STEPS)(x), keras.layers.Dense(1, kernel_initializer="zeros")(x)]
    )
    model = keras.Model(x, out)
    model.compile(keras.optimizers.SGD(0.0), "mae", jit_compile=jit)
    return model


def _count(model: Any) -> float:
    (ramp,) = [layer for layer in model.layers if isinstance(layer, Ramp)]
    return float(ops.convert_to_numpy(ramp.progress.steps.value))


def fit_and_reload(jit: bool = False) -> dict[str, Any]:
    """What a compiled fit did with the progress, on this process's backend (JSON-able)."""
    model = _model(jit)
    x, y = np.ones((STEPS * BATCH, 1), "float32"), np.zeros((STEPS * BATCH, 1), "float32")
    losses = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    out = {"backend": keras.backend.backend(), "losses": losses.history["loss"]}
    out["steps"] = _count(model)
    # what the vmapped engine does: a stateless training call hands back the advanced count
    trainable = [v.value for v in model.trainable_variables]
    state = [v.value for v in model.non_trainable_variables]
    _, after = model.stateless_call(trainable, state, x[:BATCH], training=True)
    out["stateless"] = [float(ops.convert_to_numpy(v)) for v in after]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        out["reloaded_steps"] = _count(reloaded)
        out["predictions_equal"] = bool(
            np.array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
        )
    return out


# the progress read at each step is step / total: each epoch's loss is the mean of its steps'
EXPECTED_LOSSES = [
    np.mean([(e * STEPS + s) / (EPOCHS * STEPS) for s in range(STEPS)]) for e in range(EPOCHS)
]


def _check(out: dict[str, Any]) -> None:
    assert out["losses"] == pytest.approx(EXPECTED_LOSSES, abs=1e-6)
    assert out["steps"] == EPOCHS * STEPS
    assert out["stateless"] == [EPOCHS * STEPS + 1]  # the count is the model's only state
    assert out["reloaded_steps"] == EPOCHS * STEPS
    assert out["predictions_equal"]


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True], ids=["plain", "xla"])
def test_the_progress_a_layer_reads_advances_in_a_compiled_fit(jit: bool) -> None:
    _check(fit_and_reload(jit))


def in_jax(function: str, *args: Any) -> Any:
    """`function(*args)` of this module in a fresh process on the JAX backend (Keras reads
    KERAS_BACKEND once, at import)."""
    pytest.importorskip("jax", reason="the JAX backend needs jax installed")
    script = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('under_jax', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "args = json.loads(sys.argv[3])\n"
        "print('RESULT ' + json.dumps(getattr(module, sys.argv[2])(*args)))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run(
        [sys.executable, "-c", script, __file__, function, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
def test_the_progress_a_layer_reads_advances_in_a_jax_fit() -> None:
    out = in_jax("fit_and_reload", True)
    assert out["backend"] == "jax"
    _check(out)


def test_each_read_counts_a_step_and_the_value_stops_at_one() -> None:
    progress = training_progress(4)
    reads = [float(ops.convert_to_numpy(progress.value())) for _ in range(6)]
    assert reads == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    fresh = progress.fresh()
    assert fresh.total_steps == 4 and float(ops.convert_to_numpy(fresh.value())) == 0.0


def test_the_count_is_state_not_a_parameter() -> None:
    x = keras.Input((3,))
    with_ramp = keras.Model(x, keras.layers.Dense(2)(Ramp(10)(x)))
    plain = keras.Model(x, keras.layers.Dense(2)(x))
    assert count_params(with_ramp) == count_params(plain)
    assert [row["params"] for row in describe_model(with_ramp)["layers"]] == [0, 0, 8]
    assert [v.name for v in with_ramp.non_trainable_variables] == ["steps"]


def test_a_training_run_context_has_a_progress_over_all_its_steps() -> None:
    shape = {"classes": 10, "input_shape": (8, 8, 1), "learning_rate": None, "seed": 0}
    run = run_context(epochs=3, batch_size=32, train_size=100, stage="grid", **shape)
    assert run.progress.total_steps == run.total_steps == 3 * 4
    assert float(ops.convert_to_numpy(run.progress.value())) == 0.0
    idle = run_context(
        epochs=3, batch_size=32, train_size=100, stage="grid", training=False, **shape
    )
    assert idle.progress is None
