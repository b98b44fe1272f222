"""What every command shares: the terminal, the exit codes, the experiment-folder option."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from regbench.design.settings import SETTINGS

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def console(stderr: bool = False) -> Console:
    """A rich console (on stderr: what `--json` leaves stdout free of); plain and colourless
    when not a TTY or NO_COLOR is set."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(
        stderr=stderr,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        width=None if stream.isatty() or "COLUMNS" in os.environ else 160,
    )


def say(text: str, stderr: bool = False) -> None:
    """One plain line (no markup, no highlighting, never broken: a path or a run id stays
    whole to copy, however narrow the terminal)."""
    console(stderr).print(text, markup=False, highlight=False, soft_wrap=True)


def duration(seconds: float) -> str:
    """A time span as a person reads it: 42 s, 3.5 min, 2.1 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_json(payload: Any) -> None:
    """`payload` as JSON on stdout, for `--json`."""
    print(json.dumps(plain(payload), indent=2, ensure_ascii=False))


def plain(value: Any) -> Any:
    """`value` in plain JSON types: paths as text, NaN and NA as null, numpy scalars as
    numbers, tuples as lists."""
    from regbench.results.format import jsonable

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return jsonable(value)


def warn(text: str) -> None:
    print(f"regbench: {text}", file=sys.stderr)


def installed(module: str) -> bool:
    """Whether an optional dependency (Ray, JAX, MLflow) can be imported, without importing it."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Keras's backends, and the module each needs
KERAS_BACKENDS = {
    "tensorflow": "tensorflow",
    "jax": "jax",
    "torch": "torch",
    "numpy": "numpy",
    "openvino": "openvino",
}


def check_environment() -> None:
    """Refuse a KERAS_BACKEND Keras cannot load before anything imports Keras: its own error
    is a traceback from deep inside the first import."""
    from regbench.errors import RegbenchError

    backend = os.environ.get("KERAS_BACKEND", "")
    if backend and backend not in KERAS_BACKENDS:
        raise RegbenchError(
            f"KERAS_BACKEND={backend!r} is not a Keras backend (choose one of "
            f"{', '.join(KERAS_BACKENDS)}, or unset it for tensorflow)"
        )
    if backend and not installed(KERAS_BACKENDS[backend]):
        raise RegbenchError(
            f"KERAS_BACKEND={backend}: {backend} is not installed; install it, or unset "
            "KERAS_BACKEND for tensorflow"
        )
    for name in ("KERAS_MAX_EPOCHS", "KERAS_MAX_STEPS_PER_EPOCH"):
        value = os.environ.get(name)
        if value is not None and not re.fullmatch(r"[0-9]+", value.strip()):  # not "²"
            raise RegbenchError(f"{name}={value!r} must be a whole number; or unset it")


def experiment_folder(args: argparse.Namespace, positional: str | None = None) -> str | None:
    """The experiment folder: `--experiment`, a positional DIR, or the deprecated `--out`."""
    old = getattr(args, "old_out", None)
    if old is not None:
        warn("--out is deprecated as the experiment folder; use --experiment")
    chosen = [v for v in (getattr(args, "experiment", None), positional, old) if v is not None]
    if len(set(chosen)) > 1:
        from regbench.errors import RegbenchError

        raise RegbenchError(f"two experiment folders given ({', '.join(chosen)}); give one")
    return chosen[0] if chosen else None


def baseline(name: str) -> str:
    """`--baseline`, checked against the installed regularizers (a typo must not compare every
    cell with nothing); its canonical name back. The default, the built-in `none`, is taken
    without loading the plugins."""
    from regbench.errors import RegbenchError
    from regbench.plugins.manager import registry

    if name == "none":
        return name
    try:
        return registry().get("regularizers", name).name
    except RegbenchError as exc:
        raise RegbenchError(f"--baseline: {exc}") from None


# the settings taken from flags (each flag's dest is its field's name); the folder is read
# by `experiment_folder`, which also takes a reading command's DIR
FLAG_SETTINGS = tuple(s.name for s in SETTINGS if s.spelling and s.name != "experiment")


def experiment(args: argparse.Namespace):
    """The experiment the flags describe: `--config` first, the flags over it."""
    from regbench.design.experiment import Experiment

    flags: dict[str, Any] = {key: getattr(args, key, None) for key in FLAG_SETTINGS}
    flags["experiment"] = experiment_folder(args)
    if flags["arch"] is not None:
        flags["arch"] = [a for a in flags["arch"]]
    if args.config:
        chosen = Experiment.from_config(args.config, **flags)
    else:
        chosen = Experiment.create(**flags)
    from dataclasses import replace

    return replace(chosen, baseline=baseline(chosen.baseline))
