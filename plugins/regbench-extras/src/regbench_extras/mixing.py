"""Manifold mixup and ShakeDrop: regularizers whose layers act together with the rest of the
run. Manifold mixup's batch hook and its layers share one draw per step through the run's
state (`ctx.state.step`); ShakeDrop is a merge layer at the residual merges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.api import (
    BRANCH,
    NOISE,
    HParam,
    Point,
    Regularizer,
    RunContext,
    import_keras,
    random_beta,
)


class ManifoldMixup(Regularizer):
    """Manifold mixup (Verma et al. 2019): each training step draws lambda ~ Beta(alpha,
    alpha) and one mixing point uniformly among the input and the architecture's [D] points;
    the hidden state there is mixed with the batch's mirror, and the one-hot targets with the
    same lambda. The batch hook draws; the layer at the chosen point mixes, in the same step."""

    name = "manifold_mixup"
    description = "Mix hidden states and targets at a random [D] point (or the input)"
    family = NOISE
    api_version = 2
    hparams = (HParam("alpha", 2.0, 0.05, 4.0, log=True, help="Beta concentration"),)

    def layers_at(self, point: Point, params: Mapping[str, Any], ctx: RunContext) -> list:
        from regbench_extras.mixing_layers import ManifoldMix

        index = getattr(ctx.state, "manifold_points", 0) + 1
        ctx.state.manifold_points = index
        return [ManifoldMix(index, ctx.state)]

    def batch(
        self, images: Any, targets: Any, params: Mapping[str, Any], seed: Any, ctx: RunContext
    ) -> tuple[Any, Any]:
        keras = import_keras()
        ops = keras.ops
        lam = random_beta((), params["alpha"], params["alpha"], seed)
        points = getattr(ctx.state, "manifold_points", 0)
        chosen = keras.random.randint((), 0, points + 1, seed=seed)  # 0: the input itself
        ctx.state.step.manifold = (lam, chosen)
        at_input = lam * images + (1.0 - lam) * ops.flip(images, axis=0)
        images = ops.where(ops.equal(chosen, 0), at_input, images)
        return images, lam * targets + (1.0 - lam) * ops.flip(targets, axis=0)


class ShakeDrop(Regularizer):
    """ShakeDrop (Yamada et al. 2019) at residual merges: block l of L keeps its branch with
    probability 1 - (l/L) * rate (the paper's linear rule, rate 0.5 at the last block); a dropped
    branch is scaled by alpha ~ U[-1, 1] forward and beta ~ U[0, 1] backward. The gates are
    divided by the keep probability in training, so that inference is the plain network."""

    name = "shakedrop"
    description = "ShakeDrop at residual merges: branches shaken, deeper ones more often"
    family = BRANCH
    api_version = 2
    hparams = (HParam("rate", 0.5, 0.0, 0.9, help="drop probability of the last block"),)

    def merge_at(self, point: Point, params: Mapping[str, Any]) -> Any:
        from regbench_extras.mixing_layers import ShakeDropAdd

        block, blocks = point.meta.get("block"), point.meta.get("blocks")
        if not block or not blocks:
            return None
        return ShakeDropAdd(1.0 - params["rate"] * block / blocks)


MIXING_REGULARIZERS = (ManifoldMixup, ShakeDrop)
