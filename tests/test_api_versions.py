"""The plugin API is versioned: a plugin written to an older contract still runs (the old way,
with a deprecation naming the change), one written for a newer API is refused at load."""

from __future__ import annotations

import csv
import json
import warnings

import pytest
from test_plugins import make_distribution

from regbench.api import API_VERSION, OptimizerSpec, RegbenchDeprecationWarning, Regularizer
from regbench.plugins.manager import Origin, build_registry

# The previous release's docs: the optimizer hook gets the protocol's rate as a number, which
# this plugin turns into its own cosine schedule. Under API 2 the rate may be a schedule: then
# float() fails inside the plugin unless regbench calls it the old way.
LEGACY = """
    from regbench.api import HParam, OptimizerSpec, Regularizer, hookimpl, import_keras

    class AdamWCosine(Regularizer):
        name = "adamw_cosine"
        description = "AdamW with its own cosine schedule (written for the previous API)"
        hparams = (HParam("weight_decay", 1e-4, 0.0, 0.1),)

        def optimizer(self, params, spec, ctx):
            keras = import_keras()
            rate = float(spec.kwargs.get("learning_rate", 0.001))
            cosine = keras.optimizers.schedules.CosineDecay(rate, decay_steps=ctx.total_steps)
            config = {**spec.kwargs, "learning_rate": cosine}
            return OptimizerSpec("adamw", {**config, "weight_decay": params["weight_decay"]})

    @hookimpl
    def register_regularizers(register):
        register(AdamWCosine())
"""
FUTURE = """
    from regbench.api import Regularizer, hookimpl

    class FromTheFuture(Regularizer):
        name = "from_the_future"
        description = "Written for an API this regbench does not have"
        api_version = 99

    @hookimpl
    def register_regularizers(register):
        register(FromTheFuture())
"""


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    make_distribution(folder, "regbench-legacy", "rb_legacy", LEGACY)
    make_distribution(folder, "regbench-future", "rb_future", FUTURE)
    return folder


def test_an_old_plugin_is_listed_as_deprecated_and_a_future_one_as_broken(cli_subprocess, site):
    result = cli_subprocess("list", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert "adamw_cosine" in {r["name"] for r in listing["regularizers"]}
    assert "from_the_future" not in {r["name"] for r in listing["regularizers"]}
    notes = [d["note"] for d in listing["deprecated"] if d["dist"] == "regbench-legacy"]
    assert len(notes) == 1 and "optimizer hook's learning_rate" in notes[0], notes
    assert f"api_version = {API_VERSION}" in notes[0]
    broken = [b["error"] for b in listing["broken"] if b["dist"] == "regbench-future"]
    assert broken == [
        "PluginError: 'from_the_future' was written for regbench plugin API 99; this regbench "
        f"supports API 1 to {API_VERSION}: upgrade regbench"
    ]


class Legacy(Regularizer):
    name = "legacy_rate"

    def optimizer(self, params, spec):
        return spec.with_kwargs(learning_rate=float(spec.kwargs["learning_rate"]) / 2)


class Current(Legacy):
    name = "current_rate"
    api_version = API_VERSION

    def optimizer(self, params, spec):
        return spec.with_kwargs(learning_rate=spec.kwargs["learning_rate"])


def _optimizer(reg, schedule):
    from regbench.engine.context import run_context
    from regbench.engine.optimizers import make_optimizer
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    run = run_context(
        epochs=2,
        batch_size=10,
        train_size=100,
        classes=3,
        input_shape=(4, 4, 1),
        learning_rate=0.1,
        stage="grid",
        seed=0,
        training=False,
    )
    return keras, make_optimizer(keras, reg, {}, "sgd", 0.1, {}, schedule, run)


def _schedule(keras, optimizer) -> str:
    return keras.optimizers.serialize(optimizer)["config"]["learning_rate"]["class_name"]


def test_an_api1_optimizer_hook_gets_a_number_and_the_protocol_schedules_what_it_returns():
    with pytest.warns(RegbenchDeprecationWarning, match="legacy_rate was written for .* API 1"):
        keras, optimizer = _optimizer(Legacy(), "cosine")
    # the protocol's cosine over the hook's halved number
    assert _schedule(keras, optimizer) == "CosineDecay"
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


def test_a_current_optimizer_hook_gets_the_schedule_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras, optimizer = _optimizer(Current(), "cosine")
    assert _schedule(keras, optimizer) == "CosineDecay"
    assert float(optimizer.learning_rate) == pytest.approx(0.1)


@pytest.mark.parametrize("declared", [0, "2", 2.0, True])
def test_a_malformed_api_version_breaks_its_plugin_with_one_line(declared):
    class Odd(Regularizer):
        name = "odd"
        description = "odd"
        api_version = declared

    class Plugin:
        from regbench.api import hookimpl

        @staticmethod
        @hookimpl
        def register_regularizers(register):
            register(Odd())

    reg = build_registry(((Plugin(), Origin("odd-dist", "1")),))
    errors = [b.error for b in reg.broken if b.origin.dist == "odd-dist"]
    assert len(errors) == 1 and "must be a whole number from 1 to" in errors[0], errors
    assert "odd" not in reg.entries["regularizers"]


def test_optimizer_spec_is_what_the_hook_sees():
    assert OptimizerSpec("sgd", {"learning_rate": 0.1}).with_kwargs(momentum=0.9).kwargs == {
        "learning_rate": 0.1,
        "momentum": 0.9,
    }


@pytest.mark.slow
def test_a_grid_with_the_previous_contracts_plugin_trains_ok(cli_subprocess, site, tmp_path):
    """As its user meets it: installed, a fresh process, a protocol with a schedule."""
    folder = tmp_path / "grid"
    result = cli_subprocess(
        "run",
        "--arch",
        "model1",
        "--reg",
        "none,adamw_cosine",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--lr-schedule",
        "cosine",
        "--experiment",
        str(folder),
        "--json",
        env={"PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TypeError" not in result.stdout + result.stderr
    with (folder / "runs.csv").open() as handle:
        rows = {r["reg"]: r for r in csv.DictReader(handle)}
    assert rows["adamw_cosine"]["status"] == "ok"
    config = json.loads(rows["adamw_cosine"]["optimizer_config"])
    assert config["class_name"] == "AdamW"
