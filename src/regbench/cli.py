"""The `regbench` command line. Heavy modules are imported inside the commands that need them,
so `regbench --help` and `regbench list` never load TensorFlow."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from regbench import __version__
from regbench.errors import RegbenchError

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def console(stderr: bool = False):
    """A rich console; plain and colourless when not a TTY or NO_COLOR is set."""
    from rich.console import Console

    return Console(
        stderr=stderr,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        width=None if sys.stdout.isatty() else 160,
    )


# ---------------------------------------------------------------- list / describe


def cmd_list(args: argparse.Namespace) -> int:
    from regbench.plugins import KINDS, registry

    reg = registry()
    if args.json:
        payload: dict[str, Any] = {
            kind: [
                {
                    "name": e.name,
                    "description": e.description,
                    "dist": e.origin.dist,
                    "version": e.origin.version,
                    "aliases": list(getattr(e.obj, "aliases", ())),
                    "hyperparameters": [
                        {
                            "name": h.name,
                            "default": h.default,
                            "low": h.low,
                            "high": h.high,
                            "log": h.log,
                            "integer": h.integer,
                        }
                        for h in getattr(e.obj, "hparams", ())
                    ],
                }
                for e in reg.entries[kind].values()
            ]
            for kind in KINDS
        }
        payload["broken"] = [
            {
                "plugin": b.plugin,
                "dist": b.origin.dist,
                "version": b.origin.version,
                "error": b.error,
            }
            for b in reg.broken
        ]
        payload["clashes"] = {
            kind: {name: [str(o) for o in origins] for name, origins in reg.clashes[kind].items()}
            for kind in KINDS
            if reg.clashes[kind]
        }
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    from rich.table import Table

    out = console()
    for kind in KINDS:
        table = Table(title=kind, title_justify="left")
        for column in ("name", "description", "hyperparameters", "from"):
            table.add_column(column)
        for entry in reg.entries[kind].values():
            hps = ", ".join(
                f"{h.name}={h.default:g} [{h.low:g}, {h.high:g}{', log' if h.log else ''}]"
                for h in getattr(entry.obj, "hparams", ())
            )
            name = entry.name
            if kind in reg.clashes and entry.name in reg.clashes[kind]:
                name += " (CLASH)"
            table.add_row(name, entry.description, hps, str(entry.origin))
        out.print(table)
    for kind in KINDS:
        for name, origins in reg.clashes[kind].items():
            out.print(
                f"[red]clash:[/] {kind[:-1]} {name!r} registered by "
                + " and ".join(str(o) for o in origins)
            )
    for broken in reg.broken:
        out.print(
            f"[red]broken plugin[/] {broken.plugin} ({broken.origin}): {broken.error}", markup=True
        )
    return EXIT_OK


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise RegbenchError(f"--input-shape expects H,W,C (e.g. 32,32,3); got {text!r}") from None
    if len(parts) != 3:
        raise RegbenchError(f"--input-shape expects H,W,C (e.g. 32,32,3); got {text!r}")
    return parts  # type: ignore[return-value]


def cmd_describe(args: argparse.Namespace) -> int:
    from regbench.plan import parse_assignments
    from regbench.plugins import registry

    arch = registry().get("architectures", args.arch)
    reg = registry().get("regularizers", args.reg)
    values = reg.resolve(_own_params(args.param, reg.name))
    input_shape = _shape(args.input_shape)
    arch.check_input(input_shape)
    del parse_assignments
    from regbench.models import build_model, describe_model

    summary = describe_model(build_model(arch, reg, values, input_shape, args.classes, seed=0))
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f'Model: "{arch.name} + {reg.name}"', title_justify="left")
    for column, justify in (
        ("Layer (type)", "left"),
        ("Output Shape", "left"),
        ("Param #", "right"),
    ):
        table.add_column(column, justify=justify)
    for layer in summary["layers"]:
        shape = (
            "(" + ", ".join("None" if d is None else str(d) for d in layer["output_shape"]) + ")"
        )
        table.add_row(f"{layer['name']} ({layer['type']})", shape, f"{layer['params']:,}")
    out = console()
    out.print(table)
    out.print(
        f"Total params: {summary['total_params']:,}\n"
        f"Trainable params: {summary['trainable_params']:,}\n"
        f"Non-trainable params: {summary['non_trainable_params']:,}"
    )
    return EXIT_OK


def _own_params(items: list[str], reg_name: str) -> dict[str, str]:
    """--param values for one regularizer (either `name=v` or `reg.name=v`)."""
    from regbench.plan import parse_assignments

    out = {}
    for key, value in parse_assignments(items, "--param").items():
        owner, dot, name = key.rpartition(".")
        if dot and owner != reg_name:
            raise RegbenchError(f"--param {key}: this model uses regularizer {reg_name!r}")
        out[name] = value
    return out


# ---------------------------------------------------------------- run


def _seeds(value: Any) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value]
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
    from regbench.config import load_config
    from regbench.plan import parse_assignments, parse_reg_params

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
    from regbench.plan import Protocol

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
        jit_compile=settings["jit_compile"],
        precision=settings["precision"],
        steps_per_execution=int(settings["steps_per_execution"]),
        pipeline=settings["pipeline"],
    )


def _out(settings: dict[str, Any]) -> Path:
    return Path(settings["out"] or Path("reports") / settings["name"])


def _plan(args: argparse.Namespace):
    from regbench.plan import make_plan
    from regbench.plugins import registry

    settings = _settings(args)
    out = _out(settings)
    tuned = _tuned_values(out) if args.tuned else None
    specs = make_plan(
        registry(),
        settings["arch"],
        settings["reg"],
        _seeds(settings["seeds"]),
        _protocol(settings),
        settings["params"],
        tuned,
    )
    return specs, out


def _tuned_values(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    from regbench.store import DB_NAME, Store

    if not (out / DB_NAME).exists():
        raise RegbenchError(f"--tuned: {out} has no tuning results; run `regbench tune` first")
    store = Store(out, create=False)
    try:
        values = store.best_values()
    finally:
        store.close()
    if not values:
        raise RegbenchError(f"--tuned: {out} has no tuning results; run `regbench tune` first")
    return values


def _check_data(specs, args: argparse.Namespace) -> None:
    """Load each dataset once in the parent: bad data fails before anything is written,
    and the array cache is warm for the workers."""
    from regbench.plugins import registry

    seen = set()
    for spec in specs:
        key = (spec.dataset, json.dumps(dict(spec.dataset_options), sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        options = {**spec.dataset_options, "data_dir": args.data_dir, "cache_dir": _cache(args)}
        registry().get("datasets", spec.dataset).load(spec.seed, options)


def _cache(args: argparse.Namespace) -> Path:
    from regbench.datasets import default_cache_dir

    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def cmd_run(args: argparse.Namespace) -> int:
    if args.tune and not args.dry_run:
        code = cmd_tune(args)
        if code != EXIT_OK:
            return code
        args.tuned = True
    specs, out = _plan(args)
    if args.dry_run:
        return _show_plan(specs, out)
    if args.data_dir is not None and not Path(args.data_dir).exists():
        raise RegbenchError(f"--data-dir {args.data_dir} does not exist")
    _check_data(specs, args)
    from regbench.store import Store

    store = Store(out)
    try:
        return _execute(specs, store, args)
    finally:
        store.close()


def _show_plan(specs, out: Path) -> int:
    from regbench.store import DB_NAME, Store

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


def _execute(specs, store, args: argparse.Namespace) -> int:
    from regbench import executor as ex
    from regbench.plan import order_by_cost
    from regbench.plugins import registry
    from regbench.progress import GridProgress

    statuses = store.statuses()
    todo = [s for s in specs if args.force or statuses.get(s.config_hash) != "ok"]
    skipped = len(specs) - len(todo)
    out = console()
    todo = order_by_cost(todo, registry(), store.seconds_per_epoch())
    options = ex.ExecutorOptions(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        cache_dir=_cache(args),
        models_dir=store.folder / "models",
        trainer=args.trainer,
        devices=None if args.devices is None else [d for d in args.devices.split(",") if d.strip()],
        per_device=args.per_device,
        workers=args.workers,
    )
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

    from regbench.plan import check_protocol, expand_names
    from regbench.plugins import registry
    from regbench.store import Store
    from regbench.tuning import TUNERS, run_search

    settings = _settings(args)
    protocol = _protocol(settings)
    check_protocol(protocol)
    if args.tuner not in TUNERS:
        raise RegbenchError(f"--tuner must be one of {', '.join(TUNERS)}")
    if args.max_trials < 1:
        raise RegbenchError(f"--max-trials must be at least 1; got {args.max_trials}")
    archs = expand_names("architectures", settings["arch"], registry())
    regs = expand_names("regularizers", settings["reg"], registry())
    seed = _seeds(settings["seeds"])[0]
    dataset = registry().get("datasets", protocol.dataset)
    from regbench.datasets import check_options

    check_options(dataset, protocol.dataset_options)
    options = {**protocol.dataset_options, "data_dir": args.data_dir, "cache_dir": _cache(args)}
    data = dataset.load(seed, options)
    out = console()
    store = Store(_out(settings))
    found = []
    try:
        for arch in archs:
            for reg in regs:
                if not registry().get("regularizers", reg).hparams:
                    continue
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
    from regbench.ray_executor import run_with_ray

    return run_with_ray(specs, options, hooks)


def _leaderboard(folder: Path, out, specs=None) -> int:
    from regbench import leaderboard
    from regbench.results import load

    runs, epochs = load(folder)
    if specs is not None:
        runs = runs[runs["config_hash"].isin({s.config_hash for s in specs})]
    leaderboard.render(runs, epochs, out)
    out.print(f"results: {folder}/runs.csv, {folder}/epochs.csv")
    return EXIT_OK if (runs["status"] == "ok").all() else EXIT_FAILED_RUNS


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from regbench import leaderboard
    from regbench.results import load

    runs, epochs = load(Path(args.experiment))
    if args.json:
        print(leaderboard.to_json(runs, epochs))
        return EXIT_OK
    leaderboard.render(runs, epochs, console())
    return EXIT_OK


# ---------------------------------------------------------------- visualize / final


def _experiment(args: argparse.Namespace) -> Path:
    return Path(args.experiment or Path("reports") / args.dataset)


def _class_index(wanted: str | None, names: tuple[str, ...]) -> int | None:
    if wanted is None:
        return names.index("horse") if "horse" in names else None  # the lab's photo
    if wanted in names:
        return names.index(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise RegbenchError(f"--class {wanted!r} is not a class of this dataset ({', '.join(names)})")


def cmd_visualize(args: argparse.Namespace) -> int:
    from regbench.lookup import finished_run, open_model
    from regbench.plugins import registry

    folder = _experiment(args)
    if not args.run and not (args.arch and args.reg):
        raise RegbenchError("name a run with --run RUN_ID, or a cell with --arch and --reg")
    names = [n.strip() for n in args.with_.split(",") if n.strip()]
    visualizers = [registry().get("visualizers", name) for name in names]
    row = finished_run(folder, args.run, args.arch, args.reg)
    dataset = registry().get("datasets", row["dataset"])
    options = {
        **json.loads(row["dataset_options"] or "{}"),
        "data_dir": args.data_dir,
        "cache_dir": _cache(args),
    }
    data = dataset.load(int(row["seed"]), options)  # the run's own split: its test images
    class_names = data.class_names
    model = open_model(row)
    if args.image:
        from regbench.visualizer import load_image

        image, label = load_image(args.image, model.input_shape[1:]), None
    else:
        wanted = _class_index(args.class_, class_names)
        index = 0 if wanted is None else int((data.y_test == wanted).argmax())
        image, label = data.x_test[index], int(data.y_test[index])
    out_dir = Path(args.out or folder / "figures" / "visualize" / row["run_id"])
    written: list[Path] = []
    for visualizer in visualizers:
        written += visualizer.render(
            model,
            image,
            out_dir / visualizer.name,
            {
                "layers": args.layers,
                "class_names": class_names,
                "label": label,
                "title": f"{row['arch']} + {row['reg']}",
            },
        )
    out = console()
    for path in written:
        out.print(str(path), markup=False, highlight=False)
    return EXIT_OK


def cmd_final(args: argparse.Namespace) -> int:
    """Retrain one cell on train+validation and read the test split once (the lab's last step)."""
    from regbench import leaderboard
    from regbench.executor import ExecutorOptions, Hooks, run_in_process
    from regbench.plan import RunSpec
    from regbench.results import load
    from regbench.store import Store

    folder = _experiment(args)
    runs, epochs = load(folder)
    if args.best:
        board = leaderboard.table(runs, epochs)
        if board.empty:
            raise RegbenchError(f"--best: {folder} has no finished grid runs to choose from")
        arch, reg = board.iloc[0]["arch"], board.iloc[0]["reg"]
    elif args.arch and args.reg:
        arch, reg = args.arch, args.reg
    else:
        raise RegbenchError("choose the cell with --arch and --reg, or take the best with --best")
    from regbench.lookup import finished_run

    source = finished_run(folder, None, arch, reg)  # the protocol of the grid run it repeats
    spec = RunSpec(
        arch=arch,
        reg=reg,
        params=source["params"],
        seed=args.seed,
        dataset=source["dataset"],
        dataset_options=json.loads(source["dataset_options"] or "{}"),
        epochs=args.epochs,
        batch_size=int(source["batch_size"]),
        optimizer=source["optimizer"],
        learning_rate=None if pd_isna(source["learning_rate"]) else float(source["learning_rate"]),
        jit_compile=source["jit_compile"] or "auto",
        precision=source["precision"] or "float32",
        stage="final",
    )
    store = Store(folder)
    out = console()
    results = []
    try:

        def on_result(result) -> None:
            result.row.pop("traceback", None)
            store.record_run(result.row, result.epochs)
            results.append(result.row)

        options = ExecutorOptions(
            data_dir=Path(args.data_dir) if args.data_dir else None,
            cache_dir=_cache(args),
            models_dir=folder / "models",
        )
        out.print(f"final stage: {arch} + {reg}, {args.epochs} epochs on train+validation")
        run_in_process([spec], options, Hooks(on_result=on_result))
    finally:
        store.close()
    row = results[0]
    if row["status"] != "ok":
        out.print(f"final run {row['run_id']} {row['status']}: {row.get('error')}")
        return EXIT_FAILED_RUNS
    from regbench.figures import final_figure

    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / f"{row['run_id']}.png"
    figure = final_figure(load(folder).epochs, row["run_id"], test_accuracy=row["test_accuracy"])
    figure.savefig(path, dpi=120)
    out.print(
        f"{row['run_id']}: trained on {row['n_train']:,} images in "
        f"{row['train_time_s'] / 60:.2f} min; test accuracy {row['test_accuracy']:.4f} "
        f"({row['n_test']:,} images, read once)\nfigure: {path}"
    )
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from regbench.report import write_report

    paths = write_report(Path(args.experiment), Path(args.out) if args.out else None)
    out = console()
    for kind in ("html", "markdown", "figures"):
        out.print(f"{kind}: {paths[kind]}", markup=False, highlight=False)
    return EXIT_OK


def pd_isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


# ---------------------------------------------------------------- parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML experiment file, or a shipped one (lab, quickstart)")
    p.add_argument("--arch", action="append", help="architectures: names, comma lists, or all")
    p.add_argument("--reg", action="append", help="regularizers: names, comma lists, or all")
    p.add_argument("--dataset", help="dataset plugin (default cifar10)")
    p.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        help="dataset-specific option, e.g. native=true for digits",
    )
    p.add_argument("--data-dir", help="CIFAR-10: cifar-10-batches-py/ or cifar-10-python.tar.gz")
    p.add_argument(
        "--cache-dir",
        help="where converted datasets are cached (default $REGBENCH_CACHE or ~/.cache/regbench)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", help="sgd (default, Keras defaults), adam, adamw, rmsprop, ...")
    p.add_argument("--learning-rate", type=float)
    p.add_argument(
        "--param",
        action="append",
        metavar="REG.NAME=VALUE",
        help="regularizer hyperparameter, e.g. dropout.rate=0.2",
    )
    p.add_argument("--seeds", help="number of seeds (0..N-1) or a list like 1,2,3")
    p.add_argument("--target", help="record time to reach it, e.g. val_accuracy=0.5")
    p.add_argument("--jit-compile", choices=("auto", "on", "off"))
    p.add_argument("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    p.add_argument(
        "--steps-per-execution",
        type=int,
        help="training steps per compiled call (fewer host round trips)",
    )
    p.add_argument(
        "--pipeline",
        choices=("auto", "arrays", "tf.data"),
        help="input pipeline (auto: tf.data on TensorFlow, measured faster; arrays elsewhere)",
    )
    p.add_argument("--out", help="experiment folder (default reports/<experiment name>)")


