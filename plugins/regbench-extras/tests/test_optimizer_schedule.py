"""A plugin's optimizer hook receives the protocol's schedule and keeps it: decoupled weight
decay under `--lr-schedule cosine` trains with both, and the row says so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from regbench.engine.context import run_context
from regbench.engine.optimizers import make_optimizer
from regbench.plugins.keras import import_keras

from regbench_extras.regularizers import WeightDecay

keras = import_keras()


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_keeps_the_protocol_schedule(name):
    run = run_context(
        epochs=2,
        batch_size=10,
        train_size=100,
        classes=10,
        input_shape=(8, 8, 3),
        learning_rate=None,
        stage="grid",
        seed=0,
        training=False,
    )
    optimizer = make_optimizer(keras, WeightDecay(), {"decay": 1e-3}, name, None, {}, "cosine", run)
    assert optimizer.weight_decay == pytest.approx(1e-3)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == run.total_steps == 20
    assert schedule.initial_learning_rate == pytest.approx(keras.optimizers.get(name).learning_rate)


@pytest.mark.slow
def test_a_weight_decay_run_under_cosine_records_what_trained(tmp_path):
    import regbench

    args = ["run", "--arch", "model1", "--reg", "weight_decay", "--dataset", "digits"]
    args += ["--epochs", "1", "--lr-schedule", "cosine", "--experiment", str(tmp_path)]
    done = subprocess.run([sys.executable, "-m", "regbench", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    row = regbench.load(tmp_path).runs.iloc[0]
    assert (row["status"], row["lr_schedule"], row["optimizer"]) == ("ok", "cosine", "sgd")
    config = json.loads(row["optimizer_config"])["config"]
    assert config["weight_decay"] == pytest.approx(5e-4)
    assert config["learning_rate"]["class_name"] == "CosineDecay"
