"""Run identity as `engine.plan.RunSpec` computed it at IDENTITY_VERSION 3: frozen for m002.

A copy of `RunSpec.from_row`, `RunSpec.identity`, `config_hash` and `cell_hash` as they stood
when migration m002 shipped (execution options out of the identity; optimizer options, the
learning-rate schedule and plugin provenance in it, the first two only when not the default).
Never edit it: a later identity goes into a new frozen module, used by a new migration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

PROVENANCE = ("arch_source", "reg_source", "arch_source_hash", "reg_source_hash")


def identity(row: Mapping[str, Any]) -> dict[str, Any]:
    """The identity dict of the run a stored row describes.

    Raises KeyError, TypeError or ValueError for a row too damaged to rebuild (checked in
    `RunSpec.from_row`'s order, as m002 first met them).
    """
    fields = _parsed(row)
    protocol = dict(fields["protocol"])
    protocol["dataset_options"] = dict(sorted(protocol["dataset_options"].items()))
    target = protocol["target"]
    protocol["target"] = list(target) if target else None
    for key, default in (("optimizer_options", {}), ("lr_schedule", "constant")):
        if protocol[key] == default:  # the defaults leave earlier identities unchanged
            del protocol[key]
        elif key == "optimizer_options":
            protocol[key] = dict(sorted(protocol[key].items()))
    return {
        "arch": fields["arch"],
        "reg": fields["reg"],
        "params": dict(sorted(fields["params"].items())),
        "seed": fields["seed"],
        "stage": fields["stage"],
        "protocol": protocol,
        "provenance": dict(sorted(fields["provenance"].items())),
    }


def _parsed(row: Mapping[str, Any]) -> dict[str, Any]:
    """`RunSpec.from_row`: a stored row's fields, decoded and typed (rows of every version)."""

    def value(key: str, default: Any = None) -> Any:
        item = row.get(key)
        return default if item is None or item != item else item  # None or NaN

    def decoded(key: str) -> Any:
        item = value(key, {})
        return json.loads(item) if isinstance(item, str) else dict(item)

    def decoded_list(key: str) -> list[Any]:
        item = value(key, [])
        return json.loads(item) if isinstance(item, str) else list(item)

    target = value("target")
    metric, _, goal = target.partition(">=") if isinstance(target, str) else ("", "", "")
    rate = value("learning_rate")
    fields = {
        "arch": str(row["arch"]),
        "reg": str(row["reg"]),
        "params": decoded("params"),
        "seed": int(row["seed"]),
        "stage": str(value("stage", "grid")),
        "tuned": tuple(decoded_list("tuned")),
        "protocol": {
            "dataset": str(row["dataset"]),
            "dataset_options": decoded("dataset_options"),
            "epochs": int(row["epochs"]),
            "batch_size": int(row["batch_size"]),
            "optimizer": str(value("optimizer", "sgd")),
            "learning_rate": None if rate is None else float(rate),
            "target": (metric, float(goal)) if metric else None,
            "precision": str(value("precision", "float32")),
            "optimizer_options": decoded("optimizer_options"),
            "lr_schedule": str(value("lr_schedule", "constant")),
        },
        "provenance": {key: str(value(key)) for key in PROVENANCE if value(key) is not None},
    }
    int(value("steps_per_execution", 1))  # from_row parsed it too: a damaged one skips the row
    return fields


def config_hash(row: Mapping[str, Any]) -> str:
    """Identity of the result: same hash, same run."""
    return _digest(identity(row))


def cell_hash(row: Mapping[str, Any]) -> str:
    """Identity of the cell across seeds."""
    return _digest({k: v for k, v in identity(row).items() if k != "seed"})


def _digest(payload: Mapping[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
