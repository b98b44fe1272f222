"""regbench as a library: everything a command does, callable from Python.

    import regbench
    results = regbench.run(arch=["model1"], reg=["none", "dropout"], dataset="digits", epochs=1)
    results.leaderboard()

Each function takes an `Experiment` or the same settings as keywords (validated by
`Experiment.create`), and returns data: the CLI only parses its flags into these calls and
prints what they return.
"""

from regbench.study.after import final, report, visualize
from regbench.study.grid import load, plan, run
from regbench.study.settings import (
    FailedRuns,
    Interrupted,
    Observer,
    Plan,
    PlannedRun,
    TunedProtocol,
    check_data,
    load_options,
)
from regbench.study.tuning import tune

__all__ = [
    "FailedRuns",
    "TunedProtocol",
    "Interrupted",
    "Observer",
    "Plan",
    "PlannedRun",
    "check_data",
    "final",
    "load",
    "load_options",
    "plan",
    "report",
    "run",
    "tune",
    "visualize",
]
