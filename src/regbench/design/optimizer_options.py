"""A protocol's optimizer settings as data: the learning-rate schedules and Keras optimizer options
a protocol may name, typed and checked, and the spelling a run's identity records. No Keras here;
`engine.optimizers` makes the optimizer from them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from regbench.design.choices import LR_SCHEDULES
from regbench.errors import RegbenchError

OPTIMIZER_OPTIONS = {  # Keras optimizer arguments a protocol may set, and their types
    "momentum": float,
    "nesterov": bool,
    "beta_1": float,
    "beta_2": float,
    "epsilon": float,
    "rho": float,
    "amsgrad": bool,
    "centered": bool,
    "weight_decay": float,
    "clipnorm": float,
    "clipvalue": float,
    "global_clipnorm": float,
    "use_ema": bool,
    "ema_momentum": float,
}


def parse_optimizer_options(options: Mapping[str, Any]) -> dict[str, float | bool]:
    """`--optimizer-option KEY=VALUE` values (strings from the CLI, or TOML values) typed and
    checked; one clear error for an unknown key or a value of the wrong kind."""
    out: dict[str, float | bool] = {}
    for key, raw in options.items():
        kind = OPTIMIZER_OPTIONS.get(key)
        if kind is None:
            raise RegbenchError(
                f"unknown optimizer option {key!r}; choose from: {', '.join(OPTIMIZER_OPTIONS)}"
            )
        if kind is bool:
            text = str(raw).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise RegbenchError(f"optimizer option {key}={raw!r} must be true or false")
            out[key] = text in ("true", "1", "yes")
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise RegbenchError(f"optimizer option {key}={raw!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise RegbenchError(f"optimizer option {key}={raw!r} must be a finite number >= 0")
        out[key] = number
    return out


_EVERY = {"use_ema": False, "ema_momentum": 0.99}  # Keras's defaults shared by every optimizer
_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
# Keras's default of each option each optimizer takes (those whose default is a value, not None:
# clipnorm=0 or weight_decay=0 is not what leaving them unset does); tests check it against Keras
KERAS_OPTIMIZER_DEFAULTS: dict[str, dict[str, float | bool]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, **_EVERY},
    "adam": {**_ADAM, "amsgrad": False, **_EVERY},
    "adamw": {"weight_decay": 0.004, **_ADAM, "amsgrad": False, **_EVERY},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False, **_EVERY},
    "nadam": {**_ADAM, **_EVERY},
    "adagrad": {"epsilon": 1e-7, **_EVERY},
}


def canonical_optimizer_options(optimizer: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as a run's identity records them: typed (`parse_optimizer_options`), those
    equal to `optimizer`'s Keras default left out (giving Keras's `momentum=0` trains what
    giving nothing does), sorted by name."""
    defaults = KERAS_OPTIMIZER_DEFAULTS.get(optimizer, {})
    parsed = parse_optimizer_options(options)
    return {k: v for k, v in sorted(parsed.items()) if k not in defaults or defaults[k] != v}


def check_schedule(name: str) -> None:
    if name not in LR_SCHEDULES:
        raise RegbenchError(
            f"unknown learning-rate schedule {name!r}; choose from: {', '.join(LR_SCHEDULES)}"
        )
