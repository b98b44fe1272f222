"""The kit on soft targets and on every backend: a batch regularizer's loss hook is called as
the trainer calls it, and `check_on_backends` trains a plugin in a fresh process per backend,
catching one that keeps references to the model's variables (fine on TensorFlow, broken on
JAX)."""

from __future__ import annotations

from pathlib import Path

import pytest

from regbench.api import Regularizer, import_keras
from regbench.builtins.architectures import MODEL1
from regbench.plugins.manager import build_registry
from regbench.testing import check_effects, check_on_backends, check_training_contract
from regbench.testing.backends import import_path
from regbench.testing.training import check_hooks

TESTS = Path(__file__).resolve().parent
SHAPE = (8, 8, 3)


class SmoothedMixup(Regularizer):
    """Mixup whose loss hook smooths the crossentropy it is given: it needs target rows."""

    name = "smoothed_mixup"
    description = "mixup with a label-smoothed categorical crossentropy"

    def batch(self, images, targets, params, seed, ctx):
        ops = import_keras().ops
        return 0.5 * (images + ops.flip(images, axis=0)), 0.5 * (targets + ops.flip(targets, 0))

    def loss(self, params, loss):
        keras = import_keras()
        assert isinstance(loss, keras.losses.CategoricalCrossentropy), type(loss).__name__
        smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)

        def rows_only(targets, predictions):
            assert len(targets.shape) == 2, f"targets {targets.shape} are not rows"
            return smoothed(targets, predictions)

        return rows_only


class SparseMixup(SmoothedMixup):
    """Broken: a batch regularizer whose loss expects class ids, which it never gets."""

    name = "sparse_mixup"

    def loss(self, params, loss):
        return import_keras().losses.SparseCategoricalCrossentropy()


def _perturbing_callback():
    keras = import_keras()
    ops = keras.ops

    class Perturb(keras.callbacks.Callback):
        """SAM by callback: step up, let fit step, measure and restore what it saved."""

        def on_train_begin(self, logs=None):
            self.weights = self.model.trainable_variables  # references kept: the bug
            self.saved: list = []

        def on_train_batch_begin(self, batch, logs=None):
            self.saved = [w.value for w in self.weights]
            for w in self.weights:
                w.assign(w + 1e-3)

        def on_train_batch_end(self, batch, logs=None):
            pairs = zip(self.weights, self.saved, strict=True)
            self.moved = sum(float(ops.sum(ops.square(w.value - s))) for w, s in pairs)
            for w, s in zip(self.weights, self.saved, strict=True):
                w.assign(s)

    return Perturb()


class CapturedSam(Regularizer):
    """Broken on JAX: its callback reads and assigns the model's variables in each batch."""

    name = "captured_sam"
    description = "perturbs and restores the variables it captured at train begin"

    def callbacks(self, params):
        return [_perturbing_callback()]


def test_a_batch_regularizers_loss_gets_soft_targets() -> None:
    loss, _, _ = check_hooks(SmoothedMixup(), {}, SHAPE, 10)
    assert loss.__name__ == "rows_only"


def test_a_batch_regularizers_sparse_loss_is_caught() -> None:
    with pytest.raises(AssertionError, match="sparse_mixup: the loss fails on soft target rows"):
        check_hooks(SparseMixup(), {}, SHAPE, 10)


def test_a_batch_regularizers_loss_effect_is_judged_on_soft_targets() -> None:
    check_effects(SmoothedMixup(), MODEL1, input_shape=SHAPE)


@pytest.mark.slow  # real training
def test_a_batch_regularizer_with_a_soft_loss_trains() -> None:
    check_training_contract(SmoothedMixup(), MODEL1, input_shape=SHAPE, fresh_process=False)


def test_a_local_class_cannot_be_imported_in_a_child() -> None:
    class Local(Regularizer):
        name = "local"

    with pytest.raises(AssertionError, match="local: class .*Local cannot be imported"):
        import_path(Local())
    assert import_path(CapturedSam()).endswith(":CapturedSam")


def test_a_backend_not_installed_is_skipped_with_a_note() -> None:
    with pytest.warns(UserWarning, match="not checked on no_such_backend"):
        outcomes = check_on_backends(CapturedSam(), backends=("no_such_backend",))
    assert outcomes == {"no_such_backend": "skipped: no_such_backend is not importable"}


@pytest.mark.slow  # a fresh process per backend
def test_captured_variables_pass_on_tensorflow_and_fail_on_jax() -> None:
    pytest.importorskip("jax")
    path = "test_kit_backends:CapturedSam"
    ok = check_on_backends(path, backends=("tensorflow",), pythonpath=[TESTS])
    assert ok == {"tensorflow": "passed"}
    with pytest.raises(AssertionError, match="fails on backend jax: captured_sam on model1"):
        check_on_backends(path, backends=("jax",), pythonpath=[TESTS])


@pytest.mark.slow  # a fresh process per backend
def test_builtin_dropout_passes_on_every_backend() -> None:
    pytest.importorskip("jax")
    dropout = build_registry().get("regularizers", "dropout")
    assert check_on_backends(dropout) == {"tensorflow": "passed", "jax": "passed"}
