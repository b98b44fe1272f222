"""How each setting's value is read: one parser per kind of value, each taking a Python value
or the string a flag or file gives, and refusing a bad one in a line worded by its label
(`epochs must be at least 1; got 0`). The names a choice accepts are looked up when a value is
parsed: the modules that hold them import numpy, and `regbench --help` must not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from regbench.design.choices import TARGET_METRICS
from regbench.design.optimizer_options import parse_optimizer_options
from regbench.errors import RegbenchError
from regbench.plugins.files import expanded

MAX_SEED = 2**32 - 1  # what every backend's seeding accepts
MAX_SEEDS = 10_000
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20
MAX_STEPS = 2**20


def text(value: Any, label: str) -> str:
    """Text taken exactly as given: spaces around it are refused, never silently dropped
    (`--experiment "E "` must not become the folder E)."""
    if not isinstance(value, str) or not value.strip():
        raise RegbenchError(f"{label} must be a non-empty string; got {value!r}")
    if value != value.strip():
        raise RegbenchError(f"{label} {value!r} starts or ends with spaces; remove them")
    return value


def choice(choices: Sequence[str]) -> Callable[[Any, str], str]:
    """One of `choices` (design.choices holds them)."""

    def parse(value: Any, label: str) -> str:
        chosen = text(value, label).lower()
        if chosen not in choices:
            raise RegbenchError(f"{label} must be one of {', '.join(choices)}; got {value!r}")
        return chosen

    return parse


def names(value: Any, label: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise RegbenchError(f"{label} must be a name or a list of names; got {value!r}")
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise RegbenchError(f"{label}: name at least one, or 'all'")
    return tuple(dict.fromkeys(names))


def whole(low: int, high: int) -> Callable[[Any, str], int]:
    def parse(value: Any, label: str) -> int:
        number = integer(value, label)
        if not low <= number <= high:
            raise RegbenchError(f"{label} must be between {low:,} and {high:,}; got {number}")
        return number

    return parse


def integer(value: Any, label: str) -> int:
    if isinstance(value, bool | float):
        raise RegbenchError(f"{label} must be a whole number; got {value!r}")
    try:
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise RegbenchError(f"{label} must be a whole number; got {value!r}") from None


def number(value: Any, label: str) -> float:
    if isinstance(value, bool):
        raise RegbenchError(f"{label} must be a number; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RegbenchError(f"{label} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise RegbenchError(f"{label} must be a finite number; got {value!r}")
    return number


def positive(value: Any, label: str) -> float:
    found = number(value, label)
    if found <= 0:
        raise RegbenchError(f"{label} must be positive; got {value!r}")
    return found


def seeds(value: Any, label: str) -> tuple[int, ...]:
    """A count (3 -> 0, 1, 2) or a list (`0,5,9` or [0, 5, 9])."""
    if isinstance(value, str) and "," not in value:
        value = integer(value, label)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise RegbenchError(
                f"{label}: the number of seeds must be 1 to {MAX_SEEDS:,}; got {value}"
            )
        return tuple(range(value))
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise RegbenchError(f"{label} must be a count or a list like 0,1,2; got {value!r}")
    seeds = [integer(item, label) for item in items if str(item).strip()]
    if not seeds:
        raise RegbenchError(f"{label} chose no seed; give a count (e.g. 3) or a list (e.g. 0,1,2)")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise RegbenchError(f"{label}: each seed must be between 0 and {MAX_SEED}; got {seed}")
    if len(set(seeds)) != len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        raise RegbenchError(f"{label}: seed {repeated[0]} is given twice; list each seed once")
    if len(seeds) > MAX_SEEDS:
        raise RegbenchError(f"{label}: at most {MAX_SEEDS:,} seeds; got {len(seeds):,}")
    return tuple(seeds)


def target(value: Any, label: str) -> tuple[str, float]:
    if isinstance(value, str) and "=" in value:
        metric, goal = _pair(value, label)
    elif isinstance(value, list | tuple) and len(value) == 2:
        metric, goal = str(value[0]).strip(), value[1]
    else:
        raise RegbenchError(f"{label} must be metric=value (e.g. val_accuracy=0.5); got {value!r}")
    if metric not in TARGET_METRICS:
        raise RegbenchError(
            f"{label}: metric {metric!r} is not recorded; use one of {', '.join(TARGET_METRICS)}"
        )
    return metric, number(goal, label)


def parse_assignments(value: Any, label: str) -> dict[str, Any]:
    """A mapping, or `key=value` strings (a key given twice is refused): the one parser of
    every KEY=VALUE flag and setting (--param, --dataset-option, --optimizer-option, ...)."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise RegbenchError(f"{label} must be a table or key=value strings; got {value!r}")
    out: dict[str, Any] = {}
    for item in items:
        key, text = _pair(item, label)
        if key in out:
            raise RegbenchError(f"{label}: {key!r} is given twice; give each key once")
        out[key] = text
    return out