def _add_tuner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tuner", default="random", help="random (default), bayesian or hyperband")
    p.add_argument("--max-trials", type=int, default=10, help="trials per cell (default 10)")


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    """Where a finished experiment and its data are (visualize, final)."""
    p.add_argument("--experiment", help="experiment folder (default reports/<dataset>)")
    p.add_argument("--dataset", default="cifar10", help="names the default experiment folder")
    p.add_argument("--data-dir", help="CIFAR-10 location, as for `run`")
    p.add_argument("--cache-dir", help="dataset cache, as for `run`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="regbench", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--version", action="version", version=f"regbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="installed architectures, regularizers, datasets, visualizers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", help="a model's layers and parameter counts")
    p.add_argument("--arch", required=True)
    p.add_argument("--reg", default="none")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--input-shape", default="32,32,3")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_describe)

    for name, help_text in (
        ("run", "train the grid of architectures x regularizers x seeds"),
        ("plan", "show the grid and what is done, without running"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_run_options(p)
        p.add_argument("--force", action="store_true", help="rerun cells that are already ok")
        p.add_argument("--dry-run", action="store_true", default=name == "plan")
        p.add_argument(
            "--tuned",
            action="store_true",
            help="use the best values from this experiment's tuning stage",
        )
        p.add_argument(
            "--tune",
            action="store_true",
            help="run the tuning stage first, then the grid with its values",
        )
        _add_tuner_options(p)
        p.add_argument("--executor", choices=("local", "inprocess", "ray"), default="local")
        p.add_argument("--devices", help="GPU ids to use, e.g. 0,1 (default: all; cpu for none)")
        p.add_argument("--per-device", type=int, default=1, help="concurrent runs per GPU")
        p.add_argument(
            "--ray-address",
            help="Ray cluster to use with --executor ray (default: start a local one)",
        )
        p.add_argument("--workers", type=int, help="worker processes when running on CPU")
        p.add_argument("--trainer", default="regbench.trainer:train_run", help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_run)

    p = sub.add_parser("tune", help="keras-tuner search of the regularizers' hyperparameters")
    _add_run_options(p)
    _add_tuner_options(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("visualize", help="feature maps, filters and Grad-CAM of a trained run")
    p.add_argument("--run", help="run id (see `regbench leaderboard`)")
    p.add_argument("--arch")
    p.add_argument("--reg")
    _add_experiment_options(p)
    p.add_argument("--image", help="any image file; resized to the model's input")
    p.add_argument(
        "--class",
        dest="class_",
        metavar="CLASS",
        help="without --image: the first test image of this class (default horse)",
    )
    p.add_argument("--layers", type=int, default=4, help="feature maps of the first N layers")
    p.add_argument(
        "--with",
        dest="with_",
        default="featuremaps,filters,gradcam",
        help="visualizers to run, comma separated",
    )
    p.add_argument("--out", help="folder for the figures")
    p.set_defaults(func=cmd_visualize)

    p = sub.add_parser("final", help="retrain a cell on train+validation, test it once")
    p.add_argument("--arch")
    p.add_argument("--reg")
    p.add_argument("--best", action="store_true", help="the cell with the best mean val accuracy")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    _add_experiment_options(p)
    p.set_defaults(func=cmd_final)

    p = sub.add_parser("report", help="HTML and Markdown report of an experiment, with figures")
    p.add_argument("experiment")
    p.add_argument("--out", help="folder for report.html, report.md and figures/ (default: DIR)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leaderboard", help="the ranked results of an experiment folder")
    p.add_argument("experiment")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RegbenchError as exc:
        print(f"regbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("regbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
