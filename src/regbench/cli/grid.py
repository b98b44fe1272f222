"""`regbench run`, `plan`, `tune` and `leaderboard`: the grid from flags to results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regbench.cli.common import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    check_data,
    console,
    load_options,
)
from regbench.cli.common import cache_dir as _cache
from regbench.errors import RegbenchError


def _seeds(value: Any) -> list[int]:
    if isinstance(value, list):
        try:
            return [int(v) for v in value]
        except (TypeError, ValueError):
            raise RegbenchError(f"seeds must be whole numbers; got {value!r}") from None
    text = str(value)
    try:
        if "," in text:
            return [int(v) for v in text.split(",") if v.strip()]
        count = int(text)
    except ValueError:
        raise RegbenchError(f"--seeds expects a count or a list like 0,1,2; got {text!r}") from None
    if count < 1:
        raise RegbenchError(f"--seeds must be at least 1; got {count}")
    return list(range(count))


def _target(text: str | None) -> tuple[str, float] | None:
    if not text:
        return None
    metric, sep, value = text.partition("=")
    try:
        return metric.strip(), float(value)
    except ValueError:
        pass
    raise RegbenchError(f"--target expects metric=value (e.g. val_accuracy=0.5); got {text!r}")


RUN_DEFAULTS: dict[str, Any] = {
    "arch": ["all"],
    "reg": ["all"],
    "dataset": "cifar10",
    "epochs": 10,
    "batch_size": 64,
    "optimizer": "sgd",
    "learning_rate": None,
    "seeds": 1,
    "target": None,
    "jit_compile": "auto",
    "precision": "float32",
    "steps_per_execution": 1,
    "pipeline": "auto",
    "out": None,
    "dataset_options": {},
    "params": {},
}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, over the config file, over the lab's defaults."""
    from regbench.engine.config import load_config
    from regbench.engine.plan import parse_assignments, parse_reg_params

    config = load_config(args.config) if args.config else {}
    settings = {**RUN_DEFAULTS, **{k: v for k, v in config.items() if k != "name"}}
    for key in RUN_DEFAULTS:
        value = getattr(args, key, None)
        if value not in (None, []):
            settings[key] = value
    for key in ("arch", "reg"):
        if isinstance(settings[key], str):
            settings[key] = [settings[key]]
    settings["dataset_options"] = {
        **config.get("dataset_options", {}),
        **parse_assignments(args.dataset_option or [], "--dataset-option"),
    }
    params = {reg: dict(values) for reg, values in config.get("params", {}).items()}
    for reg, values in parse_reg_params(args.param or []).items():
        params.setdefault(reg, {}).update(values)
    settings["params"] = params
    settings["name"] = config.get("name") or settings["dataset"]
    return settings


def _protocol(settings: dict[str, Any]):
    from regbench.engine.plan import Protocol

    return Protocol(
        dataset=settings["dataset"],
        dataset_options=settings["dataset_options"],
        epochs=int(settings["epochs"]),
        batch_size=int(settings["batch_size"]),
        optimizer=str(settings["optimizer"]).lower(),
        learning_rate=None
        if settings["learning_rate"] is None
        else float(settings["learning_rate"]),
        target=_target(settings["target"]),
        precision=settings["precision"],
    )


def _execution(settings: dict[str, Any]):
    from regbench.engine.plan import Execution

    return Execution(
        jit_compile=settings["jit_compile"],
        steps_per_execution=int(settings["steps_per_execution"]),
        pipeline=settings["pipeline"],
    )


def _out(settings: dict[str, Any]) -> Path:
    return Path(settings["out"] or Path("reports") / settings["name"])


def _plan(args: argparse.Namespace):
    from regbench.engine.plan import make_plan
    from regbench.plugins.manager import registry

    settings = _settings(args)
    out = _out(settings)
    tuned = _tuned_values(out, settings["dataset"]) if args.tuned else None
    specs = make_plan(
        registry(),
        settings["arch"],
        settings["reg"],
        _seeds(settings["seeds"]),
        _protocol(settings),
        settings["params"],
        tuned,
        _execution(settings),
    )
    return specs, out


