"""What every library function shares: the settings as keywords or an Experiment, the observer
that hears a grid, the errors and warnings it raises, and the data each run loads."""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.design.experiment import Experiment

if TYPE_CHECKING:
    from regbench.design.plan import RunSpec
    from regbench.plugins.datasets import Splits
    from regbench.plugins.manager import Registry


class Observer:
    """What a caller hears while runs train; override what you want to show."""

    def begin(self, total: int, done: int, folder: Path) -> None:
        """`total` runs will train; `done` were already finished in `folder`."""

    def estimated(self, seconds: float) -> None:
        """Before any run starts: the runs to train will take about `seconds` of training,
        one after another, by the seconds per epoch earlier runs of their cells took (not
        called where a cell has no finished run to time)."""

    def started(self, run_id: str, worker: str) -> None:
        """A run started on a worker."""

    def update(self, info: dict[str, Any]) -> None:
        """An epoch of a run ended (`run_id`, `epoch`, `epochs` and the epoch's metrics)."""

    def finished(self, row: dict[str, Any]) -> None:
        """A run ended, ok or not; `row` is its results row."""

    def end(self) -> None:
        """Training stopped (finished, failed or interrupted)."""

    def search_started(self, arch: str, reg: str) -> None:
        """`tune`: the search of a cell's hyperparameters started."""

    def trial_ended(self, arch: str, reg: str, trial: dict[str, Any]) -> None:
        """`tune`: a trial ended, ok or failed (`trial` is its row of the trials table: id,
        status, score, values, error), and is stored."""

    def search_ended(self, arch: str, reg: str, best: dict[str, Any]) -> None:
        """`tune`: a cell's search chose its best values (`best`: trial_id, values, score, and
        the trials it `tied` with under `rule`), and they are stored."""

    def note(self, text: str) -> None:
        """A line the caller should read before training (e.g. what `tuned` trains under);
        by default a `TunedProtocol` warning."""
        warnings.warn(text, TunedProtocol, stacklevel=3)  # note, run, the caller


class TunedProtocol(UserWarning):
    """`run(tuned=True)` trains values under the protocol they were tuned under, or says
    that it does not (the caller chose another), or that a grid seed is the tuning seed."""


class FailedRuns(UserWarning):
    """`run` finished, but some runs failed, diverged or timed out (their rows say why)."""


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the grid; finished runs are kept in `folder`."""

    def __init__(self, folder: Path, finished: int) -> None:
        super().__init__(f"interrupted after {finished} finished run(s) in {folder}")
        self.folder, self.finished = folder, finished


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan and its state in the experiment folder."""

    spec: RunSpec
    state: str  # done, pending, failed or skipped (not applicable: `spec.skip` says why)
    status: str | None  # the stored status, when there is one
    why: str | None = None  # why a run of the same science is pending again (plugins changed)


@dataclass(frozen=True)
class Plan:
    """What `run` would train, and what is already done."""

    experiment: Experiment
    folder: Path
    runs: tuple[PlannedRun, ...]
    # measured fit seconds per epoch of (arch, reg, dataset), from the folder's ok runs
    seconds_per_epoch: Mapping[tuple[str, str, str], float] = field(default_factory=dict)

    @property
    def specs(self) -> list[RunSpec]:
        return [r.spec for r in self.runs]

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.runs)

    def estimate(self) -> tuple[float, int]:
        """(seconds, runs): the training time of the pending and failed runs whose cell has a
        measured time per epoch, one run after another, and how many runs that covers."""
        todo = [r.spec for r in self.runs if r.state in ("pending", "failed")]
        keys = [(s.arch, s.reg, s.protocol.dataset) for s in todo]
        known = [(s, k) for s, k in zip(todo, keys, strict=True) if k in self.seconds_per_epoch]
        seconds = sum(self.seconds_per_epoch[k] * s.protocol.epochs for s, k in known)
        return seconds, len(known)


