"""The seam's points: points carry their shape, merge points (`ctx.residual` and `merge_at`), Keras
classes registered by name and imported lazily, the kit's ramp check, and `describe` naming
an inert pairing."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regbench.api import (
    ANY,
    BRANCH,
    NOISE,
    Architecture,
    BuildContext,
    Composite,
    HParam,
    Point,
    Regularizer,
    hookimpl,
)
from regbench.engine.models import build, count_params
from regbench.errors import CompositionConflict
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import Origin, build_registry
from regbench.plugins.table import output_shape
from regbench.testing import check_effects, check_ramp

keras = import_keras()


class Seen(Regularizer):
    """Inserts nothing; records every point and merge it is asked at."""

    name = "seen"
    family = ANY

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.merges: list[Point] = []

    def layers_at(self, point, params):
        self.points.append(point)
        return []

    def merge_at(self, point, params):
        self.merges.append(point)
        return None


@settings(max_examples=8, deadline=None)
@given(side=st.integers(12, 40), channels=st.sampled_from([1, 3]))
def test_a_point_carries_the_shape_the_table_arithmetic_gives(registry, side, channels):
    arch = registry.get("architectures", "model1")
    seen = Seen()
    build(arch, seen, {}, (side, side, channels), 10)
    shape, expected = (side, side, channels), {}
    for spec in arch.layers:
        shape = output_shape(spec, shape)
        if isinstance(spec, Point):
            assert spec.shape is None  # a table's point is shapeless until built
            expected[spec.name] = shape
    assert {p.name: p.shape for p in seen.points} == expected


def residual_net(ctx, x):
    """One residual block, its merge at `m`; another merge outside any numbered block."""
    y = ctx.conv(x.shape[-1], 3, padding="same")(x)
    y = ctx.point(y, "b", "maps", families={BRANCH}, meta={"role": "branch"})
    x = ctx.residual(x, y, "m", meta={"block": 1, "blocks": 1})
    x = ctx.keras.layers.GlobalAveragePooling2D()(x)
    v = ctx.dense(8)(x)
    return ctx.classifier(ctx.residual(v, ctx.dense(8)(v), "v"))


NET = Architecture("residual-net", "one residual block", builder=residual_net)


def test_a_merge_point_is_an_add_unless_the_regularizer_gives_a_layer():
    seen = Seen()
    built = build(NET, seen, {}, (8, 8, 3), 3, seed=0)
    assert [type(layer).__name__ for layer in built.model.layers].count("Add") == 2
    maps, vector = seen.merges
    assert (maps.name, maps.kind, maps.shape, maps.families) == ("m", "maps", (8, 8, 3), {BRANCH})
    assert dict(maps.meta) == {"role": "merge", "block": 1, "blocks": 1}
    assert (vector.kind, vector.shape) == ("vector", (8,))
    assert [item.layers for item in built.inserted if item.point.name in "mv"] == [0, 0]


class Subtracting(Regularizer):
    """Merges as shortcut - branch at BRANCH merges: shows the order of the two inputs."""

    name = "subtracting"
    family = BRANCH

    def merge_at(self, point, params):
        return keras.layers.Subtract()


def test_the_merge_layer_takes_shortcut_then_branch():
    ctx = BuildContext(Subtracting(), {}, classes=2, input_shape=(4,))
    x = keras.Input((4,))
    out = ctx.residual(x, keras.layers.Rescaling(3.0)(x), "m")
    model = keras.Model(x, out)
    result = keras.ops.convert_to_numpy(model(np.ones((2, 4), np.float32)))
    np.testing.assert_allclose(result, -2.0)
    assert ctx.inserted[0].layers == 1


def test_a_merge_is_asked_only_where_its_family_is_accepted():
    class Noisy(Subtracting):
        name = "noisy"
        family = NOISE

    built = build(NET, Noisy(), {}, (8, 8, 3), 3, seed=0)
    assert "Subtract" not in [type(layer).__name__ for layer in built.model.layers]
    assert not any(item.layers for item in built.inserted)


def test_combinations_take_at_most_one_merge(registry):
    with pytest.raises(CompositionConflict, match="merge residual branches"):
        Composite([Subtracting(), type("Other", (Subtracting,), {"name": "other"})()])
    both = Composite([registry.get("regularizers", "dropout"), Subtracting()])
    built = build(NET, both, {}, (8, 8, 3), 3, seed=0)
    assert [type(layer).__name__ for layer in built.model.layers].count("Subtract") == 2


def test_the_effect_kit_holds_a_merge_to_its_claims():
    class Doubling(Regularizer):
        """A merge that acts at inference too, without claiming it: the kit must object."""

        name = "doubling"
        family = BRANCH

        def merge_at(self, point, params):
            return keras.layers.Lambda(lambda pair: pair[0] + 2.0 * pair[1])

    with pytest.raises(AssertionError, match="merges of doubling change the inference"):
        check_effects(Doubling(), NET, input_shape=(8, 8, 3), classes=3)


@pytest.mark.slow
def test_parameter_counts_of_the_extras_resnet_are_unchanged_by_merge_points(registry):
    if "resnet20" not in registry.names("architectures"):
        pytest.skip("regbench-extras is not installed")
    resnet = registry.get("architectures", "resnet20")
    for name in ("none", "l2", "dropout", "stochastic_depth"):
        model = build(resnet, registry.get("regularizers", name), {}, seed=0).model
        assert count_params(model)["total_params"] == 274_042, name


LAZY_MODULE = textwrap.dedent(
    """
    from regbench.api import import_keras

    keras = import_keras()


    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2 * x
    """
)


class LazyPlugin:
    @hookimpl
    def register_keras_names(self, register):
        register("rb_lazy>Doubler", "rb_lazy_layers:Doubler")
        register("rb_lazy>Missing", "rb_lazy_layers:Missing")


def test_keras_names_are_imported_only_when_a_model_needs_them(tmp_path, monkeypatch):
    (tmp_path / "rb_lazy_layers.py").write_text(LAZY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_lazy_layers", raising=False)
    registry = build_registry(extra_plugins=((LazyPlugin(), Origin("rb-lazy", "1")),))
    assert set(registry.keras_names) == {"rb_lazy>Doubler", "rb_lazy>Missing"}
    assert "rb_lazy_layers" not in sys.modules and not registry.broken
    registry.register_keras_objects()
    doubler = keras.saving.get_registered_object("rb_lazy>Doubler")
    assert doubler is sys.modules["rb_lazy_layers"].Doubler
    assert keras.saving.get_registered_name(doubler) == "rb_lazy>Doubler"
    (broken,) = registry.broken  # the missing one is reported, the other still registered
    assert "Missing" in broken.error and broken.plugin.startswith("rb-lazy")
    registry.register_keras_objects()  # once only
    assert len(registry.broken) == 1


def test_a_malformed_keras_name_breaks_its_plugin_at_load():
    class Malformed:
        @hookimpl
        def register_keras_names(self, register):
            register("NoPackage", "module_without_attribute")

    registry = build_registry(extra_plugins=((Malformed(), Origin("rb-bad", "1")),))
    (broken,) = [b for b in registry.broken if b.origin.dist == "rb-bad"]
    assert "'package>Name'" in broken.error and not registry.keras_names


def _ramping(follow: bool) -> Regularizer:
    """A NOISE regularizer whose layer keeps the run's progress: dropping at rate 0.5 x
    progress when it follows it, at 0.5 throughout when it only reads it."""

    class RampLayer(keras.layers.Layer):
        def __init__(self, progress):
            super().__init__()
            self.progress = progress
            self.seed_generator = keras.random.SeedGenerator(1)

        def call(self, x, training=False):
            if not training:
                return x
            done = self.progress.value()
            rate = 0.5 * done if follow else 0.5 + 0.0 * done
            draw = keras.random.uniform(keras.ops.shape(x), seed=self.seed_generator)
            return x * keras.ops.cast(draw >= rate, x.dtype)

    class Ramp(Regularizer):
        name = "ramp"
        family = NOISE
        hparams = (HParam("unused", 0.0, 0.0, 1.0),)

        def layers_at(self, point, params, ctx):
            return [RampLayer(ctx.progress.fresh())] if ctx.progress is not None else []

    return Ramp()


def test_check_ramp_passes_a_ramp_that_reaches_the_layer(registry):
    check_ramp(_ramping(True), registry.get("architectures", "model1"), input_shape=(16, 16, 1))


def test_check_ramp_fails_a_progress_that_changes_nothing(registry):
    model1 = registry.get("architectures", "model1")
    with pytest.raises(AssertionError, match="does not follow it"):
        check_ramp(_ramping(False), model1, input_shape=(16, 16, 1))
    with pytest.raises(AssertionError, match="no layer keeps the run's progress"):
        check_ramp(registry.get("regularizers", "dropout"), model1, input_shape=(16, 16, 1))


class BranchDropout(Regularizer):
    """Dropout at residual branches: nothing to do on a model without them."""

    name = "branch_dropout"
    description = "Dropout at BRANCH points"
    family = BRANCH

    def layers_at(self, point, params):
        return [keras.layers.Dropout(0.5)]


class BranchPlugin:
    @hookimpl
    def register_regularizers(self, register):
        register(BranchDropout())


def test_describe_says_when_a_grid_skips_the_pairing(cli, request):
    from doubles import use

    use(request, build_registry(extra_plugins=((BranchPlugin(), Origin("rb-branch", "1")),)))
    plain = cli("describe", "--arch", "model1", "--reg", "dropout", "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["skipped"] is None
    inert = cli("describe", "--arch", "model1", "--reg", "branch_dropout", "--json")
    assert "branch_dropout changes nothing on model1" in json.loads(inert.stdout)["skipped"]
    shown = cli("describe", "--arch", "model1", "--reg", "branch_dropout")
    assert shown.returncode == 0 and "A grid skips this pairing" in shown.stdout
    assert "A grid skips" not in cli("describe", "--arch", "model1", "--reg", "dropout").stdout
