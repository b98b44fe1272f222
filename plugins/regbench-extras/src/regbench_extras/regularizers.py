"""Regularizers on every side of regbench's seam: layers at points, kernels, the loss, the
input data, training batches, the optimizer and the training callbacks.

Keras is imported inside the methods only, so `regbench list` stays fast. Everything is
keras.layers / keras.ops / keras.regularizers, so it runs on any Keras backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.api import (
    BRANCH,
    NOISE,
    HParam,
    OptimizerSpec,
    Point,
    Regularizer,
    RunContext,
    import_keras,
    random_beta,
)


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
    api_version = 2  # its optimizer hook takes the learning rate as the protocol's schedule
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


def _mix(images: Any, targets: Any, lam: Any) -> tuple[Any, Any]:
    """Each sample blended with the batch's mirror image (sample i with n-1-i, as timm does:
    the pipeline has shuffled the batch already)."""
    ops = import_keras().ops
    lam_images = ops.cast(lam, images.dtype)
    lam_targets = ops.cast(lam, targets.dtype)
    mixed = lam_images * images + (1.0 - lam_images) * ops.flip(images, axis=0)
    return mixed, lam_targets * targets + (1.0 - lam_targets) * ops.flip(targets, axis=0)


class Mixup(Regularizer):
    """Mixup (Zhang et al. 2018): trains on convex combinations of pairs of images and of their
    one-hot targets, one lambda ~ Beta(alpha, alpha) per batch."""

    name = "mixup"
    description = "Train on blends of image pairs and their labels (lambda ~ Beta(alpha, alpha))"
    hparams = (HParam("alpha", 1.0, 0.05, 2.0, log=True, help="Beta concentration"),)

    def batch(self, images, targets, params, seed, ctx: RunContext):
        lam = random_beta((), params["alpha"], params["alpha"], seed)
        return _mix(images, targets, lam)


class CutMix(Regularizer):
    """CutMix (Yun et al. 2019): pastes a box from the mirrored sample into each image; the
    targets mix in proportion to the area actually pasted. One box per batch."""

    name = "cutmix"
    description = "Paste a random box from another image; mix labels by the box's area"
    hparams = (HParam("alpha", 1.0, 0.05, 2.0, log=True, help="Beta concentration"),)

    def batch(self, images, targets, params, seed, ctx: RunContext):
        keras = import_keras()
        ops = keras.ops
        height, width = images.shape[1], images.shape[2]
        lam = random_beta((), params["alpha"], params["alpha"], seed)
        cut = ops.sqrt(1.0 - lam)
        centre = keras.random.uniform((2,), seed=seed) * ops.array([height, width], "float32")
        half_h, half_w = cut * height / 2.0, cut * width / 2.0
        top = ops.clip(ops.round(centre[0] - half_h), 0, height)
        bottom = ops.clip(ops.round(centre[0] + half_h), 0, height)
        left = ops.clip(ops.round(centre[1] - half_w), 0, width)
        right = ops.clip(ops.round(centre[1] + half_w), 0, width)
        rows = ops.cast(ops.arange(height), "float32")
        cols = ops.cast(ops.arange(width), "float32")
        inside_rows = ops.logical_and(rows >= top, rows < bottom)
        inside_cols = ops.logical_and(cols >= left, cols < right)
        box = ops.logical_and(inside_rows[:, None], inside_cols[None, :])[None, :, :, None]
        pasted = ops.where(box, ops.flip(images, axis=0), images)
        kept = 1.0 - (bottom - top) * (right - left) / (height * width)
        lam_targets = ops.cast(kept, targets.dtype)
        mixed = lam_targets * targets + (1.0 - lam_targets) * ops.flip(targets, axis=0)
        return pasted, mixed


class Cutout(Regularizer):
    name = "cutout"
    description = "Zero one random square of each training image (default half the side)"
    hparams = (HParam("size", 0.5, 0.05, 1.0, help="side of the square, fraction of the image"),)

    def input_layers(self, params, ctx: RunContext):
        from regbench_extras.layers import Cutout as CutoutLayer  # imports Keras: only at build

        return [CutoutLayer(params["size"])]


class DropBlock(Regularizer):
    """DropBlock at feature-map points. `rate` is the share of units dropped, overlapping
    blocks counted (the paper's gamma, which ignores them, drops as little as 0.7 of it). It
    ramps linearly from 0 over the run, as the paper recommends: each layer counts the run's
    training steps itself."""

    name = "dropblock"
    description = "Drop contiguous blocks of feature maps; rate ramps from 0 over the run"
    family = NOISE
    hparams = (
        HParam("rate", 0.1, 0.0, 0.5, help="fraction of units dropped at the end of training"),
        HParam("block_size", 3, 1, 9, integer=True, help="side of a dropped square"),
    )

    def layers_at(self, point: Point, params: Mapping[str, Any], ctx: RunContext) -> list:
        if point.kind != "maps":
            return []
        from regbench_extras.layers import DropBlock as DropBlockLayer

        progress = ctx.progress.fresh() if ctx.progress is not None else None  # one per layer
        return [DropBlockLayer(params["rate"], int(params["block_size"]), progress=progress)]


class StochasticDepth(Regularizer):
    """Stochastic depth on residual branches (`branch` points): block l of L is dropped with
    probability l/L * rate (the linear decay rule). Architectures without residual branches
    get nothing, so those cells are skipped."""

    name = "stochastic_depth"
    description = "Drop residual branches per sample, deeper blocks more often (l/L * rate)"
    family = BRANCH
    hparams = (HParam("rate", 0.5, 0.0, 0.9, help="drop probability of the last block"),)

    def layers_at(self, point: Point, params: Mapping[str, Any], ctx: RunContext) -> list:
        block, blocks = point.meta.get("block"), point.meta.get("blocks")
        if point.meta.get("role") != "branch" or not block or not blocks:
            return []
        from regbench_extras.layers import DropPath

        return [DropPath(params["rate"] * block / blocks)]


class SpectralNorm(Regularizer):
    """Spectral normalization (Miyato et al. 2018) of every conv and hidden dense kernel:
    each runs divided by its largest singular value (one power iteration a step), which bounds
    the layer's Lipschitz constant by 1. The classifier is left plain, so that the logits keep
    the scale the softmax needs (normalizing it too caps every logit's spread)."""

    name = "spectral_norm"
    description = "Divide each conv/dense kernel by its spectral norm (power iteration)"
    adds_params = True  # the power iteration's vector u per wrapped layer (not trained)
    hparams = (
        HParam("power_iterations", 1, 1, 5, integer=True, help="power-iteration steps a step"),
    )

    def wrap_layer(self, layer: Any, kind: str, params: Mapping[str, Any]) -> Any:
        if kind == "classifier":
            return layer
        from regbench_extras.layers import SpectralNormalized

        return SpectralNormalized(layer, power_iterations=int(params["power_iterations"]))


REGULARIZERS = (
    SpatialDropout,
    GaussianNoise,
    L1,
    L1L2,
    LabelSmoothing,
    Augment,
    WeightDecay,
    EarlyStopping,
    Mixup,
    CutMix,
    Cutout,
    DropBlock,
    SpectralNorm,
    StochasticDepth,
)
