"""`plan`, `run` and `load`: the grid, planned against the store, trained, read back."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.design.experiment import Experiment
from regbench.errors import RegbenchError
from regbench.study.progress import auto_progress
from regbench.study.recording import Recorder
from regbench.study.settings import (
    FailedRuns,
    Interrupted,
    Observer,
    Plan,
    PlannedRun,
    check_data,
    executor_options,
    measured,
    settings_of,
    with_settings,
)
from regbench.study.tuning import TUNED_SETTINGS, search, tuned_settings

if TYPE_CHECKING:
    from regbench.design.plan import RunSpec
    from regbench.plugins.manager import Registry
    from regbench.results.reader import Results
    from regbench.results.store import Store


@with_settings
def plan(
    base: Experiment | None = None,
    /,
    *,
    tuned: bool = False,
    protocol_given: Collection[str] | None = None,
    **settings: Any,
) -> Plan:
    """The runs of the experiment's grid and which of them its folder already holds, with the
    time its measured runs say the rest will take (`Plan.estimate`); with `tuned`, under the
    protocol `run` would train them under (see `run`)."""
    from regbench.design.pending import stale_reasons
    from regbench.plugins.manager import registry

    experiment = settings_of(base, settings)
    if tuned:
        experiment, _ = as_tuned(experiment, _told(base, settings, protocol_given))
    specs = _specs(experiment, registry(), tuned)
    rows = _stored_rows(experiment.folder)
    statuses = {row["config_hash"]: row["status"] for row in rows}
    reasons = stale_reasons(specs, rows)
    runs = []
    for spec in specs:
        status = statuses.get(spec.config_hash)
        if spec.skip:
            state = "skipped"
        else:
            state = "done" if status == "ok" else "pending" if status is None else "failed"
        runs.append(PlannedRun(spec, state, status, reasons.get(spec.config_hash)))
    return Plan(experiment, experiment.folder, tuple(runs), measured(rows))


def _specs(
    experiment: Experiment, plugins: Registry, tuned: bool, applicability: bool = True
) -> list[RunSpec]:
    """Every run of the grid, validated against the installed plugins; with `applicability`,
    the cells that would change nothing are marked skipped here (that may build models)."""
    from regbench.design.plan import make_plan

    check_param_names(experiment.params, plugins)
    values = tuned_values(experiment.folder, experiment.dataset) if tuned else None
    return make_plan(
        plugins,
        experiment.arch,
        experiment.reg,
        experiment.seeds,
        experiment.protocol,
        experiment.params,
        values,
        experiment.execution,
        applicability=applicability,
    )


def check_param_names(params: Mapping[str, Mapping[str, Any]], plugins: Registry) -> None:
    """Every `reg.name` must name an installed regularizer and one of its hyperparameters,
    whether or not that regularizer is in the grid (a typo must not pass silently)."""
    for reg, values in params.items():
        regularizer = plugins.get("regularizers", reg)
        known = {h.name for h in regularizer.hparams}
        for name in values:
            if name not in known:
                valid = ", ".join(sorted(known)) or "none"
                raise RegbenchError(
                    f"regularizer {regularizer.name!r} has no hyperparameter {name!r} "
                    f"(it has: {valid})"
                )


def _stored_rows(folder: Path) -> list[dict[str, Any]]:
    """Every stored run's row (none when the folder holds no store yet)."""
    from regbench.results.store import stored_runs

    return stored_runs(folder)


def _told(
    base: Experiment | None, settings: Mapping[str, Any], given: Collection[str] | None
) -> set[str]:
    """The protocol settings the caller chose: `given`, else the keywords given, or every
    one of a `base` experiment."""
    if given is not None:
        return set(given)
    return set(TUNED_SETTINGS) if base is not None else set(settings)


