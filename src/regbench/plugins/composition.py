"""Regularizers combined (`dropout+batchnorm`): each acts on its own side of the seam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from regbench.errors import CompositionConflict, RegbenchError
from regbench.plugins.context import invoke
from regbench.plugins.hparams import resolve_hparams
from regbench.plugins.points import ANY, Point
from regbench.plugins.regularizer import OptimizerSpec, Regularizer, overrides

if TYPE_CHECKING:
    from regbench.plugins.architecture import Architecture

EXCLUSIVE_HOOKS = {  # two components may not both do these: which one would win is arbitrary
    "loss": "replace the loss",
    "batch": "rewrite training batches",
    "kernel_regularizer": "set the kernel regularizer",
    "merge_at": "merge residual branches",
    "wrap_layer": "wrap the model's layers",
    "train_step": "train with their own step",
    "average": "choose the weights the run ends with",
}


class Composite(Regularizer):
    """Several regularizers at once (`dropout+batchnorm`): each acts on its own side of the
    seam. Hyperparameters are addressed per component, `dropout.rate`."""

    family = ANY

    def __init__(self, components: Sequence[Regularizer]) -> None:
        names = [c.name for c in components]
        if len(components) < 2 or len(set(names)) != len(names):
            raise RegbenchError(f"a combination needs distinct regularizers; got {'+'.join(names)}")
        for hook, what in EXCLUSIVE_HOOKS.items():
            both = [c.name for c in components if overrides(c, hook)]
            if len(both) > 1:
                raise CompositionConflict(
                    f"cannot combine {' and '.join(both)}: both {what}; choose one of them"
                )
        self.components = tuple(components)
        self.name = "+".join(names)
        self.description = "Together: " + "; ".join(c.description for c in components)
        self.hparams = tuple(
            replace(h, name=f"{c.name}.{h.name}") for c in components for h in c.hparams
        )
        self.adds_params = any(c.adds_params for c in components)
        self.adds_losses = any(c.adds_losses for c in components)
        self.stochastic_inference = any(c.stochastic_inference for c in components)

    def own(self, component: Regularizer, params: Mapping[str, Any]) -> dict[str, Any]:
        prefix = f"{component.name}."
        return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}

    def layers_at(self, point: Point, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return [
            layer
            for c in self.components
            if point.accepts(c.family)
            for layer in invoke(c.layers_at, point, self.own(c, params), ctx=ctx)
        ]

    def merge_at(self, point: Point, params: Mapping[str, Any], ctx: Any = None) -> Any:
        """The merge of the one component that has one (composition allows at most one)."""
        for c in self.components:
            if overrides(c, "merge_at") and point.accepts(c.family):
                return invoke(c.merge_at, point, self.own(c, params), ctx=ctx)
        return None

    def wrap_layer(self, layer: Any, kind: str, params: Mapping[str, Any], ctx: Any = None) -> Any:
        """The wrap of the one component that has one (composition allows at most one)."""
        for c in self.components:
            if overrides(c, "wrap_layer"):
                return invoke(c.wrap_layer, layer, kind, self.own(c, params), ctx=ctx)
        return layer

    def kernel_regularizer(self, params: Mapping[str, Any], ctx: Any = None) -> Any:
        for c in self.components:
            found = invoke(c.kernel_regularizer, self.own(c, params), ctx=ctx)
            if found is not None:
                return found
        return None

    def input_layers(self, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return [
            layer
            for c in self.components
            for layer in invoke(c.input_layers, self.own(c, params), ctx=ctx)
        ]

    def batch(
        self, images: Any, targets: Any, params: Mapping[str, Any], seed: Any, ctx: Any
    ) -> tuple[Any, Any]:
        for c in self.components:
            if c.uses_batches:
                return c.batch(images, targets, self.own(c, params), seed, ctx)
        return images, targets

    @property
    def uses_batches(self) -> bool:
        return any(c.uses_batches for c in self.components)

    def loss(self, params: Mapping[str, Any], loss: Any, ctx: Any = None) -> Any:
        for c in self.components:
            loss = invoke(c.loss, self.own(c, params), loss, ctx=ctx)
        return loss

    def optimizer(
        self, params: Mapping[str, Any], optimizer: OptimizerSpec, ctx: Any = None
    ) -> OptimizerSpec:
        for c in self.components:
            optimizer = invoke(c.optimizer, self.own(c, params), optimizer, ctx=ctx)
        return optimizer

    def train_step(
        self, step: Any, images: Any, targets: Any, params: Mapping[str, Any], ctx: Any
    ) -> None:
        """The step of the one component that has one (composition allows at most one)."""
        for c in self.components:
            if c.uses_steps:
                invoke(c.train_step, step, images, targets, self.own(c, params), ctx=ctx)
                return
        super().train_step(step, images, targets, params, ctx)

    @property
    def uses_steps(self) -> bool:
        return any(c.uses_steps for c in self.components)

    def average(self, params: Mapping[str, Any], ctx: Any = None) -> Any:
        """The weight average of the one component that has one (at most one may)."""
        for c in self.components:
            found = invoke(c.average, self.own(c, params), ctx=ctx)
            if found is not None:
                return found
        return None

    def callbacks(self, params: Mapping[str, Any], ctx: Any = None) -> list[Any]:
        return [
            cb for c in self.components for cb in invoke(c.callbacks, self.own(c, params), ctx=ctx)
        ]

    def refuse(self, architecture: Architecture, params: Mapping[str, Any]) -> str | None:
        for c in self.components:
            reason = c.refuse(architecture, self.own(c, params))
            if reason:
                return reason
        return None

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Keys are `component.name`; a bare name is taken when exactly one component has it."""
        full: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if "." not in key:
                owners = [c.name for c in self.components if any(h.name == key for h in c.hparams)]
                if len(owners) == 1:
                    key = f"{owners[0]}.{key}"
            full[key] = value
        return resolve_hparams(self.name, self.hparams, full)
