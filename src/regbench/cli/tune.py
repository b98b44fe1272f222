"""`regbench tune`: the keras-tuner stage, one line per finished trial with the time left."""

from __future__ import annotations

import argparse
import time
from typing import Any

from regbench.cli.common import EXIT_OK, duration, experiment, print_json, say
from regbench.study.settings import Observer


def cmd_tune(args: argparse.Namespace) -> int:
    """Search each cell's declared hyperparameters on validation; print the best values."""
    return tune_stage(args, as_json=args.json, quiet=args.json)


def tune_stage(args: argparse.Namespace, as_json: bool, quiet: bool) -> int:
    """The tuning stage, its trials and best values printed (on stderr when `quiet`: `run
    --tune --json` keeps stdout for the grid's JSON), or its best values as JSON."""
    import regbench

    chosen = experiment(args)
    shown = TuningProgress(chosen.epochs, args, quiet, _cells_to_tune(chosen))
    found = regbench.tune(
        chosen,
        tuner=args.tuner,
        max_trials=args.max_trials,
        seeds_per_trial=args.seeds_per_trial,
        observer=shown,
    )
    took = shown.took
    if as_json:
        print_json(
            {
                "folder": chosen.folder,
                "best": [
                    {"arch": a, "reg": r, "values": values, "seconds": took.get((a, r))}
                    for (a, r), values in found.items()
                ],
            }
        )
        return EXIT_OK
    for (arch, reg), best in found.items():
        values = ", ".join(f"{k}={v:.4g}" for k, v in best.items())
        say(f"best {arch} + {reg}: {values} ({took.get((arch, reg), 0.0):.1f} s)", stderr=quiet)
    if not found:
        say("nothing to tune: the chosen regularizers declare no hyperparameters", stderr=quiet)
    return EXIT_OK


class TuningProgress(Observer):
    """A line as each cell's search starts, one per finished trial with the time left, and
    ties said as they are broken."""

    def __init__(self, epochs: int, args: argparse.Namespace, quiet: bool, cells: int) -> None:
        self.epochs, self.tuner, self.trials, self.quiet = (
            epochs,
            args.tuner,
            args.max_trials,
            quiet,
        )
        self.eta = TrialClock(cells * args.max_trials)
        self.began: dict[tuple[str, str], float] = {}
        self.took: dict[tuple[str, str], float] = {}  # seconds each cell's search took

    def search_started(self, arch: str, reg: str) -> None:
        self.began[(arch, reg)] = time.perf_counter()
        say(
            f"tuning {arch} + {reg}: {self.tuner}, {self.trials} trials, "
            f"{self.epochs} epoch(s) each",
            stderr=self.quiet,
        )

    def trial_ended(self, arch: str, reg: str, trial: dict[str, Any]) -> None:
        values = ", ".join(f"{k}={v:.4g}" for k, v in trial["values"].items())
        score = "" if trial["score"] is None else f" val_accuracy {trial['score']:.4f}"
        error = f" {trial['error']}" if trial.get("error") else ""
        say(
            f"  {arch} + {reg} trial {trial['trial_id']}: {trial['status']}{score} "
            f"[{values}]{error} ({self.eta.tick()})",
            stderr=self.quiet,
        )

    def search_ended(self, arch: str, reg: str, best: dict[str, Any]) -> None:
        self.took[(arch, reg)] = time.perf_counter() - self.began[(arch, reg)]
        if best["tied"]:
            say(
                f"  tie: trials {', '.join(best['tied'])} scored {best['score']:.4f}; "
                f"chose {best['trial_id']} ({best['rule']})",
                stderr=self.quiet,
            )


class TrialClock:
    """Counts finished trials against the planned number and says how long the rest will
    take at the mean pace so far (a tuner may stop a cell early: then it is an upper bound)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def tick(self) -> str:
        self.done += 1
        left = max(0, self.total - self.done)
        pace = (time.perf_counter() - self.start) / self.done
        if not left:
            return f"{self.done}/{self.total}"
        return f"{self.done}/{self.total}, about {duration(pace * left)} left"


def _cells_to_tune(chosen) -> int:
    """The cells the tuning stage will search: those whose regularizer declares
    hyperparameters (found as the stage finds them, without building a model)."""
    from regbench.design.plan import make_plan
    from regbench.plugins.manager import registry

    plugins = registry()
    cells = make_plan(
        plugins,
        chosen.arch,
        chosen.reg,
        [chosen.seeds[0]],
        chosen.protocol,
        execution=chosen.execution,
        applicability=False,
    )
    return sum(bool(plugins.get("regularizers", cell.reg).hparams) for cell in cells)
