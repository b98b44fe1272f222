"""The conformance kit on the built-in regularizers, and the kit catching broken regularizers."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap

import pytest
from hypothesis import given, settings

from regbench.api import HParam, OptimizerSpec, RegbenchError, Regularizer, import_keras
from regbench.builtins.architectures import MODEL1
from regbench.plugins.manager import build_registry
from regbench.testing import (
    check_backend_neutral,
    check_declaration,
    check_model,
    check_refuses_out_of_bounds,
    check_regularizer,
    check_training_contract,
    hparam_values,
    invalid_hparam_values,
)


@pytest.mark.slow  # real training, over 5 s of the fast tier
@pytest.mark.parametrize("name", ["dropout", "batchnorm"])  # random in training; state
def test_builtin_regularizer_conforms_on_model1(name: str) -> None:
    regularizer = build_registry().get("regularizers", name)
    check_regularizer(regularizer, [MODEL1], max_examples=2)


@pytest.mark.slow  # every installed architecture
@pytest.mark.parametrize("name", ["none", "l2", "dropout", "batchnorm"])
def test_builtin_regularizer_conforms(name: str) -> None:
    regularizer = build_registry().get("regularizers", name)
    check_regularizer(regularizer)


class _Layers(Regularizer):
    """Inserts whatever `make` returns at every point: a test double for misbehaving plugins."""

    name = "layers"
    description = "test double"

    def __init__(self, make) -> None:
        self.make = make

    def layers_at(self, point, params):
        return [self.make(import_keras())]


def test_undeclared_weights_are_caught() -> None:
    sneaky = _Layers(lambda keras: keras.layers.BatchNormalization())
    with pytest.raises(AssertionError, match="adds_params"):
        check_model(sneaky, MODEL1)
    check_model(sneaky, MODEL1, claims={"adds_params": True})
    sneaky.adds_params = True
    check_model(sneaky, MODEL1)


def test_undeclared_losses_are_caught() -> None:
    sneaky = _Layers(lambda keras: keras.layers.ActivityRegularization(l1=0.01))
    with pytest.raises(AssertionError, match="adds_losses"):
        check_model(sneaky, MODEL1)
    check_model(sneaky, MODEL1, claims={"adds_losses": True})


def test_random_inference_is_caught_unless_claimed() -> None:
    noisy = _Layers(lambda keras: keras.layers.Lambda(lambda t: t * keras.random.uniform((1,))))
    with pytest.raises(AssertionError, match="two inference calls differ"):
        check_model(noisy, MODEL1)
    check_model(noisy, MODEL1, claims={"stochastic_inference": True})
    with pytest.raises(AssertionError, match="unknown claims"):
        check_model(noisy, MODEL1, claims={"adds_weights": True})


def test_non_probability_outputs_are_caught() -> None:
    class Poison(Regularizer):
        name = "poison"
        description = "turns the input into NaN"

        def input_layers(self, params):
            return [import_keras().layers.Lambda(lambda t: t * math.nan)]

    with pytest.raises(AssertionError, match="NaN"):
        check_model(Poison(), MODEL1)


def test_direct_backend_use_is_caught(tmp_path, monkeypatch) -> None:
    source = """
        from regbench.plugins.regularizer import Regularizer

        class Tf(Regularizer):
            name = "tf"
            description = "uses tf directly"

            def kernel_regularizer(self, params):
                return tf.keras.regularizers.L2(0.1)  # noqa: F821 (never called)
    """
    (tmp_path / "tf_plugin_for_test.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("tf_plugin_for_test")
    try:
        with pytest.raises(AssertionError, match="line 9 uses tensorflow"):
            check_backend_neutral(module.Tf())
    finally:
        sys.modules.pop("tf_plugin_for_test")
    check_backend_neutral(build_registry().get("regularizers", "l2"))


def test_lax_bounds_are_caught() -> None:
    class Lax(Regularizer):
        name = "lax"
        description = "accepts anything"
        hparams = (HParam("rate", 0.1, 0.0, 0.9),)

        def resolve(self, overrides=None):
            return {"rate": 0.1, **(overrides or {})}

    with pytest.raises(AssertionError, match="accepted"):
        check_refuses_out_of_bounds(Lax())


def test_bad_declarations_are_caught() -> None:
    class Twice(Regularizer):
        name = "twice"
        description = "declares one name twice"
        hparams = (HParam("rate", 0.1, 0.0, 0.9), HParam("rate", 0.2, 0.0, 0.9))

    with pytest.raises(AssertionError, match="duplicate"):
        check_declaration(Twice())
    with pytest.raises(AssertionError, match="no description"):
        check_declaration(type("Bare", (Regularizer,), {"name": "bare"})())


def test_unusable_optimizer_is_caught() -> None:
    class Typo(Regularizer):
        name = "typo"
        description = "names an optimizer Keras lacks"

        def optimizer(self, params, optimizer):
            return OptimizerSpec("sgdd", dict(optimizer.kwargs))

    with pytest.raises(AssertionError, match="cannot make optimizer"):
        check_training_contract(Typo(), MODEL1, input_shape=(8, 8, 3))


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_a_plain_loss_function_is_accepted() -> None:
    class Function(Regularizer):
        name = "function"
        description = "a loss function, not a Loss object: compile takes either"

        def loss(self, params, loss):
            return import_keras().losses.sparse_categorical_crossentropy

    check_training_contract(Function(), MODEL1, input_shape=(8, 8, 3))


def test_a_dense_label_loss_is_caught() -> None:
    class Dense(Regularizer):
        name = "dense"
        description = "expects one-hot labels, but the trainer gives sparse ones"

        def loss(self, params, loss):
            return import_keras().losses.CategoricalCrossentropy()

    with pytest.raises(AssertionError, match="sparse integer labels"):
        check_training_contract(Dense(), MODEL1, input_shape=(8, 8, 3))


@pytest.mark.slow
def test_unsaveable_layer_is_caught() -> None:
    lam = _Layers(lambda keras: keras.layers.Lambda(lambda t: t))
    with pytest.raises(AssertionError, match="save and load"):
        check_training_contract(lam, MODEL1, input_shape=(8, 8, 3))


LOG = HParam("strength", 1e-3, 1e-6, 1e-1, log=True)
WHOLE = HParam("patience", 3, 1, 20, integer=True)
ZERO = HParam("rate", 0.1, 0.0, 0.9)


@settings(max_examples=50, deadline=None)
@given(values=hparam_values(type("R", (Regularizer,), {"hparams": (LOG, WHOLE, ZERO)})()))
def test_drawn_values_are_valid(values) -> None:
    for hparam in (LOG, WHOLE, ZERO):
        assert hparam.coerce(values[hparam.name]) == values[hparam.name]


@pytest.mark.parametrize("hparam", [LOG, WHOLE, ZERO], ids=lambda h: h.name)
def test_drawn_invalid_values_are_refused(hparam: HParam) -> None:
    @settings(max_examples=50, deadline=None)
    @given(value=invalid_hparam_values(hparam))
    def refused(value) -> None:
        with pytest.raises(RegbenchError):
            hparam.coerce(value)

    refused()
