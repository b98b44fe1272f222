"""Run identity as `engine.plan.RunSpec` computes it at IDENTITY_VERSION 6: frozen.

Version 6 is version 5 with the dataset plugin's provenance (`dataset_source`,
`dataset_source_hash`) in the run's provenance where the row recorded it, and `jit_compile`
when a standard-engine row asked for "on" or "off". A row from before recorded no dataset, so
that part of its identity is version 5's (such a row is trained again once, because today's
runs record their dataset); m009 rehashes the rows that asked for XLA on or off. Never edit it:
a later identity goes into a new frozen module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.results.frozen import identity_v3, identity_v5

DATASET_PROVENANCE = ("dataset_source", "dataset_source_hash")


def identity(row: Mapping[str, Any]) -> dict[str, Any]:
    """The identity dict of the run a stored row describes (raises as version 5 does)."""
    found = identity_v5.identity(row)
    provenance = dict(found["provenance"])
    for key in DATASET_PROVENANCE:
        value = row.get(key)
        if value is not None and value == value:  # neither NULL nor NaN
            provenance[key] = str(value)
    jit, engine = row.get("jit_compile"), row.get("engine")
    standard = not isinstance(engine, str) or engine == "standard"  # NULL or NaN: standard
    explicit = {"jit_compile": jit} if standard and jit in ("on", "off") else {}
    return {**found, "provenance": dict(sorted(provenance.items())), **explicit}


def config_hash(row: Mapping[str, Any]) -> str:
    return identity_v3._digest(identity(row))


def cell_hash(row: Mapping[str, Any]) -> str:
    return identity_v3._digest({k: v for k, v in identity(row).items() if k != "seed"})
