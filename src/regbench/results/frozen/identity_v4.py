"""Run identity as `engine.plan.RunSpec` computes it at IDENTITY_VERSION 4: frozen for m006.

Version 4 is version 3 with the target out (a measurement, not the science), the learning rate
normalised to the rate the optimizer starts from (Keras's default when unset), and the engine in
when it is not "standard". Never edit it: a later identity goes into a new frozen module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.results.frozen import identity_v3

DEFAULT_LEARNING_RATES = {"sgd": 0.01}  # Keras's defaults; every other optimizer: 0.001


def learning_rate(row: Mapping[str, Any]) -> float:
    """The rate a stored run's optimizer started from."""
    protocol = identity_v3._parsed(row)["protocol"]
    rate = protocol["learning_rate"]
    return (
        float(rate)
        if rate is not None
        else DEFAULT_LEARNING_RATES.get(protocol["optimizer"], 0.001)
    )


def identity(row: Mapping[str, Any]) -> dict[str, Any]:
    """The identity dict of the run a stored row describes (raises as version 3 does)."""
    found = identity_v3.identity(row)
    protocol = dict(found["protocol"])
    del protocol["target"]
    protocol["learning_rate"] = learning_rate(row)
    engine = row.get("engine")
    extra = {"engine": engine} if isinstance(engine, str) and engine != "standard" else {}
    return {**found, "protocol": protocol, **extra}


def config_hash(row: Mapping[str, Any]) -> str:
    return identity_v3._digest(identity(row))


def cell_hash(row: Mapping[str, Any]) -> str:
    return identity_v3._digest({k: v for k, v in identity(row).items() if k != "seed"})
