"""Experiment files: a TOML table of the same settings the `run` flags take."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError

KEYS = {
    "name",
    "arch",
    "reg",
    "dataset",
    "dataset_options",
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "seeds",
    "target",
    "params",
    "out",
    "jit_compile",
    "precision",
    "steps_per_execution",
    "pipeline",
}


def packaged_experiments() -> list[str]:
    folder = resources.files("regbench") / "experiments"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_config(name_or_path: str) -> dict[str, Any]:
    """Read an experiment file (a path, or the name of one shipped with regbench)."""
    path = Path(name_or_path)
    if not path.exists() and name_or_path in packaged_experiments():
        text = (resources.files("regbench") / "experiments" / f"{name_or_path}.toml").read_text()
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            shipped = ", ".join(packaged_experiments())
            raise RegbenchError(
                f"cannot read config {name_or_path}: {exc.strerror or exc}; give a TOML file "
                f"or one of the shipped experiments ({shipped})"
            ) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegbenchError(f"config {name_or_path} is not valid TOML: {exc}") from None
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise RegbenchError(
            f"config {name_or_path}: unknown key {unknown[0]!r}; "
            f"known keys: {', '.join(sorted(KEYS))}"
        )
    return config
