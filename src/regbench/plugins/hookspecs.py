"""The hooks a regbench plugin can implement: one per plugin kind, each given `register`."""

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("regbench")
hookimpl = pluggy.HookimplMarker("regbench")


@hookspec
def register_architectures(register: Callable[[Any], None]) -> None:
    """Register architectures: call register(Architecture(...)) once per model."""


@hookspec
def register_regularizers(register: Callable[[Any], None]) -> None:
    """Register regularizers: call register(SomeRegularizer()) once per regularizer."""


@hookspec
def register_datasets(register: Callable[[Any], None]) -> None:
    """Register datasets: call register(SomeDataset()) once per dataset."""


@hookspec
def register_visualizers(register: Callable[[Any], None]) -> None:
    """Register visualizers: call register(SomeVisualizer()) once per visualizer."""


@hookspec
def register_keras_objects() -> None:
    """Register custom Keras classes (layers, losses, schedules), e.g. by importing the module
    that decorates them with keras.saving.register_keras_serializable. regbench calls this once
    per process before it builds or loads the first model, so a saved
    model with a plugin's layer reloads in a fresh process; `regbench list` never calls it."""


@hookspec
def register_keras_names(register: Callable[[str, str], None]) -> None:
    """Register custom Keras classes by name, to be imported only when a model is built or
    loaded: call register("package>Name", "module:attribute") once per class. Listing records
    the strings and imports nothing; before the first build or load regbench imports each
    class and registers it with Keras under that name (as register_keras_serializable would)."""
