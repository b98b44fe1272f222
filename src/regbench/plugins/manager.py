"""The plugin manager: built-ins first, then each `regbench` entry point on its own.

A plugin that fails to import, names a hook that does not exist, or raises while registering (any
BaseException, `sys.exit` and `os._exit` included: plugins.guard) is recorded with its error;
the others still load. Two plugins claiming one name make that name
unusable with an error naming both distributions.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any

import pluggy

from regbench.errors import PluginError
from regbench.plugins import hookspecs
from regbench.plugins.guard import Guard, describe, guarded
from regbench.plugins.provenance import declared_version, object_hash
from regbench.plugins.regularizer import overrides
from regbench.plugins.versions import api_version, notices
from regbench.version import __version__

BUILTINS = (
    "regbench.builtins.architectures",
    "regbench.builtins.regularizers",
    "regbench.builtins.datasets",
    "regbench.builtins.visualizers",
)
KINDS = ("architectures", "regularizers", "datasets", "visualizers")
PROVENANCE_KINDS = ("architectures", "regularizers")  # what a run's provenance records
ENV_ALLOW = "REGBENCH_LOAD_PLUGINS"


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from: its distribution and version."""

    dist: str
    version: str

    def __str__(self) -> str:
        return f"{self.dist} {self.version}"


@dataclass(frozen=True)
class Entry:
    """One registered architecture, regularizer, dataset or visualizer, and the plugin module
    that registered it."""

    name: str
    obj: Any
    origin: Origin
    module: str = ""

    @cached_property
    def source_hash(self) -> str:
        """The object's declared version (`v1.2`) or a hash of its own code, recorded in the
        provenance of every run (plugins.provenance)."""
        return object_hash(self.obj, self.module)

    @property
    def description(self) -> str:
        return getattr(self.obj, "description", "") or ""


@dataclass(frozen=True)
class Broken:
    """A plugin that could not be loaded or registered, and why."""

    plugin: str
    origin: Origin
    error: str


