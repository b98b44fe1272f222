"""`tune`: the keras-tuner stage; only this process writes what it finds to the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from regbench.design.experiment import Experiment
from regbench.design.settings import SETTINGS
from regbench.errors import RegbenchError
from regbench.study.settings import (
    Observer,
    check_data,
    executor_options,
    load_data,
    settings_of,
    with_settings,
)

if TYPE_CHECKING:
    from regbench.engine.tuning import Search
    from regbench.plugins.manager import Registry
    from regbench.results.store import Store


@with_settings
def tune(
    base: Experiment | None = None,
    /,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    seeds_per_trial: int = 1,
    observer: Observer | None = None,
    **settings: Any,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The keras-tuner stage: search each cell's declared hyperparameters on validation data.

    Returns the best values per (arch, reg) (also stored for `run(tuned=True)`); cells whose
    regularizer declares no hyperparameters are left out. `seeds_per_trial` trains each trial
    that many times and scores their mean; ties go to the lower validation loss, then the
    earlier trial. `observer` hears each search start, each trial end and each best chosen
    (`Observer.search_started`, `trial_ended`, `search_ended`), once it is stored. The
    `executor` setting "local" (the default) searches each cell in a worker process, as many
    at once as the grid's local executor runs (`workers` on CPU, a GPU each), and a cell that
    fails ends the stage once the others are done; "inprocess" searches the cells one after
    another in this process; "ray" (a grid sent to a cluster) searches in local workers.
    """
    from regbench.plugins.manager import registry

    return search(
        settings_of(base, settings),
        tuner,
        max_trials,
        seeds_per_trial,
        observer or Observer(),
        registry(),
    )


def search(
    experiment: Experiment,
    tuner: str,
    max_trials: int,
    seeds_per_trial: int,
    observer: Observer,
    plugins: Registry,
) -> dict[tuple[str, str], dict[str, Any]]:
    from regbench.design.plan import make_plan
    from regbench.engine.tuning import Search, check_search
    from regbench.results.store import Store

    check_search(tuner, max_trials, seeds_per_trial)
    if experiment.executor == "ray":  # a grid sent to Ray (`run --tune`): searched here
        experiment = replace(experiment, executor="local")
    seed = experiment.seeds[0]  # one split to tune on; the grid repeats the seeds
    cells = make_plan(
        plugins,
        experiment.arch,
        experiment.reg,
        [seed],
        experiment.protocol,
        execution=experiment.execution,
    )
    check_data(cells, experiment, plugins)
    cells = [c for c in cells if plugins.get("regularizers", c.reg).hparams]
    store = Store(experiment.folder)
    searches = [
        Search(
            arch=cell.arch,
            reg=cell.reg,
            protocol=experiment.protocol,
            execution=experiment.execution,
            tuner=tuner,
            max_trials=max_trials,
            seed=seed,
            project_root=store.folder / "tuning",
            executions_per_trial=seeds_per_trial,
        )
        for cell in cells
    ]

    # what a search reports is stored first, then passed to the caller's listener: only
    # this process writes the store, and a crash after a trial loses nothing
    def heard_trial(search: Search, trial: dict[str, Any]) -> None:
        store.record_trial(trial)
        observer.trial_ended(search.arch, search.reg, trial)

    def heard_best(search: Search, best: dict[str, Any]) -> None:
        _record_best(store, best, experiment, seed)
        observer.search_ended(search.arch, search.reg, best)

    try:
        if experiment.executor == "local":
            return _in_workers(searches, experiment, observer, heard_trial, heard_best)
        data = load_data(experiment, experiment.dataset, experiment.dataset_options, seed, plugins)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for one in searches:
            observer.search_started(one.arch, one.reg)
            found[(one.arch, one.reg)] = one.run(
                data, partial(heard_trial, one), partial(heard_best, one)
            )
        return found
    finally:
        store.close()


def _in_workers(
    searches: list[Search],
    experiment: Experiment,
    observer: Observer,
    heard_trial: Callable[[Search, dict[str, Any]], None],
    heard_best: Callable[[Search, dict[str, Any]], None],
) -> dict[tuple[str, str], dict[str, Any]]:
    """The searches in worker processes; a cell that failed is raised once all are done
    (what every cell found is recorded by then)."""
    from regbench.engine.tuning_pool import search_in_workers

    def started(search: Search, worker: str) -> None:
        observer.search_started(search.arch, search.reg)

    ended = search_in_workers(
        searches, executor_options(experiment), started, heard_trial, heard_best
    )
    found = {}
    for cell, values in ended.items():
        if isinstance(values, str):  # the first cell that failed, said as its worker said it
            raise RegbenchError(values)
        found[cell] = dict(values)
    return {(s.arch, s.reg): found[(s.arch, s.reg)] for s in searches}


def _record_best(store: Store, best: dict[str, Any], experiment: Experiment, seed: int) -> None:
    store.record_best(
        best["arch"],
        best["reg"],
        best["values"],
        best["score"],
        best["search_hash"],
        dataset=best["dataset"],
        protocol=tuned_settings(experiment),
        seed=seed,
    )


# the settings of a protocol that `run --tuned` trains as they were tuned: the protocol's
# settings but the dataset (values are looked up per dataset already)
TUNED_SETTINGS = tuple(s.name for s in SETTINGS if s.role == "protocol" and s.name != "dataset")


def tuned_settings(experiment: Experiment) -> dict[str, Any]:
    """The protocol settings an experiment tunes under, as JSON-ready values."""
    found = {}
    for name in TUNED_SETTINGS:
        value = getattr(experiment, name)
        found[name] = dict(value) if name.endswith("_options") else value
    if found["target"] is not None:
        found["target"] = list(found["target"])
    return found
