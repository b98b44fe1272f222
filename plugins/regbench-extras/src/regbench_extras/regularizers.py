"""Eight regularizers, one per side of regbench's seam: layers at points, kernels, the loss,
the input data, the optimizer and the training callbacks.

Keras is imported inside the methods only, so `regbench list` stays fast. Everything is
keras.layers / keras.ops / keras.regularizers, so it runs on any Keras backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.api import NOISE, HParam, OptimizerSpec, Point, Regularizer, import_keras


class SpatialDropout(Regularizer):
    """Drops whole feature maps. At vector points it inserts nothing: a vector has no channels to
    drop together, and plain dropout there is the `dropout` regularizer's job, so comparing the
    two isolates what dropping channels instead of units does."""

    name = "spatial_dropout"
    description = "SpatialDropout2D (whole channels) at maps points; nothing at vector points"
    family = NOISE
    hparams = (HParam("rate", 0.1, 0.0, 0.9, help="fraction of channels dropped in training"),)

    def layers_at(self, point: Point, params: Mapping[str, Any]) -> list:
        if point.kind != "maps":
            return []
        return [import_keras().layers.SpatialDropout2D(params["rate"])]


class GaussianNoise(Regularizer):
    name = "gaussian_noise"
    description = "Additive Gaussian noise at every [D] point, maps and vectors, training only"
    family = NOISE
    hparams = (HParam("stddev", 0.1, 1e-3, 1.0, log=True, help="standard deviation of the noise"),)

    def layers_at(self, point: Point, params: Mapping[str, Any]) -> list:
        return [import_keras().layers.GaussianNoise(params["stddev"])]


class L1(Regularizer):
    # 1e-4, not Keras's 'l1' shorthand of 0.01: the L1 norm of a million small weights is ~100
    # times their squared norm, so 0.01 would swamp the crossentropy.
    name = "l1"
    description = "L1 penalty on every Conv2D/Dense kernel (sparse weights; default 1e-4)"
    hparams = (HParam("strength", 1e-4, 1e-7, 1e-1, log=True, help="penalty factor"),)

    def kernel_regularizer(self, params: Mapping[str, Any]) -> Any:
        return import_keras().regularizers.L1(params["strength"])


class L1L2(Regularizer):
    name = "l1l2"
    description = "L1 and L2 penalties on every Conv2D/Dense kernel (elastic net)"
    hparams = (
        HParam("l1", 1e-4, 1e-7, 1e-1, log=True, help="L1 penalty factor"),
        HParam("l2", 1e-2, 1e-6, 1e-1, log=True, help="L2 penalty factor (as the l2 built-in)"),
    )

    def kernel_regularizer(self, params: Mapping[str, Any]) -> Any:
        return import_keras().regularizers.L1L2(l1=params["l1"], l2=params["l2"])


class LabelSmoothing(Regularizer):
    name = "label_smoothing"
    description = "Crossentropy against smoothed targets: (1-s) one-hot + s/classes"
    hparams = (HParam("smoothing", 0.1, 0.0, 0.5, help="probability mass spread over all classes"),)

    def loss(self, params: Mapping[str, Any], loss: Any) -> Any:
        from regbench_extras.losses import SparseLabelSmoothing  # imports Keras: only when run

        return SparseLabelSmoothing(params["smoothing"])


class Augment(Regularizer):
    """Keras's random preprocessing layers act only when training=True, so evaluation and
    prediction see the images unchanged."""

    name = "augment"
    description = "Random horizontal flip and translation of the input images, in training only"
    hparams = (
        HParam("translation", 0.1, 0.0, 0.3, help="largest shift, as a fraction of the size"),
    )

    def input_layers(self, params: Mapping[str, Any]) -> list:
        layers = import_keras().layers
        shift = params["translation"]
        return [layers.RandomFlip("horizontal"), layers.RandomTranslation(shift, shift)]


class WeightDecay(Regularizer):
    """Decoupled weight decay (every Keras 3 optimizer takes `weight_decay`), which unlike an L2
    loss term does not interact with adaptive learning rates."""

    name = "weight_decay"
    description = "Decoupled weight decay in the optimizer (default 5e-4, common for CIFAR)"
    hparams = (
        HParam("decay", 5e-4, 1e-6, 1e-1, log=True, help="fraction of each weight removed/step"),
    )

    def optimizer(self, params: Mapping[str, Any], optimizer: OptimizerSpec) -> OptimizerSpec:
        return optimizer.with_kwargs(weight_decay=params["decay"])


class EarlyStopping(Regularizer):
    """Stops when val_loss has not improved for `patience` epochs and restores the best epoch's
    weights, so the run ends with the model early stopping chose."""

    name = "early_stopping"
    description = "Stop training when val_loss stops improving; keep the best epoch's weights"
    hparams = (
        HParam("patience", 3, 1, 20, integer=True, help="epochs without improvement to allow"),
    )

    def callbacks(self, params: Mapping[str, Any]) -> list:
        return [
            import_keras().callbacks.EarlyStopping(
                monitor="val_loss", patience=int(params["patience"]), restore_best_weights=True
            )
        ]


REGULARIZERS = (
    SpatialDropout,
    GaussianNoise,
    L1,
    L1L2,
    LabelSmoothing,
    Augment,
    WeightDecay,
    EarlyStopping,
)
