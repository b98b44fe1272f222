"""One experiment: the settings a study runs with, validated once for Python, TOML and the CLI.

`Experiment.create(...)` takes Python values or command-line strings alike and refuses bad ones
with an error worded by field (`epochs must be at least 1; got 0`), so the same rules hold
whether a user calls `regbench.run(epochs=0)`, writes `epochs = 0` in a TOML file or types
`--epochs 0`. Everything is checked before anything is written.
"""

from __future__ import annotations

import math
import sys
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from regbench.engine.optimizers import LR_SCHEDULES, parse_optimizer_options
from regbench.engine.pipeline import PIPELINES
from regbench.engine.plan import (
    ENGINES,
    JIT_CHOICES,
    OPTIMIZERS,
    PRECISIONS,
    TARGET_METRICS,
    Execution,
    Protocol,
)
from regbench.errors import RegbenchError
from regbench.plugins.datasets import parse_flag
from regbench.plugins.files import CONFIG_LIMIT, expanded, read_regular

EXECUTORS = ("local", "inprocess", "ray")

MAX_SEED = 2**32 - 1  # what every backend's seeding accepts
MAX_SEEDS = 10_000
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20
MAX_STEPS = 2**20
DEFAULT_TRAINER = "regbench.engine.trainer:train_run"


@dataclass(frozen=True)
class Experiment:
    """What to train (the grid), how (the protocol) and where its results go (the folder)."""

    arch: tuple[str, ...] = ("all",)
    reg: tuple[str, ...] = ("all",)
    dataset: str = "cifar10"
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    learning_rate: float | None = None
    lr_schedule: str = "constant"
    target: tuple[str, float] | None = None
    precision: str = "float32"
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    pipeline: str = "auto"
    engine: str = "standard"
    tensorboard: bool = False
    baseline: str = "none"
    name: str | None = None
    experiment: Path | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None
    executor: str = "local"
    devices: tuple[str, ...] | None = None
    per_device: int = 1
    pack: int | None = None
    workers: int | None = None
    max_runs_per_worker: int | None = None
    run_timeout: float | None = None
    ray_address: str | None = None
    trainer: str = DEFAULT_TRAINER

    def __post_init__(self) -> None:
        if self.run_timeout is not None and self.executor == "inprocess":
            raise RegbenchError(
                "run_timeout needs worker processes (a hung run in this process cannot be "
                "stopped); use the local executor, or drop the timeout"
            )
        if self.pack is not None and self.engine != "vmapped":
            raise RegbenchError(
                "pack sets how many runs the vmapped engine trains as one program; add "
                '--engine vmapped (engine = "vmapped"), or drop it'
            )

    @classmethod
    def create(cls, source: str = "", **values: Any) -> Experiment:
        """Validate `values` (Python values or CLI strings); None means "the default"."""
        known = {f.name for f in fields(cls)}
        checked: dict[str, Any] = {}
        for key, value in renamed(values, source).items():
            if key not in known:
                raise RegbenchError(
                    f"{source}unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
                )
            if value is None:
                continue
            checked[key] = _PARSERS[key](value, f"{source}{key}")
        return cls(**checked)

    @classmethod
    def from_config(cls, name_or_path: str, **overrides: Any) -> Experiment:
        """A TOML experiment file (a path, or a shipped name such as `lab`), then `overrides`."""
        config = load_config(name_or_path)
        base = cls.create(f"config {name_or_path}: ", **config)
        return base.update(**overrides)

    def update(self, **overrides: Any) -> Experiment:
        """A copy with `overrides` (validated like `create`; None leaves a field as it is)."""
        overrides = renamed(overrides)
        changed = Experiment.create(**overrides)
        given = {k: getattr(changed, k) for k, v in overrides.items() if v is not None}
        if "params" in given:  # per regularizer: a flag's values over the file's
            merged = {reg: dict(values) for reg, values in self.params.items()}
            for reg, values in given["params"].items():
                merged.setdefault(reg, {}).update(values)
            given["params"] = merged
        for key in ("dataset_options", "optimizer_options"):
            if key in given:
                given[key] = {**getattr(self, key), **given[key]}
        return replace(self, **given)

    @property
    def folder(self) -> Path:
        """The experiment folder: `experiment`, or reports/<name>, the name defaulting to the
        dataset."""
        if self.experiment is not None:
            return self.experiment
        return Path("reports") / (self.name or self.dataset)

    @property
    def protocol(self) -> Protocol:
        return Protocol(
            dataset=self.dataset,
            dataset_options=dict(self.dataset_options),
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            optimizer_options=dict(self.optimizer_options),
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule,
            target=self.target,
            precision=self.precision,
        )

    @property
    def execution(self) -> Execution:
        return Execution(
            jit_compile=self.jit_compile,
            steps_per_execution=self.steps_per_execution,
            pipeline=self.pipeline,
            tensorboard_dir=str(self.folder / "tensorboard") if self.tensorboard else None,
            engine=self.engine,
        )


