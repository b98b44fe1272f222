"""How results read as text: the formatting shared by the leaderboard, compare, the report and
its figures (one definition of "missing", of a mean with its interval, of a values label)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

MISSING = "–"  # what a table shows for a figure that does not exist
DECIMALS = 3  # a mean and its interval print with this many decimals; equal there, tied


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a figure that does not exist."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


_is_missing = missing  # `fmt`'s keyword `missing` hides the function inside it


def fmt(value: Any, spec: str, missing: str = "-") -> str:
    """`value` in `spec`, `missing` when it does not exist (a table passes MISSING); a value
    that rounds to zero never shows "-0"."""
    if _is_missing(value):
        return missing
    text = format(float(value), spec)
    return format(0.0, spec) if float(text.replace(",", "")) == 0 else text


ACCURACY = (0.0, 1.0)  # where a mean accuracy, and so its interval, can lie
DIFFERENCE = (-1.0, 1.0)  # ... a difference of two accuracies


def mean_and_ci(
    mean: float, ci: float | None, sign: str = "", bounds: tuple[float, float] = ACCURACY
) -> str:
    """`0.620 ± 0.050`; one seed has no interval, so only the mean shows. An interval that
    runs past what the figure can be (two seeds' t interval, `0.595 ± 2.175` on an accuracy)
    is shown as its part within `bounds`: `0.595 [0.000, 1.000]`."""
    text = fmt(mean, f"{sign}.{DECIMALS}f")
    if ci is None or missing(ci):
        return text
    low, high = bounds
    if missing(mean) or low <= mean - ci and mean + ci <= high:
        return f"{text} ± {ci:.{DECIMALS}f}"
    spec = f"{sign}.{DECIMALS}f"
    return f"{text} [{max(low, mean - ci):{spec}}, {min(high, mean + ci):{spec}}]"


def as_printed(value: Any) -> float:
    """A mean as `mean_and_ci` prints it (-inf when missing): figures equal here are equal
    to a reader, so they share a rank."""
    return -math.inf if missing(value) else float(format(float(value), f".{DECIMALS}f"))


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
    """Plain JSON values: NaN, infinities and pandas' NA become null (JSON has none of them),
    numpy scalars Python numbers."""
    if missing(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
