"""The seam v2: builders, the build and run contexts, combinations, applicability, provenance,
protocol optimizers and soft-target training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regbench.api import (
    BRANCH,
    NOISE,
    Architecture,
    Composite,
    HParam,
    Regularizer,
    RunContext,
    random_beta,
)
from regbench.design.applicability import why_not
from regbench.design.optimizer_options import parse_optimizer_options
from regbench.design.pending import stale_reasons, why_pending
from regbench.design.plan import Protocol, RunSpec, make_plan
from regbench.engine.models import build, count_params, count_regularized_kernels
from regbench.engine.optimizers import schedule
from regbench.errors import RegbenchError
from regbench.plugins.building import check_input, macs
from regbench.plugins.context import invoke
from regbench.plugins.keras import import_keras

keras = import_keras()


def tiny_resnet(ctx, x):
    """Two residual blocks with BN and a skip: what a table cannot say."""
    layers = ctx.keras.layers
    x = ctx.conv(8, 3, padding="same", use_bias=False)(x)
    for block in (1, 2):
        y = ctx.conv(8, 3, padding="same", activation="relu")(x)
        y = ctx.point(y, f"b{block}.trunk", "maps", families={NOISE}, meta={"role": "trunk"})
        y = layers.BatchNormalization()(ctx.conv(8, 3, padding="same")(y))
        meta = {"role": "branch", "block": block, "blocks": 2}
        y = ctx.point(y, f"b{block}.branch", "maps", families={BRANCH}, meta=meta)
        x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    return ctx.classifier(ctx.dense(int(ctx.hparams["width"]), activation="relu")(x))


TINY = Architecture(
    name="tiny-resnet",
    description="two residual blocks",
    builder=tiny_resnet,
    hparams=(HParam("width", 16, 4, 64, integer=True),),
)


class Rates(Regularizer):
    """Records what it was asked, and adds dropout at branch points with the l/L rule."""

    name = "rates"
    description = "test double"
    family = BRANCH

    def __init__(self) -> None:
        self.seen: list = []

    def layers_at(self, point, params, ctx):
        self.seen.append((point, ctx))
        rate = 0.5 * point.meta["block"] / point.meta["blocks"]
        return [keras.layers.Dropout(rate)]


class L2(Regularizer):
    name = "l2-test"
    description = "test double"

    def kernel_regularizer(self, params):
        return keras.regularizers.L2(1e-3)


def test_a_builder_gets_fresh_layers_points_with_meta_and_the_kernel_regularizer():
    rates = Rates()
    run = RunContext(epochs=3, steps_per_epoch=7, classes=4, input_shape=(8, 8, 3), seed=5)
    first = build(TINY, rates, {}, (8, 8, 3), 4, seed=0, run=run)
    second = build(TINY, rates, {}, (8, 8, 3), 4, seed=0, run=run)
    assert not {id(a) for a in first.model.layers[1:]} & {id(b) for b in second.model.layers[1:]}
    assert [item.layers for item in first.inserted] == [0, 1, 0, 1]  # only branch points
    point, ctx = rates.seen[0]
    assert point.meta == {"role": "branch", "block": 1, "blocks": 2} and ctx is run
    rates_used = [layer.rate for layer in first.model.layers if type(layer).__name__ == "Dropout"]
    assert rates_used == [0.25, 0.5]
    penalised = build(TINY, L2(), {}, (8, 8, 3), 4).model
    assert count_regularized_kernels(penalised) == 7 == len(penalised.losses)
    wide = build(TINY, L2(), {}, (8, 8, 3), 4, arch_params={"width": 32}).model
    assert count_params(wide)["total_params"] - count_params(penalised)["total_params"] == (
        16 * 8 + 16 + 16 * 4
    )


def test_a_builder_model_is_functional_a_table_stays_sequential(registry):
    assert type(build(TINY, L2(), {}, (8, 8, 3), 4).model).__name__ == "Functional"
    model1 = registry.get("architectures", "model1")
    assert type(build(model1, L2(), {}, (8, 8, 3), 4).model).__name__ == "Sequential"


def test_builder_input_checks_and_costs_come_from_the_model():
    assert macs(TINY, (8, 8, 3), 4) == 8 * 8 * 8 * 9 * (3 + 8 * 4) + 8 * 16 + 16 * 4
    valid = Architecture(
        name="valid5",
        description="a 5x5 valid convolution",
        builder=lambda ctx, x: ctx.classifier(ctx.keras.layers.Flatten()(ctx.conv(4, 5)(x))),
    )
    check_input(valid, (5, 5, 1))
    with pytest.raises(RegbenchError, match="valid5 cannot take a 4x4x1 input"):
        check_input(valid, (4, 4, 1))


def test_hooks_get_the_context_only_when_they_ask_for_it():
    run = RunContext(seed=3)
    assert invoke(lambda params: params, {"a": 1}, ctx=run) == {"a": 1}
    assert invoke(lambda params, ctx: ctx.seed, {}, ctx=run) == 3


def test_a_combination_addresses_parameters_per_component_and_keeps_counts(registry):
    combo = registry.get("regularizers", "dropout+batchnorm")
    assert isinstance(combo, Composite) and combo.name == "dropout+batchnorm"
    assert combo.resolve({"rate": 0.3}) == {"dropout.rate": 0.3}
    assert combo.resolve({"dropout.rate": 0.2}) == {"dropout.rate": 0.2}
    with pytest.raises(RegbenchError, match="dropout.rate"):
        combo.resolve({"dropout.rate": 2})
    model1 = registry.get("architectures", "model1")
    model = build(model1, combo, {}, (32, 32, 3), 10, seed=0).model
    assert count_params(model) == {
        "total_params": 53_322,
        "trainable_params": 51_146,
        "non_trainable_params": 2_176,
    }
    assert [type(layer).__name__ for layer in model.layers].count("Dropout") == 2


def test_conflicting_components_are_refused_in_one_line(registry):
    class Smooth(Regularizer):
        name = "smooth"

        def loss(self, params, loss):
            return loss

    class Other(Smooth):
        name = "other"

    with pytest.raises(RegbenchError, match="cannot combine smooth and other: both replace"):
        Composite([Smooth(), Other()])
    with pytest.raises(RegbenchError, match="distinct"):
        registry.get("regularizers", "dropout+dropout")


def test_plan_skips_what_changes_nothing_and_what_is_refused(registry):
    model1 = registry.get("architectures", "model1")
    assert "changes nothing on model1" in why_not(model1, Rates(), {})
    assert why_not(TINY, Rates(), {}) is None
    assert why_not(model1, registry.get("regularizers", "none"), {}) is None
    assert why_not(model1, registry.get("regularizers", "l2"), {"strength": 0.01}) is None

    class Picky(Regularizer):
        name = "picky"

        def refuse(self, architecture, params):
            return f"picky does not run on {architecture.name}"

        def loss(self, params, loss):
            return loss

    assert why_not(model1, Picky(), {}) == "picky does not run on model1"
    specs = make_plan(
        registry, ["model1"], ["dropout+batchnorm"], [0], Protocol(dataset="synthetic")
    )
    assert specs[0].skip is None and specs[0].params == {"dropout.rate": 0.1}


def test_provenance_is_part_of_the_identity_and_explains_a_pending_cell(registry):
    (spec,) = make_plan(registry, ["model1"], ["l2"], [0], Protocol(dataset="synthetic"))
    assert spec.provenance["arch_source"].startswith("regbench ")
    assert len(spec.provenance["reg_source_hash"]) == 12
    row = spec.row()
    assert row["arch_source"] == spec.provenance["arch_source"]
    assert RunSpec.from_row(row).config_hash == spec.config_hash
    upgraded = RunSpec(**{**spec.__dict__, "provenance": {**spec.provenance, "reg_source": "x 2"}})
    assert upgraded.config_hash != spec.config_hash
    assert why_pending(upgraded, row) == f"reg source {spec.provenance['reg_source']} -> x 2"
    reason = f"reg source {spec.provenance['reg_source']} -> x 2"
    assert stale_reasons([upgraded, spec], [row]) == {upgraded.config_hash: reason}


def test_protocol_optimizer_defaults_keep_old_identities():
    base = RunSpec(arch="a", reg="r", params={}, seed=0)
    assert "optimizer_options" not in base.identity()["protocol"]
    momentum = RunSpec(
        arch="a", reg="r", params={}, seed=0, protocol=Protocol(optimizer_options={"momentum": 0.9})
    )
    assert momentum.config_hash != base.config_hash


def test_optimizer_options_are_typed_and_checked():
    assert parse_optimizer_options({"momentum": "0.9", "nesterov": "true"}) == {
        "momentum": 0.9,
        "nesterov": True,
    }
    with pytest.raises(RegbenchError, match="unknown optimizer option 'momentun'"):
        parse_optimizer_options({"momentun": "0.9"})
    with pytest.raises(RegbenchError, match="nesterov='maybe' must be true or false"):
        parse_optimizer_options({"nesterov": "maybe"})


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(["constant", "cosine", "step", "warmup_cosine"]),
    rate=st.floats(1e-4, 1.0),
    steps=st.integers(2, 500),
    at=st.floats(0, 1),
)
def test_schedules_stay_within_zero_and_the_base_rate(name, rate, steps, at):
    lr = schedule(keras, name, rate, steps)
    value = float(lr(int(at * steps))) if callable(lr) else float(lr)
    assert -1e-9 <= value <= rate * (1 + 1e-5)


def test_schedule_shapes():
    assert float(schedule(keras, "cosine", 0.1, 100)(100)) == pytest.approx(0.0, abs=1e-6)
    step = schedule(keras, "step", 0.1, 100)
    assert [round(float(step(i)), 6) for i in (0, 51, 76)] == [0.1, 0.01, 0.001]
    warm = schedule(keras, "warmup_cosine", 0.1, 100)
    assert float(warm(0)) == pytest.approx(0.0) and float(warm(5)) == pytest.approx(0.1)
    with pytest.raises(RegbenchError, match="unknown learning-rate schedule"):
        schedule(keras, "linear", 0.1, 10)


@pytest.mark.parametrize(("a", "b"), [(0.2, 0.2), (1.0, 1.0), (2.0, 2.0), (0.5, 2.0)])
def test_beta_draws_have_the_right_mean_and_variance(a, b):
    draws = np.asarray(random_beta((4000,), a, b, keras.random.SeedGenerator(1)))
    assert draws.min() >= 0 and draws.max() <= 1
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert draws.mean() == pytest.approx(mean, abs=4 * math.sqrt(var / 4000))
    assert draws.var() == pytest.approx(var, rel=0.15)


@pytest.mark.slow
def test_beta_draws_compile_with_xla():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("jit_compile here is TensorFlow's")
    import tensorflow as tf

    seed = keras.random.SeedGenerator(0)
    draw = tf.function(lambda: random_beta((3,), 0.4, 0.4, seed), jit_compile=True)
    first, second = np.asarray(draw()), np.asarray(draw())
    assert first.shape == (3,) and not np.array_equal(first, second)


def test_a_skipped_cell_is_a_row_without_training():
    from regbench.engine.trainer import train_run

    spec = RunSpec(arch="model1", reg="x", params={}, seed=0, skip="x changes nothing")

    def no_data():
        raise AssertionError("a skipped cell loads no data")

    result = train_run(spec, no_data, None)
    assert result.row["status"] == "skipped" and result.row["error"] == "x changes nothing"


class Swap(Regularizer):
    """A batch rewrite that swaps every image with its mirror and its targets likewise."""

    name = "swap"
    description = "test double"

    def batch(self, images, targets, params, seed, ctx):
        noise = keras.random.uniform((), seed=seed) * 0.0
        return keras.ops.flip(images, 0) + noise, keras.ops.flip(targets, 0) * 0.5 + 0.5 / 3


@pytest.mark.slow
def test_a_batch_regularizer_trains_on_soft_targets_compiled_with_xla(registry):
    from regbench.design.plan import Execution
    from regbench.engine.trainer import build_and_compile
    from regbench.plugins.datasets import Splits

    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 3), dtype=np.float32)
    y = rng.integers(0, 3, 16).astype(np.int64)
    data = Splits(x, y, x, y, x, y, ("a", "b", "c"))
    model1 = registry.get("architectures", "model1")
    model = build_and_compile(
        model1, Swap(), {}, Protocol(epochs=1, batch_size=8), data, 0, Execution(jit_compile="on")
    )
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    assert set(history) == {"loss", "accuracy", "crossentropy"}  # the divergence rule's too
    assert np.isfinite(history["loss"]).all()
    loss, accuracy, _ = model.evaluate(x, y, verbose=0)  # and the crossentropy
    predicted = np.argmax(np.asarray(model.inner(x, training=False)), axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == y))
    assert count_params(model.inner) == count_params(build(model1, Swap(), {}, (8, 8, 3), 3).model)
