"""Which protocol each run was trained under, so that runs of different protocols are never
pooled, ranked together or compared as if they were alike (leaderboard, stats, compare, exports).

A protocol is the values of `design.plan.PROTOCOL_COLUMNS` a run row holds. Rows from before a
column existed hold nothing there, which means that column's default (a constant learning rate,
no optimizer options, ...), so a missing value and its default are one protocol.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from regbench.design.plan import PROTOCOL_COLUMNS

# what a missing value meant when the row was written (learning_rate: the optimizer's default)
DEFAULTS = {
    "dataset_options": "{}",
    "optimizer": "sgd",
    "learning_rate": "default",
    "optimizer_options": "{}",
    "lr_schedule": "constant",
    "precision": "float32",
    "engine": "standard",
    "backend": "tensorflow",  # store migration m008 fills it in; a CSV from before may lack it
    "split_scheme": "unnamed",  # runs trained before the datasets named their split
}
JSON_COLUMNS = ("dataset_options", "optimizer_options")


def columns(frame: pd.DataFrame) -> list[str]:
    """The protocol columns `frame` holds (a frame without one is taken to share it)."""
    return [c for c in PROTOCOL_COLUMNS if c in frame]


def text(column: str, value: Any) -> str:
    """One protocol value as text: the same for equal protocols whatever their row's age."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return DEFAULTS.get(column, "-")
    if column in JSON_COLUMNS and isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def values(frame: pd.DataFrame, present: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Each row's protocol as {column: text}, over `present` (default: `columns(frame)`)."""
    present = columns(frame) if present is None else present
    rows = frame[list(present)].itertuples(index=False, name=None)
    return [{c: text(c, v) for c, v in zip(present, row, strict=True)} for row in rows]


def key(protocol: Mapping[str, str]) -> tuple[str, ...]:
    """A protocol as a hashable key (the column order of PROTOCOL_COLUMNS)."""
    return tuple(protocol[c] for c in PROTOCOL_COLUMNS if c in protocol)


def differing(protocols: Iterable[Mapping[str, str]]) -> list[str]:
    """The columns on which some of `protocols` differ, in PROTOCOL_COLUMNS order."""
    seen: dict[str, set[str]] = {}
    for protocol in protocols:
        for column, value in protocol.items():
            seen.setdefault(column, set()).add(value)
    return [c for c in PROTOCOL_COLUMNS if len(seen.get(c, ())) > 1]


def label(
    protocol: Mapping[str, str], shown: Sequence[str], always: Sequence[str] = ("epochs",)
) -> str:
    """`epochs=10, lr_schedule=cosine`: the `always` columns (when known), then the `shown`
    columns, those that tell this protocol from the others beside it."""
    names = [c for c in PROTOCOL_COLUMNS if c in protocol and (c in always or c in shown)]
    return ", ".join(f"{c}={protocol[c]}" for c in names)
