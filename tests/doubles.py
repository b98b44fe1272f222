"""Test doubles shared by test modules: a plugin made of in-test regularizers, the process's
registry swapped for one that holds it, and the command-line arguments of a harness test
(the fake trainer on a tiny synthetic dataset), so each module does not define its own."""

from __future__ import annotations

from regbench.api import Regularizer, hookimpl
from regbench.plugins import manager
from regbench.plugins.manager import Origin, build_registry

# Train nothing (tests/fake_trainer.py): for tests of the harness rather than of training.
FAKE_TRAINER = ["--trainer", "fake_trainer:train"]
# 70 images of 8x8x3: loading and splitting them costs nothing.
TINY_DATA = ["--dataset", "synthetic", "--dataset-option", "size=70"]
TINY_DATA += ["--dataset-option", "height=8", "--dataset-option", "width=8"]


class RegularizersPlugin:
    """A plugin that registers the regularizers it is given, as an installed one would."""

    def __init__(self, *regularizers: Regularizer) -> None:
        self.regularizers = regularizers

    @hookimpl
    def register_regularizers(self, register):
        for regularizer in self.regularizers:
            register(regularizer)


def registry_with(plugin: object, origin: Origin | None = None):
    """A registry of the built-in plugins and `plugin` (from distribution `t 0` unless told)."""
    return build_registry(extra_plugins=((plugin, origin or Origin("t", "0")),))


def install(request, plugin: object, origin: Origin | None = None):
    """Make `plugin` part of the process-wide registry for one test (`request`'s: the one
    `regbench run`, the trainer and the tuner fetch), as if it were installed; returns it."""
    return use(request, registry_with(plugin, origin))


def use(request, plugins):
    """`plugins` as the process-wide registry until `request`'s test ends (None: rebuilt from
    what is installed, as after a pip install)."""
    previous = manager.set_registry(plugins)
    request.addfinalizer(lambda: manager.set_registry(previous))
    return plugins
