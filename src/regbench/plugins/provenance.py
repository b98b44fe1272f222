"""What a run records about the code of a registered object: a version its author declares, or a
hash of its own source and of the code of its own package that it uses.

Per object, not per package, so that editing one regularizer of a package re-queues only the
cells that use it. The source is read from the files and parsed with `ast` (nothing imported):

- the object's own definition: a class or function its source; an instance of the plugin's own
  class that class, and the module-level statement that binds the instance, if one does
  (`STRONG = Shake(amount=0.9)`); an instance of one of regbench's seam classes
  (`Architecture(...)`) the module-level statement that binds it (`RESNET20 = Architecture(...)`),
  or, bound nowhere, the whole module that registered it;
- then, transitively, every module-level definition of the same module that it names (helper
  functions, base classes, constants), and what it imports from its own package: a named
  definition of the imported module (`from pkg.layers import DropBlock`), or a whole module
  (`import pkg.layers`, `from pkg import layers`).

Code outside the object's package (regbench itself, Keras, numpy) is not hashed: the
distribution versions of the run record it. The package of regbench's own built-ins is
`regbench.builtins`, not `regbench`: the harness is versioned by regbench's version.

An object (or its class) with a `version` string declares its version: the hash is then
`v<version>` and its source is not read, so the author decides when results go stale.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SEAM = "regbench.plugins"  # the base classes and helpers plugins build their objects from
Unit = tuple[str, str | None]  # (module, top-level name); None: the whole module
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def declared_version(obj: Any) -> str | None:
    """The `version` the object or its class declares, or None; a version must be a non-empty
    string without spaces or "+" (it is joined by "+" in a combination's provenance)."""
    version = getattr(obj, "version", None)
    if version is None:
        return None
    if not isinstance(version, str) or not version or any(c == "+" or c.isspace() for c in version):
        name = getattr(obj, "name", obj)
        raise TypeError(
            f"{name!r} declares version {version!r}: a version is a non-empty string "
            'without spaces or "+"'
        )
    return version


def object_hash(obj: Any, registered_by: str) -> str:
    """`v<version>` when the object declares one, else a short hash of its source and of the
    code of its package it uses (see the module's docstring); "" when no source is found.
    `registered_by` is the module whose hook registered it."""
    version = declared_version(obj)
    if version is not None:
        return f"v{version}"
    sources = _closure(_starts(obj, registered_by))
    if not any(sources.values()):
        return ""
    digest = hashlib.sha256()
    for key in sorted(sources):
        digest.update(f"{key}\0{sources[key]}\0".encode())
    return digest.hexdigest()[:12]


def _starts(obj: Any, registered_by: str) -> list[Unit]:
    """Where the object is defined: its own class or function, and the statement binding it."""
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return [_unit_of(obj)]
    cls = type(obj)
    bound = _binding(obj, registered_by)
    if not cls.__module__.startswith(SEAM):
        return [_unit_of(cls), *([bound] if bound else [])]
    return [bound or (registered_by, None)]


def _unit_of(definition: Any) -> Unit:
    """A class or function as a top-level name of its module (a nested one: the top-level
    definition that holds it)."""
    return definition.__module__, definition.__qualname__.split(".")[0]


def _binding(obj: Any, registered_by: str) -> Unit | None:
    """The module-level name that an assignment in the registering package binds to `obj`
    (the registering module first), or None."""
    scope = _scope(registered_by)
    modules = sorted(m for m in list(sys.modules) if m == scope or m.startswith(f"{scope}."))
    for module in sorted(modules, key=lambda m: m != registered_by):
        loaded, found = sys.modules.get(module), _parsed(module)
        if loaded is None or found is None:
            continue
        for name, value in vars(loaded).items():
            if value is obj and name in found[1]:
                return module, name
    return None


def _scope(module: str) -> str:
    """The package whose code counts as an object's own: its top-level package; for regbench's
    own objects, the subpackage that defines them (regbench.builtins)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "regbench" else parts[0]


def _closure(starts: list[Unit]) -> dict[str, str]:
    """'module:name' -> source of every unit reachable from `starts` within their package."""
    sources: dict[str, str] = {}
    todo = list(starts)
    while todo:
        module, name = todo.pop()
        key = f"{module}:{name or '*'}"
        if key in sources:
            continue
        found = _parsed(module)
        if found is None:
            sources[key] = ""
            continue
        text, definitions, imports = found
        scope = _scope(module)
        if name is None:  # a whole module: everything it imports from its package
            sources[key] = text
            todo += _resolved(module, scope, _imports_in(_tree(text)))
            continue
        nodes = definitions.get(name, [])
        sources[key] = "\n".join(_segment(text, node) for node in nodes)
        todo += _resolved(module, scope, imports.get(name, []))  # a name it imports: follow it
        for node in nodes:
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            todo += [(module, n) for n in sorted(used & definitions.keys()) if n != name]
            aliases = [a for n in sorted(used) for a in imports.get(n, [])]
            todo += _resolved(module, scope, aliases + _imports_in(node))  # and in its body
    return sources


Alias = tuple[ast.Import | ast.ImportFrom, ast.alias]


def _imports_in(node: ast.AST) -> list[Alias]:
    """Every name that an import statement anywhere in `node` imports."""
    found = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return [(statement, alias) for statement in found for alias in statement.names]


def _resolved(module: str, scope: str, aliases: list[Alias]) -> list[Unit]:
    """The units of `scope` that imports in `module` name: a whole module (`import pkg.mod`,
    `from pkg import mod`) or one of its top-level names (`from pkg.mod import name`)."""
    units: list[Unit] = []
    for statement, alias in aliases:
        if isinstance(statement, ast.Import):
            units += [(alias.name, None)] if _within(alias.name, scope) else []
            continue
        source = _absolute(module, statement.module or "", statement.level)
        if not _within(source, scope):
            continue
        if alias.name == "*":
            units.append((source, None))
        elif _file(f"{source}.{alias.name}") is not None:
            units.append((f"{source}.{alias.name}", None))
        else:
            units.append((source, alias.name))
    return units


def _absolute(module: str, target: str, level: int) -> str:
    """An import's module name, a relative one (`from .layers import X`) made absolute."""
    if not level:
        return target
    package = module if _is_package(module) else module.rpartition(".")[0]
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{target}" if target else base


def _within(module: str, scope: str) -> bool:
    return module == scope or module.startswith(f"{scope}.")


def _is_package(module: str) -> bool:
    file = _file(module)
    return file is not None and file.name == "__init__.py"


def _file(module: str) -> Path | None:
    """The source file of `module`, found without importing it."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
        return Path(file) if file and file.endswith(".py") else None
    top, *rest = module.split(".")
    if not rest:
        return None
    for root in getattr(sys.modules.get(top), "__path__", []):
        base = Path(root, *rest)
        for candidate in (base.parent / f"{base.name}.py", base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


Parsed = tuple[str, dict[str, list[ast.stmt]], dict[str, list[Alias]]]


def _parsed(module: str) -> Parsed | None:
    """A module's source, its top-level definitions by name and the import statements of
    each name it binds by importing (at the top level); None without a readable source."""
    file = _file(module)
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text, *_names(text)


@functools.lru_cache(maxsize=256)
def _tree(text: str) -> ast.Module:
    return ast.parse(text)


@functools.lru_cache(maxsize=256)
def _names(text: str) -> tuple[dict[str, list[ast.stmt]], dict[str, list[Alias]]]:
    definitions: dict[str, list[ast.stmt]] = {}
    imports: dict[str, list[Alias]] = {}
    for statement in _top_level(_tree(text).body):
        if isinstance(statement, ast.Import | ast.ImportFrom):
            for alias in statement.names:
                bound = alias.asname or alias.name.split(".")[0]
                imports.setdefault(bound, []).append((statement, alias))
        elif isinstance(statement, DEFINITIONS):
            for name in _bound(statement):
                definitions.setdefault(name, []).append(statement)
    return definitions, imports


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """A module's statements, those inside top-level `if`, `try` and `with` blocks included."""
    for statement in body:
        if isinstance(statement, ast.If | ast.Try | ast.With):
            blocks = [statement.body, getattr(statement, "orelse", [])]
            blocks += [getattr(statement, "finalbody", [])]
            blocks += [handler.body for handler in getattr(statement, "handlers", [])]
            for block in blocks:
                yield from _top_level(block)
        else:
            yield statement


def _bound(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    else:
        assert isinstance(statement, ast.AnnAssign)
        targets = [statement.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _segment(text: str, node: ast.stmt) -> str:
    """A statement's source, with its decorators."""
    decorators = getattr(node, "decorator_list", [])
    parts = [ast.get_source_segment(text, item) or "" for item in [*decorators, node]]
    return "\n".join(parts)
