"""Hyperparameters: what a regularizer or architecture can be tuned on, and their checking."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regbench.errors import RegbenchError


@dataclass(frozen=True)
class HParam:
    """A tunable hyperparameter of a regularizer: its default, bounds and search scale."""

    name: str
    default: float
    low: float
    high: float
    log: bool = False
    integer: bool = False
    help: str = ""

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(
                f"{self.name}: default {self.default} outside [{self.low}, {self.high}]"
            )
        if self.log and self.low <= 0:
            raise ValueError(
                f"{self.name}: a log-scale hyperparameter needs a positive lower bound"
            )

    def coerce(self, value: Any, owner: str = "") -> float | int:
        """Parse and bound-check one value; refuse anything outside [low, high]."""
        label = f"{owner}.{self.name}" if owner else self.name
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RegbenchError(f"{label}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise RegbenchError(f"{label}={value!r} is not a finite number")
        if self.integer:
            if number != int(number):
                raise RegbenchError(f"{label}={value!r} must be a whole number")
            number = int(number)
        if not self.low <= number <= self.high:
            raise RegbenchError(
                f"{label}={value} is outside its bounds [{self.low:g}, {self.high:g}]"
            )
        return number


def resolve_hparams(
    owner: str, hparams: Sequence[HParam], overrides: Mapping[str, Any] | None
) -> dict[str, float | int]:
    """Defaults overlaid with `overrides`, every value checked against its bounds."""
    known = {h.name: h for h in hparams}
    values: dict[str, float | int] = {h.name: h.default for h in hparams}
    for key, value in (overrides or {}).items():
        if key not in known:
            valid = ", ".join(known) or "none"
            raise RegbenchError(f"{owner!r} has no hyperparameter {key!r} (it has: {valid})")
        values[key] = known[key].coerce(value, owner)
    return values
