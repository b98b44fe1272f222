"""The hooks a regbench plugin can implement: one per plugin kind, each given `register`.

Typed with the objects each `register` takes (imported for type checkers only, as pytest's
hookspecs do): a plugin author's editor and type checker see what to pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from regbench.plugins.architecture import Architecture
    from regbench.plugins.datasets import Dataset
    from regbench.plugins.regularizer import Regularizer
    from regbench.plugins.visualizers import Visualizer

hookspec = pluggy.HookspecMarker("regbench")
hookimpl = pluggy.HookimplMarker("regbench")


@hookspec
def register_architectures(register: Callable[[Architecture], None]) -> None:
    """Register architectures: call register(Architecture(...)) once per model.

    :param register: takes an `Architecture`, a layer table or a builder with named points.
    """


@hookspec
def register_regularizers(register: Callable[[Regularizer], None]) -> None:
    """Register regularizers: call register(SomeRegularizer()) once per regularizer.

    :param register: takes a `Regularizer` (an instance of a subclass, with its hparams).
    """


@hookspec
def register_datasets(register: Callable[[Dataset], None]) -> None:
    """Register datasets: call register(SomeDataset()) once per dataset.

    :param register: takes a `Dataset` (an instance of a subclass that loads its splits).
    """


@hookspec
def register_visualizers(register: Callable[[Visualizer], None]) -> None:
    """Register visualizers: call register(SomeVisualizer()) once per visualizer.

    :param register: takes a `Visualizer` (an instance of a subclass that draws figures).
    """


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
    class and registers it with Keras under that name (as register_keras_serializable would).

    :param register: takes the name Keras saves ("package>Name") and where the class is
        ("module:attribute").
    """
