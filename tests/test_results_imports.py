"""The results stage's boundaries: the engine never touches the store, SQL lives in results/
only, and no module of results/ imports itself round in a circle (function-level imports
count: they run too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import regbench.engine
import regbench.results

SRC = Path(regbench.results.__file__).parent.parent
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE FROM|CREATE TABLE|ALTER TABLE)\b")


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it; `from a import b` names a.b when a.b is
    a module of the package, else a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = {f"{node.module}.{a.name}" for a in node.names}
            modules = {m for m in modules if _file(m) is not None}
            found |= modules or {node.module}
    return found


def _file(module: str) -> Path | None:
    base = SRC.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_engine_never_imports_the_results_stage():
    for path in Path(regbench.engine.__file__).parent.rglob("*.py"):
        assert not {m for m in imports(path) if m.startswith("regbench.results")}, path


def test_sql_is_run_in_results_only():
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "results"):
            continue
        strings = [
            node.value
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        assert not [s for s in strings if SQL.search(s)], path


def test_no_import_cycle_inside_results():
    folder = SRC / "results"
    graph = {
        _module(p): {m for m in imports(p) if m.startswith("regbench.results")}
        for p in folder.rglob("*.py")
    }
    for start in graph:
        seen, stack = set(), list(graph[start])
        while stack:
            module = stack.pop()
            assert module != start, f"{start} imports itself through {sorted(seen)}"
            if module not in seen:
                seen.add(module)
                stack.extend(graph.get(module, ()))