def _tuned_values(out: Path, dataset: str) -> dict[tuple[str, str], dict[str, Any]]:
    from regbench.results.store import DB_NAME, Store

    values = {}
    if (out / DB_NAME).exists():
        store = Store(out, create=False)
        try:
            values = store.best_values(dataset)
        finally:
            store.close()
    if not values:
        raise RegbenchError(
            f"--tuned: {out} has no tuning results on {dataset}; run `regbench tune` first"
        )
    return values


def cmd_run(args: argparse.Namespace) -> int:
    if args.tune and not args.dry_run:
        code = cmd_tune(args)
        if code != EXIT_OK:
            return code
        args.tuned = True
    specs, out = _plan(args)
    if args.dry_run:
        return _show_plan(specs, out)
    from regbench.engine import executor as ex
    from regbench.results.store import Store

    options = ex.ExecutorOptions(
        data_dir=load_options(args, {})["data_dir"],
        cache_dir=_cache(args),
        models_dir=out / "models",
        trainer=args.trainer,
        devices=None if args.devices is None else [d for d in args.devices.split(",") if d.strip()],
        per_device=args.per_device,
        workers=args.workers,
        ray_address=args.ray_address,
        max_runs_per_worker=args.max_runs_per_worker,
    )
    ex.check_counts(options)
    check_data(specs, args)
    store = Store(out)
    try:
        return _execute(specs, store, options, args)
    finally:
        store.close()


def _show_plan(specs, out: Path) -> int:
    from regbench.results.store import DB_NAME, Store

    statuses: dict[str, str] = {}
    if (out / DB_NAME).exists():
        store = Store(out, create=False)
        statuses = store.statuses()
        store.close()
    counts = {"done": 0, "pending": 0, "failed": 0}
    from rich.table import Table

    table = Table(title=f"plan: {len(specs)} runs -> {out}", title_justify="left")
    for column in ("run", "arch", "reg", "hyperparameters", "seed", "state"):
        table.add_column(column)
    for spec in specs:
        status = statuses.get(spec.config_hash)
        state = "done" if status == "ok" else "pending" if status is None else "failed"
        counts[state] += 1
        hp = ", ".join(f"{k}={v:g}" for k, v in sorted(spec.params.items()))
        table.add_row(
            spec.run_id,
            spec.arch,
            spec.reg,
            hp or "-",
            str(spec.seed),
            state if status in (None, "ok") else f"failed ({status})",
        )
    out_console = console()
    out_console.print(table)
    out_console.print(
        f"done {counts['done']}, pending {counts['pending']}, failed {counts['failed']}"
    )
    return EXIT_OK


def _execute(specs, store, options, args: argparse.Namespace) -> int:
    from regbench.cli.progress import GridProgress
    from regbench.engine import executor as ex
    from regbench.engine.plan import order_by_cost
    from regbench.plugins.manager import registry

    statuses = store.statuses()
    todo = [s for s in specs if args.force or statuses.get(s.config_hash) != "ok"]
    skipped = len(specs) - len(todo)
    out = console()
    todo = order_by_cost(todo, registry(), store.seconds_per_epoch())
    store.export()  # a kill between a commit and its export must not leave stale CSVs
    if skipped:
        out.print(f"{skipped} run(s) already done in {store.folder} (use --force to rerun)")
    logs = store.folder / "logs"
    with GridProgress(out, len(todo)) as progress:

        def on_result(result) -> None:
            trace = result.row.pop("traceback", None)
            store.record_run(result.row, result.epochs)
            if trace:
                logs.mkdir(exist_ok=True)
                (logs / f"{result.row['run_id']}.log").write_text(trace)
            progress.finished(result.row)

        hooks = ex.Hooks(
            on_result=on_result, on_start=progress.started, on_progress=progress.update
        )
        run = {"local": ex.run_with_workers, "inprocess": ex.run_in_process, "ray": _ray_executor}[
            args.executor
        ]
        try:
            run(todo, options, hooks)
        except KeyboardInterrupt:
            progress.stop()
            out.print(
                f"interrupted: {progress.done} finished run(s) kept in {store.folder}; "
                "rerun the same command to resume"
            )
            return EXIT_INTERRUPTED
    return _leaderboard(store.folder, out, specs)


