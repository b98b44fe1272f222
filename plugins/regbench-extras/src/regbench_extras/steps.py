"""Regularizers that change how a training step trains, on regbench's step side (`train_step`):
sharpness-aware minimization and R-Drop. Each is the paper's update on one batch, written with
keras.ops, so it runs on TensorFlow (with or without XLA), JAX and the vmapped engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.api import NOISE, HParam, Point, Regularizer, Step, import_keras


class SAM(Regularizer):
    """Sharpness-aware minimization (Foret et al. 2021): the gradient of the batch at
    w + rho * g / ||g||, g being its gradient at w, applied at w. Two passes per step (the
    second, at the perturbed weights, leaves the batch-norm statistics alone, as davda54/sam
    recommends)."""

    name = "sam"
    description = "Sharpness-aware minimization: step with the gradient at the worst nearby w"
    api_version = 2
    hparams = (HParam("rho", 0.05, 1e-3, 1.0, log=True, help="radius of the neighbourhood"),)
    adaptive = False

    def train_step(
        self, step: Step, images: Any, targets: Any, params: Mapping[str, Any], ctx: Any
    ) -> None:
        ops = import_keras().ops
        _, gradients = step.gradients(images, targets)
        weights = step.weights
        scales = [ops.abs(w) if self.adaptive else None for w in weights]
        scaled = [g if s is None else s * g for g, s in zip(gradients, scales, strict=True)]
        norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g in scaled))
        factor = params["rho"] / (norm + 1e-12)
        ascent = [g if s is None else s * g for g, s in zip(scaled, scales, strict=True)]
        perturbed = [w + factor * e for w, e in zip(weights, ascent, strict=True)]
        _, sharp = step.gradients(images, targets, weights=perturbed)
        step.apply(sharp)


class AdaptiveSAM(SAM):
    """Adaptive SAM (Kwon et al. 2021): the neighbourhood scaled per weight by |w|, so it is
    invariant to rescaling a layer (the perturbation is rho * |w|^2 g / || |w| g ||)."""

    name = "asam"
    description = "Adaptive SAM: the SAM neighbourhood scaled per weight by its magnitude"
    hparams = (HParam("rho", 0.5, 1e-2, 5.0, log=True, help="radius of the scaled neighbourhood"),)
    adaptive = True


class RDrop(Regularizer):
    """R-Drop (Liang et al. 2021): dropout at the [D] points, and each batch through the model
    twice (two dropout masks) with the mean crossentropy of both passes plus alpha times the
    symmetric KL divergence between their predictions. With dropout off the two passes agree
    and the KL term is zero. The batch keeps its size: two passes per step."""

    name = "rdrop"
    description = "R-Drop: dropout, two passes per batch, KL between their predictions"
    family = NOISE
    api_version = 2
    hparams = (
        HParam("rate", 0.1, 0.0, 0.9, help="dropout rate at the [D] points"),
        HParam("alpha", 1.0, 0.0, 10.0, help="weight of the symmetric KL term"),
    )

    def layers_at(self, point: Point, params: Mapping[str, Any]) -> list:
        return [import_keras().layers.Dropout(params["rate"])]

    def train_step(
        self, step: Step, images: Any, targets: Any, params: Mapping[str, Any], ctx: Any
    ) -> None:
        def objective(forward: Any, x: Any, y: Any) -> Any:
            first, second = forward(x), forward(x)
            crossentropy = 0.5 * (step.loss(y, first) + step.loss(y, second))
            return crossentropy + params["alpha"] * symmetric_kl(first, second)

        _, gradients = step.gradients(images, targets, objective=objective)
        step.apply(gradients)


def symmetric_kl(p: Any, q: Any) -> Any:
    """(KL(p || q) + KL(q || p)) / 2 between rows of probabilities, averaged over the batch."""
    ops = import_keras().ops
    p, q = ops.clip(p, 1e-7, 1.0), ops.clip(q, 1e-7, 1.0)
    return 0.5 * ops.mean(ops.sum((p - q) * (ops.log(p) - ops.log(q)), axis=-1))


STEP_REGULARIZERS = (SAM, AdaptiveSAM, RDrop)
