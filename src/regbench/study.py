"""regbench as a library: everything a command does, callable from Python.

    import regbench
    results = regbench.run(arch=["model1"], reg=["none", "dropout"], dataset="digits", epochs=1)
    results.leaderboard()

Each function takes an `Experiment` or the same settings as keywords (validated by
`Experiment.create`), and returns data: the CLI only parses its flags into these calls and
prints what they return.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.engine.experiment import Experiment
from regbench.errors import RegbenchError

if TYPE_CHECKING:
    from regbench.engine.plan import RunSpec
    from regbench.plugins.datasets import Splits
    from regbench.results.reader import Results
    from regbench.results.store import Store


class Observer:
    """What a caller hears while runs train; override what you want to show."""

    def begin(self, total: int, done: int, folder: Path) -> None:
        """`total` runs will train; `done` were already finished in `folder`."""

    def started(self, run_id: str, worker: str) -> None:
        """A run started on a worker."""

    def update(self, info: dict[str, Any]) -> None:
        """An epoch of a run ended (`run_id`, `epoch`, `epochs` and the epoch's metrics)."""

    def finished(self, row: dict[str, Any]) -> None:
        """A run ended, ok or not; `row` is its results row."""

    def end(self) -> None:
        """Training stopped (finished, failed or interrupted)."""


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


def _measured(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
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


def _experiment(experiment: Experiment | None, settings: Mapping[str, Any]) -> Experiment:
    if experiment is None:
        return Experiment.create(**settings)
    return experiment.update(**settings) if settings else experiment


# ---------------------------------------------------------------- data


def load_options(experiment: Experiment, dataset_options: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset's plugin options plus where its data and cache are."""
    from regbench.plugins.datasets import default_cache_dir

    cache = experiment.cache_dir or default_cache_dir()
    return {**dataset_options, "data_dir": experiment.data_dir, "cache_dir": cache}


def check_data(specs: Sequence[RunSpec], experiment: Experiment) -> None:
    """Check each dataset once here (found, readable, its shape) and that every architecture
    fits it, so bad data fails with one line before anything is written (and the array cache
    is warm for the workers)."""
    from regbench.plugins.manager import registry

    shapes: dict[str, tuple[int, int, int]] = {}
    for spec in specs:
        protocol = spec.protocol
        key = json.dumps([protocol.dataset, dict(protocol.dataset_options)], sort_keys=True)
        if key not in shapes:
            plugin = registry().get("datasets", protocol.dataset)
            shapes[key] = plugin.input_shape(load_options(experiment, protocol.dataset_options))
        registry().get("architectures", spec.arch).check_input(shapes[key])


def _load_data(
    experiment: Experiment, dataset: str, options: Mapping[str, Any], seed: int
) -> Splits:
    from regbench.plugins.manager import registry

    plugin = registry().get("datasets", dataset)
    return plugin.load(seed, load_options(experiment, options))


# ---------------------------------------------------------------- plan and run


@with_settings
def plan(base: Experiment | None = None, /, *, tuned: bool = False, **settings: Any) -> Plan:
    """The runs of the experiment's grid and which of them its folder already holds, with the
    time its measured runs say the rest will take (`Plan.estimate`)."""
    from regbench.engine.plan import stale_reasons

    experiment = _experiment(base, settings)
    specs = _specs(experiment, tuned)
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
    return Plan(experiment, experiment.folder, tuple(runs), _measured(rows))


def _specs(experiment: Experiment, tuned: bool, applicability: bool = True) -> list[RunSpec]:
    """Every run of the grid, validated against the installed plugins; with `applicability`,
    the cells that would change nothing are marked skipped here (that may build models)."""
    from regbench.engine.plan import make_plan
    from regbench.plugins.manager import registry

    check_param_names(experiment.params)
    values = tuned_values(experiment.folder, experiment.dataset) if tuned else None
    return make_plan(
        registry(),
        experiment.arch,
        experiment.reg,
        experiment.seeds,
        experiment.protocol,
        experiment.params,
        values,
        experiment.execution,
        applicability=applicability,
    )


def check_param_names(params: Mapping[str, Mapping[str, Any]]) -> None:
    """Every `reg.name` must name an installed regularizer and one of its hyperparameters,
    whether or not that regularizer is in the grid (a typo must not pass silently)."""
    from regbench.plugins.manager import registry

    for reg, values in params.items():
        regularizer = registry().get("regularizers", reg)
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


def tuned_values(folder: Path, dataset: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The tuning stage's best values in `folder`, for runs on `dataset`."""
    from regbench.results.store import DB_NAME, Store

    values = {}
    if (folder / DB_NAME).exists():
        store = Store(folder, create=False)
        try:
            values = store.best_values(dataset)
        finally:
            store.close()
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
    **settings: Any,
) -> Results:
    """Train every run of the grid that its folder does not hold yet; return the grid's results.

    `force` retrains finished runs; `tune` runs the tuning stage first and trains with its
    values (as `tuned` does with an earlier stage's). Failed runs are rows with a status and
    an error, not exceptions; when there are any, a `FailedRuns` warning says how many.
    Raises `Interrupted` on Ctrl-C, after keeping every finished run.
    """
    experiment = _experiment(base, settings)
    if tune:
        _search(experiment, tuner, max_trials)  # the CLI's `run --tune` prints its own
        tuned = True
    # the workers decide applicability as they build, so this process never loads Keras
    specs = _specs(experiment, tuned, applicability=False)
    from regbench.engine import executor as ex
    from regbench.results.store import Store

    options = _executor_options(experiment)
    ex.check_counts(options)
    check_data(specs, experiment)
    store = Store(experiment.folder)  # takes the folder's lock; upgrades or rebuilds the store
    try:
        _execute(specs, store, options, experiment, force, observer or Observer())
    finally:
        store.close()
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


def _executor_options(experiment: Experiment) -> Any:
    from regbench.engine import executor as ex

    return ex.ExecutorOptions(
        data_dir=experiment.data_dir,
        cache_dir=load_options(experiment, {})["cache_dir"],
        models_dir=experiment.folder / "models",
        trainer=experiment.trainer,
        devices=None if experiment.devices is None else list(experiment.devices),
        per_device=experiment.per_device,
        workers=experiment.workers,
        ray_address=experiment.ray_address,
        max_runs_per_worker=experiment.max_runs_per_worker,
        run_timeout=experiment.run_timeout,
    )


def _execute(
    specs: Sequence[RunSpec],
    store: Store,
    options: Any,
    experiment: Experiment,
    force: bool,
    observer: Observer,
) -> None:
    from regbench.engine import executor as ex
    from regbench.engine.plan import order_by_cost
    from regbench.plugins.manager import registry

    statuses = store.statuses()
    store.measure_targets(s for s in specs if statuses.get(s.config_hash) == "ok")
    done = ("ok", "skipped")
    todo = [s for s in specs if force or statuses.get(s.config_hash) not in done]
    todo = order_by_cost(todo, registry(), store.seconds_per_epoch())
    store.export()  # a kill between a commit and its export must not leave stale CSVs
    logs = store.folder / "logs"
    finished = 0

    def on_result(result: Any) -> None:
        nonlocal finished
        trace = result.row.pop("traceback", None)
        store.record_run(result.row, result.epochs)
        if trace:
            logs.mkdir(exist_ok=True)
            (logs / f"{result.row['run_id']}.log").write_text(trace)
        finished += 1
        observer.finished(result.row)

    hooks = ex.Hooks(on_result=on_result, on_start=observer.started, on_progress=observer.update)
    runner = _runner(experiment.executor)
    observer.begin(len(todo), len(specs) - len(todo), store.folder)
    try:
        runner(todo, options, hooks)
    except KeyboardInterrupt:
        raise Interrupted(store.folder, finished) from None
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


# ---------------------------------------------------------------- tuning


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
    return _search(
        _experiment(base, settings),
        tuner,
        max_trials,
        on_trial,
        on_cell,
        on_best,
        seeds_per_trial,
    )


def _search(
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
    data = _load_data(experiment, experiment.dataset, experiment.dataset_options, seed)
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
                on_best=_recording(lambda b: _record_best(store, b), on_best, cell.arch, cell.reg),
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


def _record_best(store: Store, best: dict[str, Any]) -> None:
    store.record_best(
        best["arch"],
        best["reg"],
        best["values"],
        best["score"],
        best["search_hash"],
        dataset=best["dataset"],
    )


# ---------------------------------------------------------------- after the grid


def final(
    folder: str | Path,
    *,
    arch: str | None = None,
    reg: str | None = None,
    best: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    observer: Observer | None = None,
) -> dict[str, Any]:
    """Retrain one cell on train+validation and read its test split once (the lab's last step).

    `folder` is the experiment folder. The cell is `arch` + `reg` (its finished run with the
    best validation accuracy), or the leaderboard's best with `best=True`; it keeps that cell's
    protocol and hyperparameters, with `epochs` (default: the cell's own) and `seed` (one final
    run; the CLI's `--seeds` calls this once per seed). `data_dir` and `cache_dir` are where
    the data is, as for `run`; `observer` hears the run's progress. Returns the final run's
    results row (its `status` says whether it finished ok; `figure`, its training curves).
    """
    from regbench.engine.executor import Hooks, run_in_process
    from regbench.engine.experiment import check_protocol
    from regbench.engine.plan import RunSpec
    from regbench.results import leaderboard
    from regbench.results.lookup import finished_run
    from regbench.results.store import Store

    folder = Path(folder)
    experiment = Experiment.create(
        experiment=folder, data_dir=data_dir, cache_dir=cache_dir, seeds=[seed], epochs=epochs
    )
    if best:
        results = load(folder)
        board = leaderboard.table(results.runs, results.epochs)
        if board.empty:
            raise RegbenchError(f"best: {folder} has no finished grid runs to choose from")
        source = finished_run(folder, cell=board.iloc[0]["cell"])
    elif arch and reg:
        source = finished_run(folder, arch=arch, reg=reg)
    else:
        raise RegbenchError("choose the cell with arch and reg, or take the best with best=True")
    cell = RunSpec.from_row(source)
    spec = replace(
        cell,
        seed=experiment.seeds[0],
        stage="final",
        tuned=(),
        protocol=replace(cell.protocol, epochs=epochs or cell.protocol.epochs),
    )
    check_protocol(spec.protocol, spec.execution)
    check_data([spec], experiment)
    observer = observer or Observer()
    rows: list[dict[str, Any]] = []
    store = Store(folder)
    try:

        def on_result(result: Any) -> None:
            result.row.pop("traceback", None)
            store.record_run(result.row, result.epochs)
            rows.append(result.row)
            observer.finished(result.row)

        options = replace(_executor_options(experiment), models_dir=folder / "models")
        observer.begin(1, 0, folder)
        try:
            run_in_process(
                [spec],
                options,
                Hooks(on_result=on_result, on_start=observer.started, on_progress=observer.update),
            )
        except KeyboardInterrupt:
            raise Interrupted(folder, 0) from None
        finally:
            observer.end()
    finally:
        store.close()
    row = rows[0]
    if row["status"] == "ok":
        row["figure"] = str(_final_figure(folder, row))
        if (folder / "report.html").exists():  # keep an existing report up to date
            report(folder)
    return row


def _final_figure(folder: Path, row: Mapping[str, Any]) -> Path:
    from regbench.reporting.figures import final_figure

    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / f"{row['run_id']}.png"
    figure = final_figure(load(folder).epochs, row["run_id"], test_accuracy=row["test_accuracy"])
    figure.savefig(path, dpi=120)
    return path


def report(
    folder: str | Path, out: str | Path | None = None, baseline: str = "none"
) -> dict[str, Path]:
    """Write report.html, report.md and figures/ for an experiment; return their paths.
    Each cell is compared with the `baseline` regularizer of its architecture."""
    from regbench.reporting.report import write_report

    return write_report(Path(folder), Path(out) if out else None, baseline=baseline)


def visualize(
    folder: str | Path,
    *,
    run: str | None = None,
    arch: str | None = None,
    reg: str | None = None,
    image: str | Path | None = None,
    class_name: str | None = None,
    visualizers: Sequence[str] = ("featuremaps", "filters", "gradcam"),
    layers: int = 4,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """Draw what a trained run's model sees (feature maps, filters, Grad-CAM, ...); return the
    files written. The image is `image`, or the run's first test image of `class_name`
    (default: horse, the lab's photo)."""
    from regbench.plugins.manager import registry
    from regbench.results.lookup import finished_run, open_model

    folder = Path(folder)
    if not run and not (arch and reg):
        raise RegbenchError("name a run with --run RUN_ID, or a cell with --arch and --reg")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise RegbenchError(f"layers must be at least 1; got {layers!r}")
    drawers = [registry().get("visualizers", name) for name in visualizers]
    if not drawers:
        raise RegbenchError("choose at least one visualizer")
    experiment = Experiment.create(data_dir=data_dir, cache_dir=cache_dir)
    row = finished_run(folder, run, arch, reg)
    options = json.loads(row["dataset_options"] or "{}")
    data = _load_data(experiment, row["dataset"], options, int(row["seed"]))
    model = open_model(row)
    if image is not None:
        from regbench.plugins.visualizers import load_image

        if class_name is not None:
            raise RegbenchError("--class picks a test image; it cannot go with --image")
        picture, label = load_image(image, model.input_shape[1:]), None
    else:
        wanted = _class_index(class_name, data.class_names)
        if wanted is not None and not (data.y_test == wanted).any():
            raise RegbenchError(
                f"the test split has no image of class {data.class_names[wanted]!r}"
            )
        index = 0 if wanted is None else int((data.y_test == wanted).argmax())
        picture, label = data.x_test[index], int(data.y_test[index])
    out_dir = Path(out) if out else folder / "figures" / "visualize" / row["run_id"]
    written: list[Path] = []
    for drawer in drawers:
        written += drawer.render(
            model,
            picture,
            out_dir / drawer.name,
            {
                "layers": layers,
                "class_names": data.class_names,
                "label": label,
                "title": f"{row['arch']} + {row['reg']}",
            },
        )
    return written


def _class_index(wanted: str | None, names: Sequence[str]) -> int | None:
    if wanted is None:
        return list(names).index("horse") if "horse" in names else None  # the lab's photo
    if wanted in names:
        return list(names).index(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise RegbenchError(f"--class {wanted!r} is not a class of this dataset ({', '.join(names)})")