RENAMED = {"out": "experiment"}  # a setting's old name -> its name now


class RenamedSetting(FutureWarning):
    """A setting given under its old name (a FutureWarning: shown by default, to users)."""


def renamed(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """`values` with settings given under an old name (`out`) under their name now, each with
    a one-line warning pointing at the caller's line."""
    values = dict(values)
    for old, new in RENAMED.items():
        if old not in values:
            continue
        value = values.pop(old)
        if values.get(new) is not None and value is not None:
            raise RegbenchError(f"{source}{old} is the old name of {new}; give only {new}")
        warnings.warn(
            f"{source}the setting {old!r} is deprecated; name it {new!r}",
            RenamedSetting,
            stacklevel=_caller_outside_regbench(),
        )
        values[new] = value if values.get(new) is None else values[new]
    return values


def _caller_outside_regbench() -> int:
    """The `stacklevel` that attributes a warning raised by our caller to the first frame
    outside regbench (the user's line, not ours)."""
    frame: Any = sys._getframe(1)
    level = 1  # level 1: the caller, which warns
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "regbench":
        frame, level = frame.f_back, level + 1
    return level


def check_protocol(protocol: Protocol, execution: Execution | None = None) -> None:
    """Refuse a protocol (and execution) that `Experiment` did not make, such as one rebuilt
    from a stored row, by the same rules; `engine.plan` trusts them afterwards."""
    values = {**asdict(protocol), **(asdict(execution) if execution else {})}
    Experiment.create(**{key: value for key, value in values.items() if key in _PARSERS})


# ---------------------------------------------------------------- parsers, one per field


def _text(value: Any, label: str) -> str:
    """Text taken exactly as given: spaces around it are refused, never silently dropped
    (`--experiment "E "` must not become the folder E)."""
    if not isinstance(value, str) or not value.strip():
        raise RegbenchError(f"{label} must be a non-empty string; got {value!r}")
    if value != value.strip():
        raise RegbenchError(f"{label} {value!r} starts or ends with spaces; remove them")
    return value


def _choice(choices: Sequence[str]) -> Callable[[Any, str], str]:
    def parse(value: Any, label: str) -> str:
        text = _text(value, label).lower()
        if text not in choices:
            raise RegbenchError(f"{label} must be one of {', '.join(choices)}; got {value!r}")
        return text

    return parse


def _names(value: Any, label: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise RegbenchError(f"{label} must be a name or a list of names; got {value!r}")
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise RegbenchError(f"{label}: name at least one, or 'all'")
    return tuple(dict.fromkeys(names))


def _whole(low: int, high: int) -> Callable[[Any, str], int]:
    def parse(value: Any, label: str) -> int:
        number = _integer(value, label)
        if not low <= number <= high:
            raise RegbenchError(f"{label} must be between {low:,} and {high:,}; got {number}")
        return number

    return parse


def _integer(value: Any, label: str) -> int:
    if isinstance(value, bool | float):
        raise RegbenchError(f"{label} must be a whole number; got {value!r}")
    try:
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise RegbenchError(f"{label} must be a whole number; got {value!r}") from None


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool):
        raise RegbenchError(f"{label} must be a number; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RegbenchError(f"{label} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise RegbenchError(f"{label} must be a finite number; got {value!r}")
    return number


def _positive(value: Any, label: str) -> float:
    number = _number(value, label)
    if number <= 0:
        raise RegbenchError(f"{label} must be positive; got {value!r}")
    return number


def _seeds(value: Any, label: str) -> tuple[int, ...]:
    """A count (3 -> 0, 1, 2) or a list (`0,5,9` or [0, 5, 9])."""
    if isinstance(value, str) and "," not in value:
        value = _integer(value, label)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise RegbenchError(
                f"{label}: the number of seeds must be 1 to {MAX_SEEDS:,}; got {value}"
            )
        return tuple(range(value))
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise RegbenchError(f"{label} must be a count or a list like 0,1,2; got {value!r}")
    seeds = [_integer(item, label) for item in items if str(item).strip()]
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


def _target(value: Any, label: str) -> tuple[str, float]:
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
    return metric, _number(goal, label)


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


def _params(value: Any, label: str) -> dict[str, dict[str, Any]]:
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


def _path(value: Any, label: str) -> Path:
    return expanded(value if isinstance(value, Path) else _text(value, label), label)


def _existing(value: Any, label: str) -> Path:
    path = _path(value, label)
    if not path.exists():
        raise RegbenchError(f"{label} {path} does not exist")
    return path


def _devices(value: Any, label: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise RegbenchError(f"{label} must be GPU ids like 0,1 (or cpu); got {value!r}")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _trainer(value: Any, label: str) -> str:
    text = _text(value, label)
    if ":" not in text:
        raise RegbenchError(f"{label} must be 'module:function'; got {value!r}")
    return text


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "arch": _names,
    "reg": _names,
    "dataset": _text,
    "dataset_options": parse_assignments,
    "params": _params,
    "seeds": _seeds,
    "epochs": _whole(1, MAX_EPOCHS),
    "batch_size": _whole(1, MAX_BATCH),
    "optimizer": _choice(OPTIMIZERS),
    "optimizer_options": lambda value, label: parse_optimizer_options(
        parse_assignments(value, label)
    ),
    "learning_rate": _positive,
    "lr_schedule": _choice(LR_SCHEDULES),
    "target": _target,
    "precision": _choice(PRECISIONS),
    "jit_compile": _choice(JIT_CHOICES),
    "steps_per_execution": _whole(1, MAX_STEPS),
    "pipeline": _choice(PIPELINES),
    "engine": _choice(ENGINES),
    "tensorboard": parse_flag,
    "baseline": _text,
    "name": _text,
    "experiment": _path,
    "data_dir": _existing,
    "cache_dir": _path,
    "executor": _choice(EXECUTORS),
    "devices": _devices,
    "per_device": _whole(1, 1024),
    "pack": _whole(1, 1024),
    "workers": _whole(1, 1024),
    "max_runs_per_worker": _whole(1, 1_000_000),
    "run_timeout": _positive,
    "ray_address": _text,
    "trainer": _trainer,
}

# ---------------------------------------------------------------- TOML files

FILE_KEYS = tuple(k for k in _PARSERS if k not in ("trainer",))


def packaged_experiments() -> list[str]:
    folder = resources.files("regbench") / "experiments"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_config(name_or_path: str) -> dict[str, Any]:
    """Read an experiment file (a path, or the name of one shipped with regbench) as a dict."""
    path = expanded(name_or_path, "config")
    if not path.exists() and name_or_path in packaged_experiments():
        data = (resources.files("regbench") / "experiments" / f"{name_or_path}.toml").read_bytes()
    else:
        shipped = ", ".join(packaged_experiments())
        advice = f"give a TOML file or one of the shipped experiments ({shipped})"
        data = read_regular(path, "config", CONFIG_LIMIT, advice)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RegbenchError(
            f"config {name_or_path} is not UTF-8 text; save it as a UTF-8 TOML file"
        ) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegbenchError(f"config {name_or_path} is not valid TOML: {exc}") from None
    unknown = sorted(set(config) - set(FILE_KEYS) - set(RENAMED))
    if unknown:
        raise RegbenchError(
            f"config {name_or_path}: unknown key {unknown[0]!r}; "
            f"known keys: {', '.join(sorted(FILE_KEYS))}"
        )
    return config