def _pair(item: Any, label: str) -> tuple[str, str]:
    """One `key=value` string as its stripped key and value."""
    key, sep, text = str(item).partition("=")
    if not sep or not key.strip():
        raise RegbenchError(f"{label} expects key=value; got {item!r}")
    return key.strip(), text.strip()


def params(value: Any, label: str) -> dict[str, dict[str, Any]]:
    """Hyperparameters by regularizer: {"dropout": {"rate": 0.2}}, or `dropout.rate=0.1,0.3`
    strings. A comma list or a TOML list is a sweep: one cell per value."""
    if isinstance(value, Mapping):
        grouped: dict[str, dict[str, Any]] = {}
        for reg, values in value.items():
            if not isinstance(values, Mapping):
                raise RegbenchError(
                    f"{label} must be a table of tables, e.g. [params.dropout] rate = 0.2"
                )
            grouped[str(reg)] = {str(k): _sweep(v, f"{label}.{reg}.{k}") for k, v in values.items()}
        return grouped
    grouped = {}
    for key, text in parse_assignments(value, label).items():
        reg, dot, name = key.rpartition(".")
        if not dot or not reg or not name:
            raise RegbenchError(
                f"{label} expects reg.name=value (e.g. dropout.rate=0.2); got {key!r}"
            )
        grouped.setdefault(reg, {})[name] = _sweep(text, f"{label} {key}")
    return grouped


def _sweep(value: Any, label: str) -> Any:
    """One value, or a list of distinct values (from a list or a comma-separated string)."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        if not value:
            raise RegbenchError(f"{label}: an empty list sweeps nothing; give at least one value")
        if nested := [v for v in value if isinstance(v, list | tuple | Mapping)]:
            raise RegbenchError(
                f"{label}: a sweep is a flat list of values (e.g. [0.1, 0.3]); got {nested[0]!r}"
            )
        unique = list(dict.fromkeys(value))
        return unique[0] if len(unique) == 1 else unique
    return value


def path(value: Any, label: str) -> Path:
    return expanded(value if isinstance(value, Path) else text(value, label), label)


def existing(value: Any, label: str) -> Path:
    found = path(value, label)
    if not found.exists():
        raise RegbenchError(f"{label} {found} does not exist")
    return found


def devices(value: Any, label: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise RegbenchError(f"{label} must be GPU ids like 0,1 (or cpu); got {value!r}")
    return tuple(str(item).strip() for item in items if str(item).strip())


def trainer(value: Any, label: str) -> str:
    given = text(value, label)
    if ":" not in given:
        raise RegbenchError(f"{label} must be 'module:function'; got {value!r}")
    return given


def flag(value: Any, label: str) -> bool:
    from regbench.plugins.datasets import parse_flag

    return parse_flag(value, label)


def optimizer_options(value: Any, label: str) -> dict[str, Any]:
    return parse_optimizer_options(parse_assignments(value, label))
