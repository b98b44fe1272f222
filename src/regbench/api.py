"""Everything a plugin author needs, in one module: import from here, never from the rest.

    from regbench.api import hookimpl, Regularizer, HParam, Point, import_keras

The names below are regbench's public plugin interface; anything else may move between
versions.
"""

from __future__ import annotations

from regbench.errors import PluginError, RegbenchError
from regbench.plugins.datasets import Dataset, Splits, cached_arrays, lab_split, to_unit
from regbench.plugins.hookspecs import hookimpl
from regbench.plugins.keras import import_keras
from regbench.plugins.seam import (
    ANY,
    NOISE,
    NORM,
    Architecture,
    Classifier,
    Conv,
    Dense,
    Flatten,
    HParam,
    MaxPool,
    OptimizerSpec,
    Point,
    Regularizer,
)
from regbench.plugins.visualizers import Visualizer, check_image, class_name, layer_outputs

__all__ = [
    "ANY",
    "NOISE",
    "NORM",
    "Architecture",
    "Classifier",
    "Conv",
    "Dataset",
    "Dense",
    "Flatten",
    "HParam",
    "MaxPool",
    "OptimizerSpec",
    "PluginError",
    "Point",
    "RegbenchError",
    "Regularizer",
    "Splits",
    "Visualizer",
    "cached_arrays",
    "check_image",
    "class_name",
    "hookimpl",
    "import_keras",
    "lab_split",
    "layer_outputs",
    "to_unit",
]
