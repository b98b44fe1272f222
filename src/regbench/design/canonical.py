"""One name per science: the Keras backend a run trains on, and a combination's one order.

A run's identity (design.plan) must not split one experiment into two because it was spelled
two ways, nor merge two because a fact that changes results (the backend) was left out.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_BACKEND = (
    "tensorflow"  # Keras's own default, and what runs from before it was recorded used
)
VMAPPED_BACKEND = "jax"  # the vmapped engine is a JAX program: its workers start on JAX


def keras_backend() -> str:
    """The backend Keras has in this process, or will have once imported, which the workers
    this process starts share (they inherit its environment): KERAS_BACKEND, else the
    `backend` of Keras's keras.json, else TensorFlow, as Keras decides it; Keras is not
    imported to find out."""
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    if callable(backend):
        return str(backend())
    if chosen := os.environ.get("KERAS_BACKEND"):
        return chosen
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = str(base / ".keras")
    try:
        config = json.loads((Path(home).expanduser() / "keras.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_BACKEND
    found = config.get("backend") if isinstance(config, dict) else None
    return found if isinstance(found, str) and found else DEFAULT_BACKEND


def training_backend(engine: str) -> str:
    """The backend runs of `engine` train on when started from this process."""
    return VMAPPED_BACKEND if engine == "vmapped" else keras_backend()


def combination_order(components: Sequence[Any]) -> list[Any]:
    """A combination's components in the order that names its cell. Components that override
    no hook in common each act on their own side of the seam, so the order changes nothing
    that trains (`l2+dropout` is `dropout+l2`): sorted by name. Two that share a hook run it
    in the order given (`dropout+batchnorm` puts Dropout before BatchNormalization where both
    act, `batchnorm+dropout` after), so that order is kept: it is part of the science."""
    hooks = [_hooks(component) for component in components]
    shared = any(hooks[i] & hooks[j] for i in range(len(hooks)) for j in range(i))
    return list(components) if shared else sorted(components, key=lambda c: str(c.name))


def _hooks(regularizer: Any) -> set[str]:
    """The hooks of the plugin API (`Regularizer`'s methods) that `regularizer` overrides."""
    from regbench.plugins.regularizer import Regularizer, overrides

    methods = {name for name, value in vars(Regularizer).items() if callable(value)}
    return {name for name in methods if not name.startswith("_") and overrides(regularizer, name)}


def stored_backend(engine: str) -> str:
    """The backend of a stored run whose row records none (rows from before the backend was
    part of a run's identity, when runs were trained on TensorFlow unless vmapped)."""
    return VMAPPED_BACKEND if engine == "vmapped" else DEFAULT_BACKEND
