"""The source check every kit runs: a plugin reaches the backend only through Keras."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path
from typing import Any

from regbench.api import Architecture
from regbench.testing.probes import require

BACKENDS = ("tensorflow", "torch", "jax")  # modules a plugin must reach only through Keras


def _package_files(obj: Any) -> list[Path]:
    """Every .py file of the package that defines `obj` (just its module when top-level, or
    when it is regbench's own)."""
    module = inspect.getmodule(obj)
    if module is None or not getattr(module, "__file__", None):
        return []
    top = sys.modules.get(module.__name__.partition(".")[0])
    if top is not None and getattr(top, "__path__", None) and top.__name__ != "regbench":
        return sorted(Path(next(iter(top.__path__))).rglob("*.py"))
    return [Path(str(module.__file__))]


def _imported_names(node: ast.AST) -> list[str]:
    """The modules a node imports, with a `tf.` attribute counted as tensorflow."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return ["tensorflow"] if node.value.id == "tf" else []
    return []


def check_backend_neutral(plugin: Any) -> None:
    """The whole package defining `plugin` (a regularizer, an architecture's builder, a
    dataset, a visualizer, or a module) reaches the backend only through Keras: no tensorflow,
    torch or jax import and no `tf.` attribute, so it runs on every Keras backend."""
    targets: list[Any] = [plugin] if inspect.ismodule(plugin) else []
    if isinstance(plugin, Architecture):
        targets = [plugin.builder] if plugin.builder is not None else []
    elif not targets:
        targets = [cls for cls in type(plugin).__mro__ if cls.__module__ != "builtins"]
    files = {path for target in targets for path in _package_files(target)}
    for path in sorted(files):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError) as exc:
            raise AssertionError(f"cannot read the source {path}: {exc}") from exc
        for node in ast.walk(tree):
            for name in _imported_names(node):
                require(
                    name.split(".")[0] not in BACKENDS,
                    f"{path.stem} ({path}) line {getattr(node, 'lineno', '?')} uses {name} "
                    "directly; use keras.ops",
                )
