"""The hooks a regbench plugin can implement: one per plugin kind, each given `register`."""

import pluggy

hookspec = pluggy.HookspecMarker("regbench")
hookimpl = pluggy.HookimplMarker("regbench")


@hookspec
def register_architectures(register):
    """Register architectures: call register(Architecture(...)) once per model."""


@hookspec
def register_regularizers(register):
    """Register regularizers: call register(SomeRegularizer()) once per regularizer."""


@hookspec
def register_datasets(register):
    """Register datasets: call register(SomeDataset()) once per dataset."""


@hookspec
def register_visualizers(register):
    """Register visualizers: call register(SomeVisualizer()) once per visualizer."""
