"""Run identity as `engine.plan.RunSpec` computes it at IDENTITY_VERSION 5: frozen for m008.

Version 5 is version 4 of a row in its one spelling (`canonical`), with the Keras backend in
when it is not TensorFlow and the dataset's split scheme in when the row names one (not
"unnamed"). The one
spelling: optimizer options typed, those equal to Keras's default for the optimizer left out;
the built-in datasets' options typed, defaults left out; a combination of regularizers whose
components override no hook in common in sorted order (the order cannot change what trains).
What it knows of plugins is what regbench and regbench-extras shipped when m008 did; a
component or dataset it does not know keeps its spelling. Never edit it: a later identity goes
into a new frozen module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from regbench.results.frozen import identity_v3, identity_v4

# Keras's default of each optimizer option that has a value as its default (engine.optimizers)
_EVERY = {"use_ema": False, "ema_momentum": 0.99}
_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
OPTIMIZER_DEFAULTS: dict[str, dict[str, float | bool]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, **_EVERY},
    "adam": {**_ADAM, "amsgrad": False, **_EVERY},
    "adamw": {"weight_decay": 0.004, **_ADAM, "amsgrad": False, **_EVERY},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False, **_EVERY},
    "nadam": {**_ADAM, **_EVERY},
    "adagrad": {"epsilon": 1e-7, **_EVERY},
}
FLAG_OPTIONS = ("nesterov", "amsgrad", "centered", "use_ema")
NUMBER_OPTIONS = (
    *("momentum", "beta_1", "beta_2", "epsilon", "rho", "weight_decay"),
    *("clipnorm", "clipvalue", "global_clipnorm", "ema_momentum"),
)
# the hooks each shipped regularizer overrode (layers_at, kernel_regularizer, ...), by name
HOOKS: dict[str, tuple[str, ...]] = {
    "none": (),
    "l2": ("kernel_regularizer",),
    "dropout": ("layers_at",),
    "batchnorm": ("layers_at",),
    "spatial_dropout": ("layers_at",),
    "gaussian_noise": ("layers_at",),
    "l1": ("kernel_regularizer",),
    "l1l2": ("kernel_regularizer",),
    "label_smoothing": ("loss",),
    "augment": ("input_layers",),
    "weight_decay": ("optimizer",),
    "early_stopping": ("callbacks",),
    "mixup": ("batch",),
    "cutmix": ("batch",),
    "cutout": ("input_layers",),
    "dropblock": ("layers_at",),
    "stochastic_depth": ("layers_at",),
}
SHIPPED_BY = ("regbench", "regbench-extras")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "size": 1400,
    "height": 32,
    "width": 32,
    "channels": 3,
    "classes": 10,
    "noise": 0.25,
}
SYNTHETIC_LOWEST = {"size": 7, "classes": 2}


def canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of a stored row that version 5 spells one way: reg (and its components'
    provenance, in the same order), dataset_options, optimizer_options, backend. Raises
    KeyError, TypeError or ValueError for a row too damaged to read."""
    fields = identity_v3._parsed(row)
    protocol = fields["protocol"]
    return {
        **_combination(row),
        "dataset_options": _dataset_options(protocol["dataset"], protocol["dataset_options"]),
        "optimizer_options": _optimizer_options(
            protocol["optimizer"], protocol["optimizer_options"]
        ),
        "backend": backend(row),
    }


def backend(row: Mapping[str, Any]) -> str:
    """The backend a row records; none: JAX for the vmapped engine, else TensorFlow."""
    found = row.get("backend")
    if isinstance(found, str) and found:
        return found
    return "jax" if row.get("engine") == "vmapped" else "tensorflow"


def identity(row: Mapping[str, Any]) -> dict[str, Any]:
    """The identity dict of the run a stored row describes (raises as version 3 does)."""
    spelled = {**row, **canonical(row)}
    found = identity_v4.identity(spelled)
    protocol = dict(found["protocol"])
    if spelled["backend"] != "tensorflow":
        protocol["backend"] = spelled["backend"]
    scheme = row.get("split_scheme")
    if isinstance(scheme, str) and scheme != "unnamed":  # NULL: trained before schemes
        protocol["split_scheme"] = scheme
    return {**found, "protocol": protocol}


