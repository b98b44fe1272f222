"""Keras layers of the extras' manifold mixup and ShakeDrop. Imported only when a model needs
one, or when regbench asks the plugin to register its Keras objects: this imports Keras.
keras.ops / keras.random only, so they run on every backend and compile with XLA.
"""

from __future__ import annotations

from typing import Any

from regbench.api import import_keras

keras = import_keras()
ops = keras.ops


@keras.saving.register_keras_serializable(package="regbench_extras")
class ManifoldMix(keras.layers.Layer):
    """Mixes the batch with its mirror, `lam * h + (1 - lam) * flip(h)`, when the training
    step's draw (`shared.step.manifold`: lambda and the chosen point's index, left there by the
    manifold mixup batch hook) chose this layer's `index`; otherwise passes `h` through. A
    reloaded layer has no run to share and is the identity."""

    def __init__(self, index: int = 1, shared: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index, self.shared = int(index), shared

    def call(self, h: Any, training: bool = False) -> Any:
        draw = getattr(getattr(self.shared, "step", None), "manifold", None)
        if not training or draw is None:
            return h
        lam, chosen = draw
        lam = ops.cast(lam, h.dtype)
        mixed = lam * h + (1.0 - lam) * ops.flip(h, axis=0)
        return ops.where(ops.equal(chosen, self.index), mixed, h)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="regbench_extras")
class ShakeDropAdd(keras.layers.Layer):
    """shortcut + gate * branch (Yamada et al. 2019). In training, per sample, b ~
    Bernoulli(keep), the forward gate is (b + alpha - b*alpha) / keep with alpha ~ U[-1, 1] and
    the backward gate (b + beta - b*beta) / keep with beta ~ U[0, 1]; inference adds the branch
    as it is. The paper scales the branch by its expected gate, keep, at inference instead: the
    same network with the branch's output scaled by keep; dividing in training (as inverted
    dropout and DropPath do) leaves the inference network the plain one."""

    def __init__(self, keep: float = 0.5, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep, self.seed = float(keep), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool = False) -> Any:
        shortcut, branch = inputs
        if not training:
            return shortcut + branch
        shape = (ops.shape(branch)[0],) + (1,) * (len(branch.shape) - 1)
        draws = keras.random.uniform((3, *shape), seed=self.seed_generator, dtype=branch.dtype)
        kept = ops.cast(draws[0] < self.keep, branch.dtype)
        alpha, beta = 2.0 * draws[1] - 1.0, draws[2]
        forward = (kept + alpha - kept * alpha) / self.keep
        backward = (kept + beta - kept * beta) / self.keep
        # the value of forward * branch, the gradient of backward * branch
        return shortcut + backward * branch + ops.stop_gradient((forward - backward) * branch)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "keep": self.keep, "seed": self.seed}