@dataclass
class Registry:
    """Everything the installed plugins provide, by kind and name."""

    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    clashes: dict[str, dict[str, list[Origin]]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    broken: list[Broken] = field(default_factory=list)
    # objects written for an older plugin API, one line per changed hook they use
    # (plugins.versions): they still work, the old way
    deprecated: list[Broken] = field(default_factory=list)
    keras_hooks: list[tuple[str, Any]] = field(default_factory=list)
    keras_names: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: target, plugin

    def names(self, kind: str) -> list[str]:
        return list(self.entries[kind])

    def get(self, kind: str, name: str) -> Any:
        """The object registered as `name` (or an alias), or a clear error listing valid names."""
        singular = kind.rstrip("s")
        if name in self.clashes[kind]:
            who = " and ".join(str(origin) for origin in self.clashes[kind][name])
            raise PluginError(
                f"{singular} {name!r} is registered by both {who}; uninstall one, or choose "
                f"with {ENV_ALLOW}"
            )
        name = self.aliases[kind].get(name, name)
        if kind == "regularizers" and "+" in name and name not in self.entries[kind]:
            return self.combination(name)
        if name not in self.entries[kind]:
            valid = ", ".join(self.names(kind)) or "none installed"
            raise PluginError(f"unknown {singular} {name!r}; choose from: {valid}{self._failed()}")
        return self.entries[kind][name].obj

    def _failed(self) -> str:
        """For a name not found: the plugins that failed to load, which may have held it."""
        if not self.broken:
            return ""
        who = ", ".join(f"{b.plugin} ({b.error})" for b in self.broken[:3])
        more = f" and {len(self.broken) - 3} more" if len(self.broken) > 3 else ""
        return f" (failed to load: {who}{more}; `regbench list` shows them)"

    def combination(self, name: str) -> Any:
        """`a+b` as one Composite regularizer of the registered `a` and `b`."""
        from regbench.plugins.composition import Composite

        parts = [part.strip() for part in name.split("+")]
        return Composite([self.get("regularizers", part) for part in parts])

    def entry(self, kind: str, name: str) -> Entry:
        """The registry entry of a name or alias (`get` explains an unknown one)."""
        obj = self.get(kind, name)
        return self.entries[kind][obj.name]

    def provenance(self, kind: str, name: str) -> tuple[str, str]:
        """('dist version', source hash) of what provides `name`; for a combination, one of
        each per component, in the combination's order, joined by '+' (a distribution that
        provides two components is listed twice, so both sides split alike)."""
        registered = self.aliases[kind].get(name, name) in self.entries[kind]
        parts = name.split("+") if kind == "regularizers" and not registered else [name]
        entries = [self.entry(kind, part.strip()) for part in parts]
        return "+".join(str(e.origin) for e in entries), "+".join(e.source_hash for e in entries)

    def register_keras_objects(self) -> None:
        """Run every plugin's `register_keras_objects` hook and import every class registered
        by name (Keras is imported by now); a failing one is recorded as broken, the others
        still run. Each runs once: the lists are emptied."""
        hooks, self.keras_hooks = self.keras_hooks, []
        names, self.keras_names = self.keras_names, {}
        calls = [(plugin, function) for plugin, function in hooks] + [
            (plugin, lambda n=name, t=target: _register_keras_name(n, t))
            for name, (target, plugin) in names.items()
        ]
        with guarded() as guard:
            for plugin, call in calls:
                try:
                    call()
                except BaseException as exc:
                    if not guard.own(exc):
                        raise
                    self.broken.append(Broken(plugin, Origin("?", "?"), describe(exc)))

    def _add_keras_name(self, name: str, target: str, plugin: str) -> None:
        package, _, short = name.partition(">")
        module, _, attribute = target.partition(":")
        if not (package and short and module and attribute):
            raise ValueError(
                f"register({name!r}, {target!r}): expected ('package>Name', 'module:attribute')"
            )
        self.keras_names[name] = (target, plugin)

    def _owner(self, kind: str, key: str) -> Entry | None:
        """The entry that `key` already names, as a name or an alias."""
        return self.entries[kind].get(self.aliases[kind].get(key, key))

    def _add(self, kind: str, obj: Any, origin: Origin, module: str = "") -> None:
        name = getattr(obj, "name", "")
        if not name:
            raise TypeError(f"a registered {kind.rstrip('s')} needs a non-empty .name")
        if kind in PROVENANCE_KINDS:
            declared_version(obj)  # a malformed one breaks its plugin now, not a later plan
        api_version(obj)  # so does an API this regbench does not have
        if kind == "regularizers":
            for line in notices(obj, lambda hook: overrides(obj, hook)):
                self.deprecated.append(Broken(module, origin, line))
        existing = self._owner(kind, name)
        if existing is not None:
            self.clashes[kind].setdefault(name, [existing.origin]).append(origin)
            return
        self.entries[kind][name] = Entry(name, obj, origin, module)
        for alias in getattr(obj, "aliases", ()):
            taken = self._owner(kind, alias)
            if taken is not None and taken.name != name:  # an alias never shadows a name
                self.clashes[kind].setdefault(alias, [taken.origin]).append(origin)
                continue
            self.aliases[kind][alias] = name


def _allowed() -> set[str] | None:
    raw = os.environ.get(ENV_ALLOW)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def build_registry(extra_plugins: tuple[tuple[Any, Origin], ...] = ()) -> Registry:
    """Load built-ins, installed entry points and `extra_plugins` (for in-process use and tests)."""
    with guarded() as guard:
        return _build(extra_plugins, guard)


def _build(extra_plugins: tuple[tuple[Any, Origin], ...], guard: Guard) -> Registry:
    pm = pluggy.PluginManager("regbench")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    origins: dict[str, Origin] = {}
    builtin = Origin("regbench", __version__)

    candidates: list[tuple[str, Origin, Any]] = [
        (module, builtin, lambda module=module: importlib.import_module(module))
        for module in BUILTINS
    ]
    allowed = _allowed()
    for ep in sorted(entry_points(group="regbench"), key=lambda ep: ep.name):
        dist = ep.dist.name if ep.dist else "unknown"
        version = ep.dist.version if ep.dist else "?"
        if allowed is not None and dist not in allowed and ep.name not in allowed:
            continue
        candidates.append((f"{dist}:{ep.name}", Origin(dist, version), ep.load))
    for index, (plugin, origin) in enumerate(extra_plugins):
        candidates.append((f"{origin.dist}:{index}", origin, lambda plugin=plugin: plugin))

    for name, origin, load in candidates:
        try:
            pm.register(load(), name=name)
            pm.check_pending()
        except BaseException as exc:  # a broken plugin is reported, never fatal
            if not guard.own(exc):
                raise
            if pm.has_plugin(name):
                pm.unregister(name=name)
            registry.broken.append(Broken(name, origin, describe(exc)))
            continue
        origins[name] = origin

    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():  # in registration order: built-ins first
            origin = origins[impl.plugin_name]
            module = getattr(impl.plugin, "__name__", "")
            try:
                impl.function(
                    register=lambda obj, k=kind, o=origin, m=module: registry._add(k, obj, o, m)
                )
            except BaseException as exc:
                if not guard.own(exc):
                    raise
                registry.broken.append(Broken(impl.plugin_name, origin, describe(exc)))
    registry.keras_hooks = [
        (impl.plugin_name, impl.function) for impl in pm.hook.register_keras_objects.get_hookimpls()
    ]
    for impl in pm.hook.register_keras_names.get_hookimpls():
        try:
            impl.function(
                register=lambda name, target, p=impl.plugin_name: registry._add_keras_name(
                    name, target, p
                )
            )
        except BaseException as exc:
            if not guard.own(exc):
                raise
            origin = origins[impl.plugin_name]
            registry.broken.append(Broken(impl.plugin_name, origin, describe(exc)))
    return registry


def _register_keras_name(name: str, target: str) -> None:
    """Import `module:attribute` and register it with Keras as `package>Name`."""
    from regbench.plugins.keras import import_keras

    module, _, attribute = target.partition(":")
    obj = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    package, _, short = name.partition(">")
    import_keras().saving.register_keras_serializable(package=package, name=short)(obj)


_REGISTRY: Registry | None = None


def keras_with_plugins() -> Any:
    """Keras, with every plugin's `register_keras_objects` hook run and every class registered
    by name imported (once per process): what building or loading a model needs, so a plugin's
    custom layers are known to both."""
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    registry().register_keras_objects()  # runs each hook once: the list is emptied
    return keras


def registry() -> Registry:
    """The process-wide registry, built on first use: fetched once where a command, a library
    call or a worker begins, and passed to what it calls."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def set_registry(plugins: Registry | None) -> Registry | None:
    """Make `plugins` the process-wide registry (None: built again from what is installed, on
    next use); returns the one it replaces, to put back. For tests and tools that embed
    regbench with plugins of their own."""
    global _REGISTRY
    previous, _REGISTRY = _REGISTRY, plugins
    return previous
