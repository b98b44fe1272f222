"""The lab's three models, exactly, and property tests of the model builder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from regbench.engine.models import build_model, count_params
from regbench.errors import RegbenchError
from regbench.plugins.building import check_input
from regbench.plugins.points import Point
from regbench.plugins.table import Classifier, Conv, Dense, output_shape

LAB = ["none", "l2", "dropout", "batchnorm"]
ARCHS = ["model1", "model2", "model3"]

SPEC_COUNTS = {  # SPEC.md: total, trainable, non-trainable
    ("model1", "none"): (48_970, 48_970, 0),
    ("model1", "l2"): (48_970, 48_970, 0),
    ("model1", "dropout"): (48_970, 48_970, 0),
    ("model1", "batchnorm"): (53_322, 51_146, 2_176),
    ("model2", "none"): (1_442_902, 1_442_902, 0),
    ("model2", "l2"): (1_442_902, 1_442_902, 0),
    ("model2", "dropout"): (1_442_902, 1_442_902, 0),
    ("model2", "batchnorm"): (1_443_558, 1_443_230, 328),
    ("model3", "none"): (1_121_430, 1_121_430, 0),
    ("model3", "l2"): (1_121_430, 1_121_430, 0),
    ("model3", "dropout"): (1_121_430, 1_121_430, 0),
    ("model3", "batchnorm"): (1_122_086, 1_121_758, 328),
}
SLOW = settings(  # each example builds up to four Keras models
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def build(registry, arch, reg, params=None, shape=(32, 32, 3), classes=10, seed=0):
    return build_model(
        registry.get("architectures", arch),
        registry.get("regularizers", reg),
        params,
        shape,
        classes,
        seed=seed,
    )


@pytest.mark.parametrize(("arch", "reg"), sorted(SPEC_COUNTS))
def test_the_twelve_lab_counts(registry, arch, reg):
    counts = count_params(build(registry, arch, reg))
    assert (
        counts["total_params"],
        counts["trainable_params"],
        counts["non_trainable_params"],
    ) == SPEC_COUNTS[(arch, reg)]


def analytic_counts(arch, reg, shape, classes) -> tuple[int, int]:
    """(trainable, non-trainable) from the layer table alone, by hand arithmetic."""
    trainable = frozen = 0
    for spec in arch.layers:
        if isinstance(spec, Point):
            if reg.name == "batchnorm" and spec.accepts(reg.family):
                features = shape[-1]
                trainable, frozen = trainable + 2 * features, frozen + 2 * features
            continue
        if isinstance(spec, Conv):
            trainable += (spec.kernel * spec.kernel * shape[-1] + 1) * spec.filters
        elif isinstance(spec, Dense):
            trainable += (shape[-1] + 1) * spec.units
        elif isinstance(spec, Classifier):
            trainable += (shape[-1] + 1) * classes
        shape = output_shape(spec, shape)
    return trainable, frozen


@st.composite
def cells(draw):
    arch = draw(st.sampled_from(ARCHS))
    reg = draw(st.sampled_from(LAB))
    height = draw(st.integers(8, 40))
    width = draw(st.integers(8, 40))
    channels = draw(st.sampled_from([1, 3]))
    classes = draw(st.integers(2, 12))
    return arch, reg, (height, width, channels), classes


@SLOW
@given(cells(), st.data())
def test_any_cell_builds_with_the_analytic_counts(registry, cell, data):
    arch_name, reg_name, shape, classes = cell
    arch, reg = registry.get("architectures", arch_name), registry.get("regularizers", reg_name)
    try:
        check_input(arch, shape)
    except RegbenchError:
        assume(False)
    params = {h.name: data.draw(st.floats(h.low, h.high)) for h in reg.hparams}
    model = build_model(arch, reg, params, shape, classes, seed=1)
    x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, classes)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and (probs >= 0).all()

    counts = count_params(model)
    assert (counts["trainable_params"], counts["non_trainable_params"]) == analytic_counts(
        arch, reg, shape, classes
    )
    kernels = sum(isinstance(s, Conv | Dense | Classifier) for s in arch.layers)
    assert len(model.losses) == (kernels if reg_name == "l2" else 0)


@pytest.mark.slow
@SLOW
@given(cells())
def test_batchnorm_adds_four_per_feature_and_dropout_l2_add_none(registry, cell):
    arch_name, _, shape, classes = cell
    arch = registry.get("architectures", arch_name)
    try:
        check_input(arch, shape)
    except RegbenchError:
        assume(False)
    base = count_params(build(registry, arch_name, "none", shape=shape, classes=classes))
    features, current = 0, shape
    for spec in arch.layers:
        if isinstance(spec, Point) and spec.accepts("norm"):
            features += current[-1]
        current = output_shape(spec, current)
    bn = count_params(build(registry, arch_name, "batchnorm", shape=shape, classes=classes))
    assert bn["total_params"] - base["total_params"] == 4 * features
    assert bn["non_trainable_params"] == 2 * features
    for reg in ("dropout", "l2"):
        assert count_params(build(registry, arch_name, reg, shape=shape, classes=classes)) == base


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(st.sampled_from(ARCHS), st.floats(0.05, 0.9))
def test_dropout_is_the_identity_at_inference(registry, arch, rate):
    dropped = build(registry, arch, "dropout", {"rate": rate})
    plain = build(registry, arch, "none", seed=7)
    plain.set_weights(dropped.get_weights())
    x = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(dropped(x, training=False)),
        np.asarray(plain(x, training=False)),
        rtol=1e-6,
        atol=1e-6,
    )
    assert not np.allclose(
        np.asarray(dropped(x, training=True)), np.asarray(dropped(x, training=False))
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_initial_weights(registry, arch):
    first = build(registry, arch, "batchnorm", seed=3).get_weights()
    second = build(registry, arch, "batchnorm", seed=3).get_weights()
    other = build(registry, arch, "batchnorm", seed=4).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("arch", "shape"), [("model1", (4, 4, 3)), ("model2", (2, 2, 3)), ("model3", (6, 6, 1))]
)
def test_too_small_inputs_are_refused_clearly(registry, arch, shape):
    with pytest.raises(RegbenchError, match=f"{arch} needs a larger input"):
        build(registry, arch, "none", shape=shape)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["l2", "dropout"]), st.floats(allow_nan=False, allow_infinity=False))
def test_hyperparameters_are_bound_checked(registry, reg_name, value):
    reg = registry.get("regularizers", reg_name)
    hp = reg.hparams[0]
    if hp.low <= value <= hp.high:
        assert reg.resolve({hp.name: value})[hp.name] == value
    else:
        with pytest.raises(RegbenchError, match="outside its bounds"):
            reg.resolve({hp.name: value})


def test_unknown_hyperparameter_and_non_numbers_are_refused(registry):
    dropout = registry.get("regularizers", "dropout")
    with pytest.raises(RegbenchError, match="no hyperparameter 'rte'.*rate"):
        dropout.resolve({"rte": 0.1})
    with pytest.raises(RegbenchError, match="not a number"):
        dropout.resolve({"rate": "lots"})
    with pytest.raises(RegbenchError, match="not a finite"):
        dropout.resolve({"rate": "nan"})


def test_lab_points_follow_the_spec_marks(registry):
    model1 = registry.get("architectures", "model1")
    marks = {p.name: (p.accepts("noise"), p.accepts("norm")) for p in model1.points}
    assert marks == {"pool1": (True, False), "pool2": (False, True), "flat": (True, True)}
