"""The kit checks what a regularizer does, not only the shapes it gives: broken regularizers
whose outputs are still probability rows are caught, the built-ins pass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regbench.api import BRANCH, NORM, Composite, Regularizer, import_keras, random_beta
from regbench.builtins.architectures import MODEL1
from regbench.plugins.manager import build_registry
from regbench.testing import check_batches, check_effects, check_model, check_regularizer
from regbench.testing import regularizer_kit as kit

SMALL = (8, 8, 3)  # MODEL1's smallest comfortable input: keeps every build well under a second


def builtin(name: str) -> Regularizer:
    return build_registry().get("regularizers", name)


class Points(Regularizer):
    """Inserts whatever `make` returns at every point of its family: a misbehaving plugin."""

    name = "points"
    description = "test double"

    def __init__(self, make, family: str = "noise") -> None:
        self.make, self.family = make, family

    def layers_at(self, point, params):
        return self.make(import_keras())


class Inputs(Regularizer):
    name = "inputs"
    description = "test double: input layers"

    def __init__(self, make) -> None:
        self.make = make

    def input_layers(self, params):
        return self.make(import_keras())


@pytest.mark.parametrize("name", ["none", "l2", "dropout", "batchnorm", "dropout+batchnorm"])
def test_builtins_have_the_effects_they_claim(name: str) -> None:
    check_effects(builtin(name), MODEL1, input_shape=SMALL)


@pytest.mark.slow
@settings(max_examples=4, deadline=None)
@given(rate=st.floats(0.05, 0.9))
def test_dropout_acts_in_training_only_at_any_rate(rate: float) -> None:
    check_effects(builtin("dropout"), MODEL1, {"rate": rate}, input_shape=SMALL)


def test_a_dropout_that_does_nothing_in_training_fails_the_kit(monkeypatch) -> None:
    # the double lives in tests/, whose other modules may use TensorFlow: skip that scan
    monkeypatch.setattr(kit, "check_backend_neutral", lambda plugin: None)
    dud = Points(lambda keras: [keras.layers.Identity()])
    check_model(dud, MODEL1, input_shape=SMALL)  # the shape checks alone pass it
    with pytest.raises(
        AssertionError, match="layers at points of points change nothing in training"
    ):
        check_effects(dud, MODEL1, input_shape=SMALL)
    with pytest.raises(AssertionError, match="change nothing in training"):
        check_regularizer(dud, [MODEL1], input_shape=SMALL, max_examples=1, fresh_process=False)


def test_a_dropout_rate_of_zero_is_caught() -> None:
    with pytest.raises(AssertionError, match="change nothing in training"):
        check_effects(builtin("dropout"), MODEL1, {"rate": 0.0}, input_shape=SMALL)


def test_a_dropout_that_also_perturbs_inference_is_caught_unless_claimed() -> None:
    leaky = Points(lambda keras: [keras.layers.Dropout(0.1), keras.layers.Rescaling(0.5)])
    check_model(leaky, MODEL1, input_shape=SMALL)  # deterministic, so shape checks pass it
    with pytest.raises(AssertionError, match="change the inference"):
        check_effects(leaky, MODEL1, input_shape=SMALL)
    check_effects(leaky, MODEL1, input_shape=SMALL, claims={"stochastic_inference": True})


def test_norm_layers_may_act_at_inference() -> None:
    scaled = Points(lambda keras: [keras.layers.Rescaling(0.5)], family=NORM)
    check_effects(scaled, MODEL1, input_shape=SMALL)


def test_input_layers_must_act_in_training_only() -> None:
    check_effects(Inputs(lambda keras: [keras.layers.RandomFlip()]), MODEL1, input_shape=SMALL)
    with pytest.raises(AssertionError, match="input layers of inputs change the inference"):
        check_effects(
            Inputs(lambda keras: [keras.layers.Rescaling(0.9)]), MODEL1, input_shape=SMALL
        )
    with pytest.raises(AssertionError, match="input_layers hook gives no layer"):
        check_effects(Inputs(lambda keras: []), MODEL1, input_shape=SMALL)


def test_acting_at_no_point_of_the_architecture_passes() -> None:
    """MODEL1 has no residual branch: a stochastic depth there is skipped, not wrong."""
    branches_only = Points(lambda keras: [keras.layers.Dropout(0.5)], family=BRANCH)
    check_effects(branches_only, MODEL1, input_shape=SMALL)


def test_a_zero_kernel_penalty_is_caught() -> None:
    class Zero(Regularizer):
        name = "zero"
        description = "an L2 of strength 0"

        def kernel_regularizer(self, params):
            return import_keras().regularizers.L2(0.0)

    with pytest.raises(AssertionError, match="penalty of 0"):
        check_effects(Zero(), MODEL1, input_shape=SMALL)


def test_a_batch_hook_that_returns_the_batch_is_caught() -> None:
    class Same(Regularizer):
        name = "same"
        description = "a batch rewrite that rewrites nothing"

        def batch(self, images, targets, params, seed, ctx):
            return images, targets

    with pytest.raises(AssertionError, match="batch unchanged"):
        check_effects(Same(), MODEL1, input_shape=SMALL)


def test_a_loss_hook_that_keeps_the_loss_is_caught() -> None:
    class Same(Regularizer):
        name = "same"
        description = "returns the crossentropy it was given"

        def loss(self, params, loss):
            return loss

    with pytest.raises(AssertionError, match="equals the plain crossentropy"):
        check_effects(Same(), MODEL1, input_shape=SMALL)


def test_an_optimizer_hook_is_judged_by_the_configuration_keras_makes() -> None:
    class Default(Regularizer):
        name = "default"
        description = "sets momentum to SGD's own default"

        def optimizer(self, params, optimizer):
            return optimizer.with_kwargs(momentum=0.0)

    class Momentum(Default):
        def optimizer(self, params, optimizer):
            return optimizer.with_kwargs(momentum=0.9)

    with pytest.raises(AssertionError, match="leaves the optimizer's configuration"):
        check_effects(Default(), MODEL1, input_shape=SMALL)
    check_effects(Momentum(), MODEL1, input_shape=SMALL)


def test_a_callbacks_hook_that_adds_none_is_caught() -> None:
    class Empty(Regularizer):
        name = "empty"
        description = "no callbacks after all"

        def callbacks(self, params):
            return []

    with pytest.raises(AssertionError, match="adds no callback"):
        check_effects(Empty(), MODEL1, input_shape=SMALL)


def test_a_dud_part_of_a_combination_is_named() -> None:
    dud = Points(lambda keras: [keras.layers.Identity()])
    with pytest.raises(AssertionError, match="layers at points of points change nothing"):
        check_effects(Composite([builtin("batchnorm"), dud]), MODEL1, input_shape=SMALL)


class Blend(Regularizer):
    """Mixup as a batch hook: images blended with the mirrored batch by lambda, and their
    targets by `label_lam(lambda)`."""

    name = "blend"
    description = "test double: a batch mix"

    def __init__(self, label_lam=lambda lam: lam) -> None:
        self.label_lam = label_lam

    def batch(self, images, targets, params, seed, ctx):
        ops = import_keras().ops
        lam = random_beta((), 1.0, 1.0, seed)
        mixed = lam * images + (1.0 - lam) * ops.flip(images, axis=0)
        weight = self.label_lam(lam)
        return mixed, weight * targets + (1.0 - weight) * ops.flip(targets, axis=0)


UNMIXED_LABELS = Blend(lambda lam: 1.0)


def test_a_mixup_that_mixes_images_but_not_labels_fails_the_kit() -> None:
    check_batches(Blend(), input_shape=SMALL)
    for dud in (UNMIXED_LABELS, Blend(lambda lam: 1.0 - lam)):
        check_effects(dud, MODEL1, input_shape=SMALL)  # it does change the batch
        with pytest.raises(AssertionError, match="mix the targets as the images are mixed"):
            check_batches(dud, input_shape=SMALL)


@pytest.mark.slow  # the whole kit, training included
def test_the_whole_kit_refuses_a_mixup_that_does_not_mix_labels(monkeypatch) -> None:
    monkeypatch.setattr(kit, "check_backend_neutral", lambda plugin: None)  # a tests/ double
    with pytest.raises(AssertionError, match=r"blend.batch: image \d takes 0\.\d+ of its pixels"):
        check_regularizer(UNMIXED_LABELS, [MODEL1], input_shape=SMALL, fresh_process=False)
    check_regularizer(Blend(), [MODEL1], input_shape=SMALL, fresh_process=False)


def test_a_batch_hook_that_changes_images_or_labels_alone_is_not_mixing() -> None:
    class Noise(Regularizer):
        name = "noise"
        description = "test double: each image's own noise, its label kept"

        def batch(self, images, targets, params, seed, ctx):
            keras = import_keras()
            return images + 0.1 * keras.random.normal(images.shape, seed=seed), targets

    class Smooth(Regularizer):
        name = "smooth"
        description = "test double: label smoothing, images kept"

        def batch(self, images, targets, params, seed, ctx):
            return images, 0.9 * targets + 0.1 / targets.shape[-1]

    check_batches(Noise(), input_shape=SMALL)
    check_batches(Smooth(), input_shape=SMALL)
