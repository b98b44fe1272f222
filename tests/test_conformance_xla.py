"""The kit's `xla` switch: a plugin that cannot compile under XLA is still testable without it.

TensorFlow's numpy_function runs Python inside the graph, which XLA cannot compile: it stands
in for any op a plugin needs that XLA lacks. (This module uses TensorFlow directly, so it
holds only this test: the kit's backend scan reads the whole tests folder.)
"""

from __future__ import annotations

import pytest

from regbench.api import Regularizer, import_keras
from regbench.builtins.architectures import MODEL1
from regbench.testing import check_training_contract

keras = import_keras()


@keras.saving.register_keras_serializable(package="regbench_tests")
class PythonIdentity(keras.layers.Layer):
    """x, plus a zero computed by Python inside the graph (gradients flow through x)."""

    def call(self, x):
        import tensorflow as tf

        zero = tf.numpy_function(lambda a: a * 0, [x], x.dtype)
        return x + tf.ensure_shape(zero, x.shape)

    def compute_output_shape(self, shape):
        return shape


class NoXla(Regularizer):
    name = "no_xla"
    description = "a layer XLA cannot compile"

    def layers_at(self, point, params):
        return [PythonIdentity()]


@pytest.mark.slow  # trains twice
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="numpy_function is TF's")
def test_xla_off_trains_what_xla_cannot_compile() -> None:
    kwargs = {"input_shape": (8, 8, 3), "fresh_process": False}
    with pytest.raises(AssertionError, match="training compiled with XLA fails"):
        check_training_contract(NoXla(), MODEL1, **kwargs)
    check_training_contract(NoXla(), MODEL1, **kwargs, xla=False)
