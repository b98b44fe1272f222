"""`regbench run`, `plan`, `tune` and `leaderboard`: flags in, library calls, printed results."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from regbench.cli.common import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    baseline,
    console,
    experiment_folder,
    installed,
    say,
)
from regbench.errors import RegbenchError

# run flags -> Experiment fields (the flag's dest is the field's name)
SETTINGS = (
    "arch",
    "reg",
    "dataset",
    "dataset_options",
    "params",
    "seeds",
    "epochs",
    "batch_size",
    "optimizer",
    "optimizer_options",
    "learning_rate",
    "lr_schedule",
    "target",
    "precision",
    "jit_compile",
    "steps_per_execution",
    "pipeline",
    "engine",
    "tensorboard",
    "baseline",
    "data_dir",
    "cache_dir",
    "executor",
    "devices",
    "per_device",
    "workers",
    "max_runs_per_worker",
    "run_timeout",
    "ray_address",
    "trainer",
)
# a run setting's value that needs an optional extra -> (its module, its name, the extra)
NEEDS_EXTRA = {
    ("executor", "ray"): ("ray", "Ray", "ray"),
    ("engine", "vmapped"): ("jax", "JAX", "jax"),
}


def experiment(args: argparse.Namespace):
    """The experiment the flags describe: `--config` first, the flags over it."""
    from regbench.engine.experiment import Experiment

    flags: dict[str, Any] = {key: getattr(args, key, None) for key in SETTINGS}
    flags["out"] = experiment_folder(args)
    if flags["arch"] is not None:
        flags["arch"] = [a for a in flags["arch"]]
    if args.config:
        chosen = Experiment.from_config(args.config, **flags)
    else:
        chosen = Experiment.create(**flags)
    return replace(chosen, baseline=baseline(chosen.baseline))


def cmd_plan(args: argparse.Namespace) -> int:
    import regbench

    _show_plan(regbench.plan(experiment(args), tuned=args.tuned))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import regbench
    from regbench.cli.progress import GridProgress

    chosen = experiment(args)
    if args.dry_run:
        return cmd_plan(args)
    _require_extras(chosen)
    if args.tune:
        cmd_tune(args)
    out = console()
    try:
        results = regbench.run(
            chosen, force=args.force, tuned=args.tuned or args.tune, observer=GridProgress(out)
        )
    except regbench.Interrupted as stop:
        say(
            f"interrupted: {stop.finished} finished run(s) kept in {stop.folder}; "
            "rerun the same command to resume"
        )
        return EXIT_INTERRUPTED
    return _show_results(results, chosen.folder, chosen.baseline)


def _require_extras(chosen) -> None:
    """A setting that needs an optional extra names it before anything is created or trained."""
    for (setting, value), (module, name, extra) in NEEDS_EXTRA.items():
        if getattr(chosen, setting) == value and not installed(module):
            raise RegbenchError(
                f"--{setting} {value} needs {name}: pip install 'regbench[{extra}]'"
            )


def _show_results(results, folder, baseline: str) -> int:
    from regbench.results import leaderboard

    out = console()
    leaderboard.render(results.runs, results.epochs, out, baseline=baseline)
    out.print(f"results: {folder}/runs.csv, {folder}/epochs.csv", markup=False)
    fine = results.runs["status"].isin(["ok", "skipped"])  # skipped: not applicable, by design
    return EXIT_OK if fine.all() else EXIT_FAILED_RUNS


def _show_plan(plan) -> None:
    from rich.table import Table

    table = Table(title=f"plan: {len(plan.runs)} runs -> {plan.folder}", title_justify="left")
    for column in ("run", "arch", "reg", "hyperparameters", "seed", "state"):
        table.add_column(column, overflow="fold")
    for run in plan.runs:
        spec = run.spec
        values = ", ".join(f"{k}={v:g}" for k, v in sorted(spec.params.items()))
        state = {"failed": f"failed ({run.status})", "skipped": f"skipped: {spec.skip}"}.get(
            run.state, run.state
        )
        if run.why:
            state += f" ({run.why})"
        table.add_row(spec.run_id, spec.arch, spec.reg, values or "-", str(spec.seed), state)
    out = console()
    out.print(table)
    out.print(
        f"done {plan.count('done')}, pending {plan.count('pending')}, "
        f"failed {plan.count('failed')}, skipped {plan.count('skipped')}"
    )


def cmd_tune(args: argparse.Namespace) -> int:
    """The keras-tuner stage: search each cell's declared hyperparameters on validation."""
    import time

    import regbench

    chosen = experiment(args)
    started: dict[tuple[str, str], float] = {}

    def on_cell(arch: str, reg: str) -> None:
        started[(arch, reg)] = time.perf_counter()
        say(
            f"tuning {arch} + {reg}: {args.tuner}, {args.max_trials} trials, "
            f"{chosen.epochs} epoch(s) each"
        )

    def on_trial(arch: str, reg: str, trial: dict[str, Any]) -> None:
        values = ", ".join(f"{k}={v:.4g}" for k, v in trial["values"].items())
        score = "" if trial["score"] is None else f"val_accuracy {trial['score']:.4f}"
        say(
            f"  trial {trial['trial_id']}: {trial['status']} {score} "
            f"[{values}] {trial.get('error') or ''}"
        )

    def on_best(arch: str, reg: str, best: dict[str, Any]) -> None:
        if best["tied"]:
            say(
                f"  tie: trials {', '.join(best['tied'])} scored {best['score']:.4f}; "
                f"chose {best['trial_id']} ({best['rule']})"
            )

    found = regbench.tune(
        chosen,
        tuner=args.tuner,
        max_trials=args.max_trials,
        seeds_per_trial=args.seeds_per_trial,
        on_trial=on_trial,
        on_cell=on_cell,
        on_best=on_best,
    )
    for (arch, reg), best in found.items():
        values = ", ".join(f"{k}={v:.4g}" for k, v in best.items())
        seconds = time.perf_counter() - started[(arch, reg)]
        say(f"best {arch} + {reg}: {values} ({seconds:.1f} s)")
    if not found:
        say("nothing to tune: the chosen regularizers declare no hyperparameters")
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import regbench
    from regbench.results import leaderboard

    folders = list(args.folders)
    against = baseline(args.baseline)
    if args.experiment or args.old_out:
        folders.insert(0, experiment_folder(args))
    if not folders:
        raise RegbenchError("name the experiment folder: regbench leaderboard DIR [DIR ...]")
    if len(folders) > 1:  # several experiments: the same cells side by side
        from regbench.results import compare

        if args.json:
            print(compare.to_json(folders))
        else:
            compare.render(folders, console())
        return EXIT_OK
    results = regbench.load(folders[0])
    if args.json:
        print(leaderboard.to_json(results.runs, results.epochs, baseline=against))
        return EXIT_OK
    leaderboard.render(results.runs, results.epochs, console(), baseline=against, wide=args.wide)
    return EXIT_OK