def cmd_tune(args: argparse.Namespace) -> int:
    """The keras-tuner stage: search each cell's declared hyperparameters on validation."""
    import time

    from regbench.engine.plan import make_plan
    from regbench.engine.tuning import TUNERS, run_search
    from regbench.plugins.manager import registry
    from regbench.results.store import Store

    settings = _settings(args)
    protocol = _protocol(settings)
    if args.tuner not in TUNERS:
        raise RegbenchError(f"--tuner must be one of {', '.join(TUNERS)}")
    if args.max_trials < 1:
        raise RegbenchError(f"--max-trials must be at least 1; got {args.max_trials}")
    seed = _seeds(settings["seeds"])[0]  # one split to tune on; the grid repeats the seeds
    cells = make_plan(registry(), settings["arch"], settings["reg"], [seed], protocol)
    check_data(cells, args)
    dataset = registry().get("datasets", protocol.dataset)
    data = dataset.load(seed, load_options(args, protocol.dataset_options))
    out = console()
    store = Store(_out(settings))
    found = []
    try:
        for arch, reg in ((cell.arch, cell.reg) for cell in cells):
            if registry().get("regularizers", reg).hparams:
                out.print(
                    f"tuning {arch} + {reg}: {args.tuner}, {args.max_trials} trials, "
                    f"{protocol.epochs} epoch(s) each",
                    markup=False,
                    highlight=False,
                )

                def on_trial(trial: dict[str, Any], arch=arch, reg=reg) -> None:
                    values = ", ".join(f"{k}={v:.4g}" for k, v in trial["values"].items())
                    score = "" if trial["score"] is None else f"val_accuracy {trial['score']:.4f}"
                    out.print(
                        f"  trial {trial['trial_id']}: {trial['status']} {score} "
                        f"[{values}] {trial.get('error') or ''}",
                        markup=False,
                        highlight=False,
                    )

                start = time.perf_counter()
                best = run_search(
                    store=store,
                    arch=arch,
                    reg=reg,
                    protocol=protocol,
                    data=data,
                    tuner=args.tuner,
                    max_trials=args.max_trials,
                    seed=seed,
                    project_root=store.folder / "tuning",
                    execution=_execution(settings),
                    on_trial=on_trial,
                )
                found.append((arch, reg, best, time.perf_counter() - start))
    finally:
        store.close()
    for arch, reg, best, seconds in found:
        values = ", ".join(f"{k}={v:.4g}" for k, v in (best or {}).items())
        out.print(f"best {arch} + {reg}: {values} ({seconds:.1f} s)", markup=False, highlight=False)
    if not found:
        out.print("nothing to tune: the chosen regularizers declare no hyperparameters")
    return EXIT_OK


def _ray_executor(specs, options, hooks):
    from regbench.engine.ray_executor import run_with_ray

    return run_with_ray(specs, options, hooks)


def _leaderboard(folder: Path, out, specs=None) -> int:
    from regbench.results import leaderboard
    from regbench.results.reader import load

    runs, epochs = load(folder)
    if specs is not None:
        runs = runs[runs["config_hash"].isin({s.config_hash for s in specs})]
    leaderboard.render(runs, epochs, out)
    out.print(f"results: {folder}/runs.csv, {folder}/epochs.csv")
    return EXIT_OK if (runs["status"] == "ok").all() else EXIT_FAILED_RUNS


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from regbench.results import leaderboard
    from regbench.results.reader import load

    runs, epochs = load(Path(args.experiment))
    if args.json:
        print(leaderboard.to_json(runs, epochs))
        return EXIT_OK
    leaderboard.render(runs, epochs, console())
    return EXIT_OK