def measured(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
    """Mean fit seconds per epoch of each (arch, reg, dataset) among stored ok runs."""
    times: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        took, epochs = row.get("train_time_s"), row.get("epochs_run")
        if row.get("status") == "ok" and took and epochs:
            key = (row["arch"], row["reg"], row["dataset"])
            times.setdefault(key, []).append(took / epochs)
    return {key: sum(values) / len(values) for key, values in times.items()}


def with_settings(function: Callable[..., Any]) -> Callable[..., Any]:
    """Show every `Experiment` setting, typed and with its default, in the signature
    (`help()`, `inspect.signature`, editors) and docstring of a function taking `**settings`."""
    settings = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=f.default if f.default is not MISSING else f.default_factory(),  # type: ignore[operator]
            annotation=f.type,  # as written in Experiment, like this module's own annotations
        )
        for f in fields(Experiment)
    ]
    own = [
        p for p in inspect.signature(function).parameters.values() if p.kind is not p.VAR_KEYWORD
    ]
    function.__signature__ = inspect.signature(function).replace(  # type: ignore[attr-defined]
        parameters=[*own, *settings]
    )
    listed = "\n".join(f"    {p.name}: {p.annotation} = {p.default!r}" for p in settings)
    function.__doc__ = (
        f"{inspect.cleandoc(function.__doc__ or '')}\n\n"
        "Settings, as keywords (or an `Experiment` first, the keywords over it), validated as\n"
        "`Experiment.create` does: Python values, or the strings the matching command-line\n"
        f"flag takes; None keeps the default.\n\n{listed}"
    )
    return function


def settings_of(experiment: Experiment | None, settings: Mapping[str, Any]) -> Experiment:
    if experiment is None:
        return Experiment.create(**settings)
    return experiment.update(**settings) if settings else experiment


# ---------------------------------------------------------------- data


def load_options(experiment: Experiment, dataset_options: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset's plugin options plus where its data and cache are."""
    from regbench.plugins.datasets import default_cache_dir

    cache = experiment.cache_dir or default_cache_dir()
    return {**dataset_options, "data_dir": experiment.data_dir, "cache_dir": cache}


def executor_options(experiment: Experiment) -> Any:
    """How the experiment's runs (or searches) are spread over processes and devices."""
    from regbench.engine import executor as ex

    return ex.ExecutorOptions(
        data_dir=experiment.data_dir,
        cache_dir=load_options(experiment, {})["cache_dir"],
        models_dir=experiment.folder / "models",
        trainer=experiment.trainer,
        devices=None if experiment.devices is None else list(experiment.devices),
        per_device=experiment.per_device,
        pack=experiment.pack,
        workers=experiment.workers,
        ray_address=experiment.ray_address,
        max_runs_per_worker=experiment.max_runs_per_worker,
        run_timeout=experiment.run_timeout,
    )


def check_data(specs: Sequence[RunSpec], experiment: Experiment, plugins: Registry) -> None:
    """Check each dataset once here (found, readable, its shape) and that every architecture
    fits it, so bad data fails with one line before anything is written (and the array cache
    is warm for the workers)."""
    from regbench.plugins.building import check_input

    shapes: dict[str, tuple[int, int, int]] = {}
    for spec in specs:
        protocol = spec.protocol
        key = json.dumps([protocol.dataset, dict(protocol.dataset_options)], sort_keys=True)
        if key not in shapes:
            plugin = plugins.get("datasets", protocol.dataset)
            shapes[key] = plugin.input_shape(load_options(experiment, protocol.dataset_options))
        check_input(plugins.get("architectures", spec.arch), shapes[key])


def load_data(
    experiment: Experiment, dataset: str, options: Mapping[str, Any], seed: int, plugins: Registry
) -> Splits:
    plugin = plugins.get("datasets", dataset)
    return plugin.load(seed, load_options(experiment, options))