def config_hash(row: Mapping[str, Any]) -> str:
    return identity_v3._digest(identity(row))


def cell_hash(row: Mapping[str, Any]) -> str:
    return identity_v3._digest({k: v for k, v in identity(row).items() if k != "seed"})


def _combination(row: Mapping[str, Any]) -> dict[str, Any]:
    """reg, reg_source and reg_source_hash with a combination's components in sorted order
    when they are all shipped regularizers that share no hook; as stored otherwise."""
    reg = str(row["reg"])
    source, digest = row.get("reg_source"), row.get("reg_source_hash")
    kept = {"reg": reg, "reg_source": source, "reg_source_hash": digest}
    names = reg.split("+")
    if len(names) < 2 or any(name not in HOOKS for name in names):
        return kept
    hooks = [set(HOOKS[name]) for name in names]
    if any(hooks[i] & hooks[j] for i in range(len(hooks)) for j in range(i)):
        return kept
    parts = _sources(source)
    digests = str(digest or "").split("+")
    split = len(parts) == len(digests) == len(names)
    if split and not all(part.partition(" ")[0] in SHIPPED_BY for part in parts):
        return kept  # another plugin of the same name: its hooks are not known here
    order = sorted(range(len(names)), key=lambda i: names[i])
    return {
        "reg": "+".join(names[i] for i in order),
        "reg_source": "+".join(parts[i] for i in order) if split else source,
        "reg_source_hash": "+".join(digests[i] for i in order) if split else digest,
    }


def _sources(recorded: Any) -> list[str]:
    """A recorded source split into its components' 'dist version's (engine.plan._sources)."""
    sources: list[str] = []
    for piece in str(recorded or "").split("+"):
        if sources and " " not in piece:
            sources[-1] += f"+{piece}"
        else:
            sources.append(piece)
    return sources


def _optimizer_options(optimizer: str, options: Mapping[str, Any]) -> dict[str, Any]:
    defaults = OPTIMIZER_DEFAULTS.get(optimizer, {})
    out: dict[str, Any] = {}
    for key in sorted(options):
        value: Any
        if key in FLAG_OPTIONS:
            value = _flag(options[key], ("true", "1", "yes"), ("false", "0", "no"))
        elif key in NUMBER_OPTIONS:
            value = float(options[key])
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"optimizer option {key}={value}")
        else:
            raise ValueError(f"unknown optimizer option {key!r}")
        if key not in defaults or defaults[key] != value:
            out[key] = value
    return out


def _dataset_options(dataset: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The built-in datasets' options typed, defaults left out; others as stored (sorted)."""
    if dataset == "digits":
        native = _flag(options.get("native", False), TRUE_WORDS, FALSE_WORDS)
        return _without_defaults(options, {"native": native}, {"native": False})
    if dataset == "synthetic":
        typed: dict[str, Any] = {
            key: _whole(options.get(key, default), SYNTHETIC_LOWEST.get(key, 1))
            for key, default in SYNTHETIC_DEFAULTS.items()
            if key != "noise"
        }
        typed["noise"] = float(options.get("noise", SYNTHETIC_DEFAULTS["noise"]))
        if not 0.0 <= typed["noise"] <= 10.0:
            raise ValueError(f"dataset option noise={typed['noise']}")
        return _without_defaults(options, typed, SYNTHETIC_DEFAULTS)
    return {key: options[key] for key in sorted(options)}


def _without_defaults(
    options: Mapping[str, Any], typed: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    out = {}
    for key in sorted(options):
        if key not in defaults:
            out[key] = options[key]
        elif typed[key] != defaults[key]:
            out[key] = typed[key]
    return out


def _flag(value: Any, true: tuple[str, ...], false: tuple[str, ...]) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in true + false:
        raise ValueError(f"not a yes/no value: {value!r}")
    return text in true


def _whole(value: Any, low: int) -> int:
    number = int(value)
    if number < low:
        raise ValueError(f"{number} is below {low}")
    return number


def encoded(columns: Mapping[str, Any]) -> dict[str, Any]:
    """`canonical`'s columns as the store holds them (mappings as sorted JSON)."""
    return {
        key: json.dumps(value, sort_keys=True) if isinstance(value, Mapping) else value
        for key, value in columns.items()
    }
