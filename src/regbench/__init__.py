"""regbench: a plugin-based benchmark harness for regularization in CNNs.

The library API (`regbench.run`, `plan`, `tune`, `final`, `report`, `visualize`, `load` and
`Experiment`) is imported on first use, so `import regbench` stays light. Plugin authors import
from `regbench.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.plugins.hookspecs import hookimpl  # kept here for plugins written for 0.1
from regbench.version import __version__

if TYPE_CHECKING:
    from regbench.design.experiment import Experiment
    from regbench.results.reader import Results
    from regbench.study import (
        Interrupted,
        Observer,
        Plan,
        final,
        load,
        plan,
        report,
        run,
        tune,
        visualize,
    )

__all__ = [
    "Experiment",
    "Interrupted",
    "Observer",
    "Plan",
    "Results",
    "__version__",
    "final",
    "hookimpl",
    "load",
    "plan",
    "report",
    "run",
    "tune",
    "visualize",
]
_STUDY = {"Interrupted", "Observer", "Plan", "final", "load", "plan", "report", "run", "tune"}
_STUDY.add("visualize")


def __getattr__(name: str) -> Any:
    if name in _STUDY:
        from regbench import study

        return getattr(study, name)
    if name == "Experiment":
        from regbench.design.experiment import Experiment

        return Experiment
    if name == "Results":
        from regbench.results.reader import Results

        return Results
    raise AttributeError(f"module 'regbench' has no attribute {name!r}")