def as_tuned(experiment: Experiment, told: set[str]) -> tuple[Experiment, list[str]]:
    """The experiment with the protocol its grid's values were tuned under, in the settings
    not `told`, and the lines that say what it trains under; unchanged where the values'
    protocol is unknown (tuned by an earlier regbench) or differs between cells."""
    from regbench.results.store import DB_NAME, Store

    if not (experiment.folder / DB_NAME).exists():
        return experiment, []  # tuned_values says there is nothing tuned
    with Store(experiment.folder, read_only=True) as store:
        under = store.tuned_under(experiment.dataset)
    mine = {k: v for k, v in under.items() if k[0] in experiment.arch and k[1] in experiment.reg}
    notes = []
    seeds = sorted({seed for _, seed in mine.values() if seed in experiment.seeds})
    if seeds:
        notes.append(
            f"tuned: seed {', '.join(map(str, seeds))} scored the tuning trials, so its runs "
            "confirm the values on the split that chose them (not an independent check)"
        )
    recorded = {json.dumps(p, sort_keys=True) for p, _ in mine.values() if p is not None}
    if len(recorded) != 1:
        if len(recorded) > 1:
            notes.append(
                "tuned: the cells were tuned under different protocols; training all "
                "under this run's"
            )
        return experiment, notes
    tuned = json.loads(recorded.pop())
    current = json.loads(json.dumps(tuned_settings(experiment)))
    differ = [k for k in TUNED_SETTINGS if k in tuned and tuned[k] != current[k]]
    adopt = [k for k in differ if k not in told]
    kept = [k for k in differ if k in told]
    if adopt:
        checked = Experiment.create(**{k: tuned[k] for k in adopt})
        experiment = replace(experiment, **{k: getattr(checked, k) for k in adopt})
        flags = ", ".join("--" + k.replace("_", "-") for k in adopt)
        notes.append(
            f"tuned: training as the values were tuned, {_settings(tuned, adopt)} (not "
            f"{_settings(current, adopt)}); choose another with {flags}"
        )
    if kept:
        notes.append(
            f"tuned: the values were tuned under {_settings(tuned, kept)}; training under "
            f"{_settings(current, kept)}, as given"
        )
    return experiment, notes


def _settings(values: Mapping[str, Any], names: Sequence[str]) -> str:
    return ", ".join(f"{name}={json.dumps(values[name])}" for name in names)


