"""An architecture: a builder that names regularization points, or a layer table compiled to one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from regbench.plugins.hparams import HParam, resolve_hparams
from regbench.plugins.points import Point
from regbench.plugins.table import LayerSpec, compile_row


@dataclass(frozen=True)
class Architecture:
    """A model: a builder `build(ctx, x) -> output`, or a layer table compiled to one.

    Give `layers` (a table read top to bottom, as in SPEC.md) or `builder` (a function of a
    build context and the input tensor that returns the classifier's output). A builder makes
    its layers through `ctx.conv` / `ctx.dense` (they carry the run's kernel regularizer),
    `ctx.point` (the regularizer's layers go there) and `ctx.classifier`, and may use any other
    Keras layer (`ctx.keras.layers...`); it runs at every build, so layers are always fresh.
    `hparams` are the architecture's own hyperparameters (depth, width), read as `ctx.hparams`.
    Override `refuse` in a subclass to turn down a regularizer with a reason. A `version`
    ("2") is recorded instead of a hash of its definition (plugins.provenance). Its cost and
    the inputs it takes are measured in `plugins.building` (`macs`, `check_input`).
    """

    name: str
    description: str
    layers: tuple[LayerSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    builder: Callable[[Any, Any], Any] | None = None
    hparams: tuple[HParam, ...] = ()
    version: str | None = None

    def __post_init__(self) -> None:
        if bool(self.layers) == (self.builder is not None):
            raise ValueError(f"architecture {self.name!r}: give either layers or builder")

    def build(self, ctx: Any, x: Any) -> Any:
        """The output tensor of the model on input `x`, layers made through `ctx`."""
        if self.builder is not None:
            return self.builder(ctx, x)
        for spec in self.layers:
            x = compile_row(ctx, spec, x)
        return x

    def refuse(self, regularizer: Any, params: Mapping[str, Any]) -> str | None:
        """A reason this architecture cannot be paired with `regularizer` (a `Regularizer`, which
        knows architectures; an architecture does not import it), or None."""
        return None

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        return resolve_hparams(self.name, self.hparams, overrides)

    @property
    def points(self) -> tuple[Point, ...]:
        """The table's points (a builder's points are known only once it has been built)."""
        return tuple(spec for spec in self.layers if isinstance(spec, Point))
