"""The plugin API's version, and what changed between versions.

A plugin object may say which API it was written for (`api_version`; a Regularizer without
one was written for API 1, before versions existed). A hook whose contract changed since keeps
working the old way for it, with a deprecation warning naming the change; an object written for
an API newer than this regbench, or with a malformed version, breaks its plugin at load with
one line.
"""

from __future__ import annotations

import warnings
from typing import Any

from regbench.errors import PluginError

API_VERSION = 2
DOCS = "docs/plugins.md#plugin-api-versions"

# the hooks whose contract changed, by the version that changed them
CHANGES: dict[int, dict[str, str]] = {
    2: {
        "optimizer": (
            "the optimizer hook's learning_rate is now the protocol's rate under its schedule "
            "(a number or a Keras LearningRateSchedule); under API 1 it gets a number and the "
            "protocol's schedule is applied to the number it returns"
        ),
    },
}


class RegbenchDeprecationWarning(DeprecationWarning):
    """A plugin relies on a contract that a newer plugin API changed."""


def api_version(obj: Any) -> int:
    """The API `obj` was written for, checked: an int from 1 to API_VERSION."""
    version = getattr(obj, "api_version", API_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PluginError(
            f"{getattr(obj, 'name', obj)!r} declares api_version {version!r}; it must be a "
            f"whole number from 1 to {API_VERSION}"
        )
    if version > API_VERSION:
        raise PluginError(
            f"{getattr(obj, 'name', obj)!r} was written for regbench plugin API {version}; this "
            f"regbench supports API 1 to {API_VERSION}: upgrade regbench"
        )
    return version


def changed_since(obj: Any, hook: str) -> str | None:
    """What changed in `hook`'s contract since the API `obj` was written for (None: nothing)."""
    version = api_version(obj)
    for later in range(version + 1, API_VERSION + 1):
        if hook in CHANGES.get(later, {}):
            return CHANGES[later][hook]
    return None


def notices(obj: Any, overridden: Any) -> list[str]:
    """One line per hook `obj` overrides (`overridden(hook)`) whose contract changed since the
    API it was written for: what `regbench list` shows and the deprecation warning says."""
    lines = []
    for changes in CHANGES.values():
        for hook in changes:
            change = changed_since(obj, hook)
            if change and overridden(hook):
                lines.append(
                    f"{obj.name} was written for plugin API {api_version(obj)}: {change}; set "
                    f"api_version = {API_VERSION} once it takes the new form (see {DOCS})"
                )
    return lines


def warn_legacy(obj: Any, hook: str) -> None:
    """The deprecation warning for calling `hook` of `obj` the old way."""
    change = changed_since(obj, hook)
    if change:
        warnings.warn(
            f"{obj.name} was written for regbench plugin API {api_version(obj)}: {change}; set "
            f"api_version = {API_VERSION} once it takes the new form (see {DOCS})",
            RegbenchDeprecationWarning,
            stacklevel=3,
        )
