"""How results read as text: the formatting shared by the leaderboard, compare, the report and
its figures (one definition of "missing", of a mean with its interval, of a values label)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

MISSING = "–"  # what a table shows for a figure that does not exist


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a figure that does not exist."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def fmt(value: Any, spec: str) -> str:
    """`value` in `spec`, "-" when missing; a value that rounds to zero never shows "-0"."""
    if missing(value):
        return "-"
    text = format(float(value), spec)
    return format(0.0, spec) if float(text.replace(",", "")) == 0 else text


def mean_and_ci(mean: float, ci: float | None, sign: str = "") -> str:
    """`0.620 ± 0.050`; one seed has no interval, so only the mean shows."""
    text = fmt(mean, f"{sign}.3f")
    return text if missing(ci) else f"{text} ± {ci:.3f}"


def params_label(params: Any) -> str:
    """Hyperparameter values as `name=value, ...` (a dict or its JSON), sorted by name."""
    if isinstance(params, str):
        params = json.loads(params or "{}")
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted((params or {}).items())
    )


def number(value: Any) -> float | None:
    """A float, or None for a missing figure."""
    return None if missing(value) else float(value)


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and pandas' NA become null, numpy scalars Python numbers."""
    if missing(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
