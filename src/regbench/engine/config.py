"""Experiment files: a TOML table of the same settings the `run` flags take."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(v: Any) -> bool:
    return _text(v) or (isinstance(v, list) and all(map(_text, v)))


def _table_of_tables(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(t, dict) for t in v.values())


# each key with the check its value must pass and what to say when it does not
KEYS: dict[str, tuple[Any, str]] = {
    "name": (_text, "a string"),
    "arch": (_names, "a name or a list of names"),
    "reg": (_names, "a name or a list of names"),
    "dataset": (_text, "a string"),
    "dataset_options": (lambda v: isinstance(v, dict), "a table"),
    "epochs": (_whole, "a whole number"),
    "batch_size": (_whole, "a whole number"),
    "optimizer": (_text, "a string"),
    "learning_rate": (lambda v: _whole(v) or isinstance(v, float), "a number"),
    "seeds": (
        lambda v: _whole(v) or (isinstance(v, list) and all(map(_whole, v))),
        "a count or a list of whole numbers",
    ),
    "target": (_text, 'a string like "val_accuracy=0.5"'),
    "params": (_table_of_tables, "a table of tables, e.g. [params.dropout] rate = 0.2"),
    "out": (_text, "a string"),
    "jit_compile": (_text, "a string"),
    "precision": (_text, "a string"),
    "steps_per_execution": (_whole, "a whole number"),
    "pipeline": (_text, "a string"),
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
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise RegbenchError(
            f"config {name_or_path}: unknown key {unknown[0]!r}; "
            f"known keys: {', '.join(sorted(KEYS))}"
        )
    for key, value in config.items():
        check, expected = KEYS[key]
        if not check(value):
            raise RegbenchError(f"config {name_or_path}: {key} must be {expected}; got {value!r}")
    return config