def tuned_values(folder: Path, dataset: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The tuning stage's best values in `folder`, for runs on `dataset`."""
    from regbench.results.store import DB_NAME, Store

    values = {}
    if (folder / DB_NAME).exists():
        with Store(folder, read_only=True) as store:
            values = store.best_values(dataset)
    if not values:
        raise RegbenchError(
            f"tuned: {folder} has no tuning results on {dataset}; run `regbench tune` first"
        )
    return values


@with_settings
def run(
    base: Experiment | None = None,
    /,
    *,
    force: bool = False,
    tune: bool = False,
    tuned: bool = False,
    tuner: str = "random",
    max_trials: int = 10,
    observer: Observer | None = None,
    progress: bool | None = None,
    protocol_given: Collection[str] | None = None,
    **settings: Any,
) -> Results:
    """Train every run of the grid that its folder does not hold yet; return the grid's results.

    `observer` hears each run start, each epoch end and each run end; without one, `progress`
    shows them on stderr (True), never (False), or where someone watches (None: stderr a
    terminal, or a notebook).

    With `tuned`, the protocol settings the caller did not give (`protocol_given`; by default
    the keywords given, or every setting of a `base` experiment) are those the values were
    tuned under, and the observer's `note` says so, as it says when a given one differs.

    `force` retrains finished runs; `tune` runs the tuning stage first and trains with its
    values (as `tuned` does with an earlier stage's). Failed runs are rows with a status and
    an error, not exceptions; when there are any, a `FailedRuns` warning says how many.
    Raises `Interrupted` on Ctrl-C, after keeping every finished run.
    """
    from regbench.plugins.manager import registry

    experiment = settings_of(base, settings)
    plugins = registry()
    shown = observer or auto_progress(progress) or Observer()
    if tune:  # searched in local workers where the grid goes to Ray
        ray = experiment.executor == "ray"
        search(
            replace(experiment, executor="local") if ray else experiment,
            tuner,
            max_trials,
            1,
            shown,
            plugins,
        )
        tuned = True
    if tuned:
        experiment, notes = as_tuned(experiment, _told(base, settings, protocol_given))
        for note in notes:
            shown.note(note)
    # the workers decide applicability as they build, so this process never loads Keras
    specs = _specs(experiment, plugins, tuned, applicability=False)
    from regbench.engine import executor as ex
    from regbench.results.store import Store

    options = executor_options(experiment)
    ex.check_counts(options)
    ex.check_devices(options)
    check_data(specs, experiment, plugins)
    with Store(experiment.folder) as store:  # takes the lock; upgrades or rebuilds the store
        _execute(specs, store, options, experiment, force, shown, plugins)
    results = load(experiment.folder, only=specs)
    _warn_failed(results.runs)
    return results


def _warn_failed(runs: Any) -> None:
    """One line when some runs did not end ok, so a script sees it without reading the rows."""
    bad = runs[~runs["status"].isin(["ok", "skipped"])]
    if bad.empty:
        return
    counts = ", ".join(f"{n} {status}" for status, n in bad["status"].value_counts().items())
    first = bad.iloc[0]
    warnings.warn(
        f"{len(bad)} of {len(runs)} run(s) did not finish ok ({counts}); the first, "
        f"{first['run_id']}: {first['error']}. See results.runs[['run_id', 'status', 'error']]",
        FailedRuns,
        stacklevel=3,
    )


def _execute(
    specs: Sequence[RunSpec],
    store: Store,
    options: Any,
    experiment: Experiment,
    force: bool,
    observer: Observer,
    plugins: Registry,
) -> None:
    from regbench.design.plan import order_by_cost
    from regbench.engine import executor as ex
    from regbench.engine.outcome import WRITE_ERRNOS
    from regbench.results.integrity import write_error

    statuses = store.statuses()
    store.measure_targets(s for s in specs if statuses.get(s.config_hash) == "ok")
    done = ("ok", "skipped")
    todo = [s for s in specs if force or statuses.get(s.config_hash) not in done]
    measured = store.seconds_per_epoch()
    todo = order_by_cost(todo, plugins, measured)
    store.export()  # a kill between a commit and its export must not leave stale CSVs
    record = Recorder(store, observer)
    hooks = ex.Hooks(on_result=record, on_start=observer.started, on_progress=observer.update)
    runner = _runner(experiment.executor)
    observer.begin(len(todo), len(specs) - len(todo), store.folder)
    if todo and all((s.arch, s.reg) in measured for s in todo):
        observer.estimated(sum(measured[(s.arch, s.reg)] * s.protocol.epochs for s in todo))
    try:
        runner(todo, options, hooks)
    except KeyboardInterrupt:
        raise Interrupted(store.folder, len(record.rows)) from None
    except OSError as exc:  # an executor's own write (Ray's models reach the folder here)
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(Path(exc.filename or store.folder), exc) from None
    finally:
        observer.end()


def _runner(executor: str) -> Callable[..., None]:
    from regbench.engine import executor as ex

    if executor == "ray":
        from regbench.engine.ray_executor import run_with_ray

        return run_with_ray
    return {"local": ex.run_with_workers, "inprocess": ex.run_in_process}[executor]


def load(folder: str | Path, *, only: Sequence[RunSpec] | None = None) -> Results:
    """The results in an experiment folder (`only`: just these runs)."""
    from regbench.results.reader import load as read

    results = read(Path(folder))
    if only is None:
        return results
    wanted = {s.config_hash for s in only}
    runs = results.runs[results.runs["config_hash"].isin(wanted)].reset_index(drop=True)
    epochs = results.epochs[results.epochs["run_id"].isin(set(runs["run_id"]))]
    return type(results)(runs, epochs.reset_index(drop=True))
