"""Everything a plugin author needs, in one module: import from here, never from the rest.

    from regbench.api import hookimpl, Architecture, BuildContext, Regularizer, HParam, import_keras

The names below are regbench's public plugin interface, version `API_VERSION`; anything else
may move between versions.
"""

from __future__ import annotations

from regbench.errors import PluginError, RegbenchError
from regbench.plugins.architecture import Architecture
from regbench.plugins.building import BuildContext
from regbench.plugins.composition import Composite
from regbench.plugins.context import RunContext, RunState
from regbench.plugins.datasets import (
    Dataset,
    Splits,
    cached_arrays,
    lab_split,
    pool_split,
    to_unit,
)
from regbench.plugins.hookspecs import hookimpl
from regbench.plugins.hparams import HParam
from regbench.plugins.keras import import_keras
from regbench.plugins.points import ANY, BRANCH, NOISE, NORM, Point
from regbench.plugins.randomness import beta as random_beta
from regbench.plugins.regularizer import OptimizerSpec, Regularizer
from regbench.plugins.steps import Step, WeightAverage
from regbench.plugins.table import Classifier, Conv, Dense, Flatten, MaxPool
from regbench.plugins.versions import API_VERSION, RegbenchDeprecationWarning
from regbench.plugins.visualizers import Visualizer, check_image, class_name, layer_outputs

__all__ = [
    "API_VERSION",
    "ANY",
    "BRANCH",
    "NOISE",
    "NORM",
    "Architecture",
    "BuildContext",
    "Classifier",
    "Composite",
    "Conv",
    "Dataset",
    "Dense",
    "Flatten",
    "HParam",
    "MaxPool",
    "OptimizerSpec",
    "PluginError",
    "Point",
    "RegbenchDeprecationWarning",
    "RegbenchError",
    "Regularizer",
    "RunContext",
    "RunState",
    "Splits",
    "Step",
    "Visualizer",
    "WeightAverage",
    "cached_arrays",
    "check_image",
    "class_name",
    "hookimpl",
    "import_keras",
    "lab_split",
    "pool_split",
    "random_beta",
    "layer_outputs",
    "to_unit",
]
