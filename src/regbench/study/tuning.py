"""`tune`: the keras-tuner stage; only this process writes what it finds to the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from regbench.engine.experiment import Experiment
from regbench.engine.plan import Protocol
from regbench.errors import RegbenchError
from regbench.study.settings import check_data, load_data, settings_of, with_settings

if TYPE_CHECKING:
    from regbench.results.store import Store


@with_settings
def tune(
    base: Experiment | None = None,
    /,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    on_trial: Callable[[str, str, dict[str, Any]], None] | None = None,
    on_cell: Callable[[str, str], None] | None = None,
    on_best: Callable[[str, str, dict[str, Any]], None] | None = None,
    seeds_per_trial: int = 1,
    **settings: Any,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The keras-tuner stage: search each cell's declared hyperparameters on validation data.

    Returns the best values per (arch, reg) (also stored for `run(tuned=True)`); cells whose
    regularizer declares no hyperparameters are left out. `seeds_per_trial` trains each trial
    that many times and scores their mean; ties go to the lower validation loss, then the
    earlier trial (`on_best` hears which trials tied).
    """
    return search(
        settings_of(base, settings),
        tuner,
        max_trials,
        on_trial,
        on_cell,
        on_best,
        seeds_per_trial,
    )


def search(
    experiment: Experiment,
    tuner: str,
    max_trials: int,
    on_trial: Callable[[str, str, dict[str, Any]], None] | None = None,
    on_cell: Callable[[str, str], None] | None = None,
    on_best: Callable[[str, str, dict[str, Any]], None] | None = None,
    seeds_per_trial: int = 1,
) -> dict[tuple[str, str], dict[str, Any]]:
    from regbench.engine.plan import make_plan
    from regbench.engine.tuning import TUNERS, run_search
    from regbench.plugins.manager import registry
    from regbench.results.store import Store

    if tuner not in TUNERS:
        raise RegbenchError(f"tuner must be one of {', '.join(TUNERS)}; got {tuner!r}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise RegbenchError(f"max_trials must be at least 1; got {max_trials!r}")
    seed = experiment.seeds[0]  # one split to tune on; the grid repeats the seeds
    cells = make_plan(
        registry(),
        experiment.arch,
        experiment.reg,
        [seed],
        experiment.protocol,
        execution=experiment.execution,
    )
    check_data(cells, experiment)
    data = load_data(experiment, experiment.dataset, experiment.dataset_options, seed)
    store = Store(experiment.folder)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for cell in cells:
            if not registry().get("regularizers", cell.reg).hparams:
                continue
            if on_cell:
                on_cell(cell.arch, cell.reg)
            best = run_search(
                arch=cell.arch,
                reg=cell.reg,
                protocol=experiment.protocol,
                data=data,
                tuner=tuner,
                max_trials=max_trials,
                seed=seed,
                project_root=store.folder / "tuning",
                on_trial=_recording(store.record_trial, on_trial, cell.arch, cell.reg),
                execution=experiment.execution,
                executions_per_trial=seeds_per_trial,
                on_best=_recording(
                    lambda b: _record_best(store, b, experiment, seed), on_best, cell.arch, cell.reg
                ),
            )
            found[(cell.arch, cell.reg)] = dict(best or {})
    finally:
        store.close()
    return found


def _recording(
    record: Callable[[dict[str, Any]], None],
    listener: Callable[[str, str, dict[str, Any]], None] | None,
    arch: str,
    reg: str,
) -> Callable[[dict[str, Any]], None]:
    """What the tuning stage reports, stored first (only this process writes the store: a
    crash after a trial loses nothing), then passed to the caller's `listener`."""

    def heard(item: dict[str, Any]) -> None:
        record(item)
        if listener is not None:
            listener(arch, reg, item)

    return heard


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


# the settings of a protocol that `run --tuned` trains as they were tuned: the Experiment's
# settings that make up a Protocol, but the dataset (values are looked up per dataset already)
TUNED_SETTINGS = tuple(
    f.name
    for f in fields(Protocol)
    if f.name != "dataset" and f.name in {g.name for g in fields(Experiment)}
)


def tuned_settings(experiment: Experiment) -> dict[str, Any]:
    """The protocol settings an experiment tunes under, as JSON-ready values."""
    found = {}
    for name in TUNED_SETTINGS:
        value = getattr(experiment, name)
        found[name] = dict(value) if name.endswith("_options") else value
    if found["target"] is not None:
        found["target"] = list(found["target"])
    return found
