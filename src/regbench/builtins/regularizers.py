"""The lab's four regularization settings: none, L2, dropout, batch normalization."""

from collections.abc import Callable
from typing import Any

from regbench.api import hookimpl
from regbench.plugins.hparams import HParam
from regbench.plugins.keras import import_keras
from regbench.plugins.points import NOISE, NORM
from regbench.plugins.regularizer import Regularizer


class NoRegularization(Regularizer):
    name = "none"
    description = "No regularization: the baseline"
    baseline = True


class L2(Regularizer):
    # 0.01 is what Keras's "l2" shorthand means, which the lab most likely used.
    name = "l2"
    description = "L2 penalty on every Conv2D/Dense kernel (default 0.01, Keras's 'l2' shorthand)"
    hparams = (HParam("strength", 0.01, 1e-6, 1e-1, log=True, help="penalty factor"),)

    def kernel_regularizer(self, params):
        return import_keras().regularizers.L2(params["strength"])


class Dropout(Regularizer):
    name = "dropout"
    description = "Dropout at the lab's [D] points (default rate 0.1, as in the lab)"
    family = NOISE
    hparams = (HParam("rate", 0.1, 0.0, 0.9, help="fraction of units dropped in training"),)

    def layers_at(self, point, params):
        return [import_keras().layers.Dropout(params["rate"])]


class BatchNorm(Regularizer):
    name = "batchnorm"
    description = "BatchNormalization at the lab's [B] points"
    family = NORM
    adds_params = True  # gamma, beta and the two moving statistics per feature

    def layers_at(self, point, params):
        return [import_keras().layers.BatchNormalization()]


@hookimpl
def register_regularizers(register: Callable[[Any], None]) -> None:
    for regularizer in (NoRegularization(), L2(), Dropout(), BatchNorm()):
        register(regularizer)
