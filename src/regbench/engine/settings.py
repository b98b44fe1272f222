"""Every setting of an experiment, declared once: its name, parser, role, flag and help.

`Experiment`'s validation, the command line's flags and their help, the keys of an experiment
file and docs/settings.md are all read from `SETTINGS` (datasette's `SETTINGS` is the model);
a test holds `Experiment`'s fields, the protocol's and docs/settings.md to it. Roles say what a
setting is part of: `grid` (what is trained), `protocol` (how: part of a run's identity and
its protocol columns), `execution` (how fast: recorded, never part of the science), `executor`
(where runs go: processes, devices), `where` (folders) and `report` (how results are read).

This module imports nothing heavy: the parsers look up the names they accept when they parse.
`python -m regbench.engine.experiment` prints docs/settings.md from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError
from regbench.plugins.files import expanded

EXECUTORS = ("local", "inprocess", "ray")
MAX_SEED = 2**32 - 1  # what every backend's seeding accepts
MAX_SEEDS = 10_000
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20
MAX_STEPS = 2**20
DEFAULT_TRAINER = "regbench.engine.trainer:train_run"
ROLES = ("grid", "protocol", "execution", "executor", "where", "report")
# the commands whose flags a role's settings are: the executor's are `run`'s alone (tune
# takes --executor and --workers too: see `Setting.also`)
COMMANDS = {role: ("run", "plan", "tune") for role in ROLES} | {"executor": ("run",)}


@dataclass(frozen=True)
class Setting:
    """One setting. `flag` is its command-line spelling ("" for none; default --name with
    dashes), `action` argparse's (append: a flag given several times), `also` commands beyond
    its role's that take the flag, `in_file` whether an experiment file may set it, `hidden`
    a flag left out of --help."""

    name: str
    parse: Callable[[Any, str], Any]
    role: str
    help: str
    flag: str | None = None
    metavar: str | None = None
    action: str | None = None
    also: tuple[str, ...] = ()
    in_file: bool = True
    hidden: bool = False

    @property
    def spelling(self) -> str:
        """The flag as typed: `--batch-size` for batch_size, "" for a setting without one."""
        return ("--" + self.name.replace("_", "-")) if self.flag is None else self.flag

    @property
    def commands(self) -> tuple[str, ...]:
        return (*COMMANDS[self.role], *self.also) if self.spelling else ()


# ---------------------------------------------------------------- parsers, one per kind


def _text(value: Any, label: str) -> str:
    """Text taken exactly as given: spaces around it are refused, never silently dropped
    (`--experiment "E "` must not become the folder E)."""
    if not isinstance(value, str) or not value.strip():
        raise RegbenchError(f"{label} must be a non-empty string; got {value!r}")
    if value != value.strip():
        raise RegbenchError(f"{label} {value!r} starts or ends with spaces; remove them")
    return value


def _choice(listed: Callable[[], Sequence[str]]) -> Callable[[Any, str], str]:
    """One of the names `listed()` gives (looked up when a value is parsed: the modules that
    hold them import numpy, and `regbench --help` builds its flags from this table)."""

    def parse(value: Any, label: str) -> str:
        choices = listed()
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
    from regbench.engine.plan import TARGET_METRICS

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


def _flag(value: Any, label: str) -> bool:
    from regbench.plugins.datasets import parse_flag

    return parse_flag(value, label)


def _optimizer_options(value: Any, label: str) -> dict[str, Any]:
    from regbench.engine.optimizers import parse_optimizer_options

    return parse_optimizer_options(parse_assignments(value, label))


def _plan(name: str) -> Callable[[], Sequence[str]]:
    def listed() -> Sequence[str]:
        from regbench.engine import plan

        return getattr(plan, name)

    return listed


def _lr_schedules() -> Sequence[str]:
    from regbench.engine.optimizers import LR_SCHEDULES

    return LR_SCHEDULES


def _pipelines() -> Sequence[str]:
    from regbench.engine.pipeline import PIPELINES

    return PIPELINES


# ---------------------------------------------------------------- the table

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "arch",
        _names,
        "grid",
        "architectures: names, comma lists, or all (default all)",
        action="append",
    ),
    Setting(
        "reg",
        _names,
        "grid",
        "regularizers: names, comma lists, a+b combinations, or all (default all)",
        action="append",
    ),
    Setting("dataset", _text, "protocol", "dataset plugin (default cifar10)"),
    Setting(
        "dataset_options",
        parse_assignments,
        "protocol",
        "dataset-specific option, e.g. native=true for digits",
        flag="--dataset-option",
        metavar="KEY=VALUE",
        action="append",
    ),
    Setting(
        "params",
        _params,
        "grid",
        "regularizer hyperparameter, e.g. dropout.rate=0.2; a comma list sweeps it",
        flag="--param",
        metavar="REG.NAME=VALUE[,VALUE]",
        action="append",
    ),
    Setting(
        "seeds",
        _seeds,
        "grid",
        "number of seeds (0..N-1) or a list like 1,2,3 (default 1)",
    ),
    Setting(
        "epochs",
        _whole(1, MAX_EPOCHS),
        "protocol",
        "training epochs per run (default 10, the lab's)",
    ),
    Setting(
        "batch_size", _whole(1, MAX_BATCH), "protocol", "images per step (default 64, the lab's)"
    ),
    Setting(
        "optimizer",
        _choice(_plan("OPTIMIZERS")),
        "protocol",
        "sgd (default, Keras defaults), adam, adamw, rmsprop, nadam, adagrad",
    ),
    Setting(
        "optimizer_options",
        _optimizer_options,
        "protocol",
        "optimizer setting, e.g. momentum=0.9 or nesterov=true (default: Keras's)",
        flag="--optimizer-option",
        metavar="KEY=VALUE",
        action="append",
    ),
    Setting("learning_rate", _positive, "protocol", "(default: the optimizer's own, 0.01 for sgd)"),
    Setting(
        "lr_schedule",
        _choice(_lr_schedules),
        "protocol",
        "constant (default), cosine, step or warmup_cosine, over the whole training",
    ),
    Setting(
        "target",
        _target,
        "protocol",
        "record time to reach it, e.g. val_accuracy=0.5 (default none)",
    ),
    Setting(
        "precision",
        _choice(_plan("PRECISIONS")),
        "protocol",
        "float32 (default), mixed_float16 or mixed_bfloat16",
    ),
    Setting(
        "jit_compile",
        _choice(_plan("JIT_CHOICES")),
        "execution",
        "XLA: auto (default: on where a GPU is), on or off",
    ),
    Setting(
        "steps_per_execution",
        _whole(1, MAX_STEPS),
        "execution",
        "training steps per compiled call (fewer host round trips; default 1)",
    ),
    Setting(
        "pipeline",
        _choice(_pipelines),
        "execution",
        "input pipeline: auto (default: arrays), arrays or tf.data (TensorFlow only)",
    ),
    Setting(
        "engine",
        _choice(_plan("ENGINES")),
        "execution",
        "standard (default) or vmapped: a cell's seeds as one JAX program (JAX backend)",
    ),
    Setting(
        "tensorboard",
        _flag,
        "execution",
        "write TensorBoard scalars and an HParams summary under DIR/tensorboard",
        action="store_const",
    ),
    Setting(
        "baseline", _text, "report", "the regularizer each cell is compared with (default none)"
    ),
    Setting(
        "name",
        _text,
        "where",
        "names the default folder, reports/<name> (an experiment file's key)",
        flag="",
    ),
    Setting(
        "experiment",
        _path,
        "where",
        "experiment folder (default reports/<experiment name or dataset>)",
        metavar="DIR",
    ),
    Setting(
        "data_dir",
        _existing,
        "where",
        "CIFAR-10: cifar-10-batches-py/ or cifar-10-python.tar.gz",
    ),
    Setting(
        "cache_dir",
        _path,
        "where",
        "where converted datasets are cached (default $REGBENCH_CACHE or ~/.cache/regbench)",
    ),
    Setting(
        "executor",
        _choice(lambda: EXECUTORS),
        "executor",
        "local (default: worker processes; for tune, each cell's search in one), inprocess "
        "(one after another in this process) or ray (tune: searched in local workers)",
        also=("tune",),
    ),
    Setting(
        "devices",
        _devices,
        "executor",
        "GPU ids to use, e.g. 0,1 (default: all; cpu for none)",
    ),
    Setting("per_device", _whole(1, 1024), "executor", "concurrent runs per GPU (default 1)"),
    Setting(
        "pack",
        _whole(1, 1024),
        "executor",
        "vmapped engine: train up to N runs of one architecture and protocol as one program "
        "(default: a cell's seeds on CPU, up to 16 runs on a GPU)",
        metavar="N",
    ),
    Setting(
        "workers",
        _whole(1, 1024),
        "executor",
        "worker processes on CPU (default: one per core, at most 4)",
        also=("tune",),
    ),
    Setting(
        "max_runs_per_worker",
        _whole(1, 1_000_000),
        "executor",
        "replace a worker process with a fresh one after N runs, bounding memory creep "
        "(default: only once its memory grew 6%% past its size after its first run)",
        metavar="N",
    ),
    Setting(
        "run_timeout",
        _positive,
        "executor",
        "stop a run still training after this long; record it `timeout` (default none)",
        metavar="SECONDS",
    ),
    Setting(
        "ray_address",
        _text,
        "executor",
        "Ray cluster for --executor ray (default: start a local one)",
    ),
    Setting(
        "trainer",
        _trainer,
        "executor",
        "the function that trains a run, module:function (for tests and timing)",
        in_file=False,
        hidden=True,
    ),
)


def parsers(table: Iterable[Setting] = SETTINGS) -> dict[str, Callable[[Any, str], Any]]:
    return {s.name: s.parse for s in table}


def file_keys(table: Iterable[Setting] = SETTINGS) -> tuple[str, ...]:
    """The keys an experiment file may hold."""
    return tuple(s.name for s in table if s.in_file)


def flags_of(command: str, table: Iterable[Setting] = SETTINGS) -> list[Setting]:
    """The settings `command` takes as flags, in the table's order."""
    return [s for s in table if command in s.commands]
