"""`regbench run`, `plan` and `leaderboard`: flags in, library calls, printed results."""

from __future__ import annotations

import argparse
from typing import Any

from regbench.cli.common import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    baseline,
    console,
    duration,
    experiment,
    experiment_folder,
    installed,
    print_json,
    say,
)
from regbench.errors import RegbenchError

# a run setting's value that needs an optional extra -> (its module, its name, the extra)
NEEDS_EXTRA = {
    ("executor", "ray"): ("ray", "Ray", "ray"),
    ("engine", "vmapped"): ("jax", "JAX", "jax"),
}


def protocol_given(args: argparse.Namespace) -> set[str]:
    """The protocol settings the command line chose (all of them with --config: the file
    says what it trains under); `--tuned` takes the others from the tuning stage."""
    from regbench.study.tuning import TUNED_SETTINGS

    if getattr(args, "config", None):
        return set(TUNED_SETTINGS)
    return {name for name in TUNED_SETTINGS if getattr(args, name, None) is not None}


def cmd_plan(args: argparse.Namespace) -> int:
    import regbench

    planned = regbench.plan(experiment(args), tuned=args.tuned, protocol_given=protocol_given(args))
    if args.json:
        print_json(_plan_json(planned))
    else:
        _show_plan(planned)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import time
    import warnings

    import regbench
    from regbench.engine.outcome import now
    from regbench.results.utilisation import busy
    from regbench.study import FailedRuns
    from regbench.study.progress import GridProgress

    chosen = experiment(args)
    if args.dry_run:
        return cmd_plan(args)
    _require_extras(chosen)
    if args.tune:
        from regbench.cli.tune import tune_stage

        tune_stage(args, as_json=False, quiet=args.json)
    since, clock = now(), time.perf_counter()
    try:
        with warnings.catch_warnings():  # failed runs are listed below, and set the exit code
            warnings.simplefilter("ignore", FailedRuns)
            results = regbench.run(
                chosen,
                force=args.force,
                tuned=args.tuned or args.tune,
                observer=GridProgress(console(stderr=args.json)),
                protocol_given=protocol_given(args),
            )
    except regbench.Interrupted as stop:
        say(
            f"interrupted: {stop.finished} finished run(s) kept in {stop.folder}; "
            "rerun the same command to resume",
            stderr=args.json,
        )
        return EXIT_INTERRUPTED
    code = _show_results(results, chosen.folder, chosen.baseline, args.json)
    spent = busy(results.runs, since, time.perf_counter() - clock)
    if spent is not None and not args.json:
        say(spent.line())
    return code


def _require_extras(chosen) -> None:
    """A setting that needs an optional extra names it before anything is created or trained."""
    for (setting, value), (module, name, extra) in NEEDS_EXTRA.items():
        if getattr(chosen, setting) == value and not installed(module):
            raise RegbenchError(
                f"--{setting} {value} needs {name}: pip install 'regbench[{extra}]'"
            )


def _show_results(results, folder, baseline: str, as_json: bool = False) -> int:
    from regbench.results import leaderboard

    fine = results.runs["status"].isin(["ok", "skipped"])  # skipped: not applicable, by design
    code = EXIT_OK if fine.all() else EXIT_FAILED_RUNS
    if as_json:
        print(leaderboard.to_json(results.runs, results.epochs, baseline=baseline))
        return code
    from regbench.reporting import board_text

    board_text.render(results.runs, results.epochs, console(), baseline=baseline)
    say(f"results: {folder}/runs.csv, {folder}/epochs.csv")
    return code


def _state(run) -> str:
    """A planned run's state in words: why it is skipped, failed or pending again."""
    spec = run.spec
    state = {"failed": f"failed ({run.status})", "skipped": f"skipped: {spec.skip}"}.get(
        run.state, run.state
    )
    return state + (f" ({run.why})" if run.why else "")


def _show_plan(plan) -> None:
    """The plan as a table whose run ids, names and seeds are never broken across lines (the
    hyperparameters and states wrap between words instead), then the counts and estimate."""
    from rich.markup import escape
    from rich.table import Table

    from regbench.results.format import params_label

    say(f"plan: {len(plan.runs)} runs -> {plan.folder}")
    labels = [params_label(run.spec.params) or "-" for run in plan.runs]
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("run", no_wrap=True, min_width=_longest(r.spec.run_id for r in plan.runs))
    # wraps between values, never inside one: its narrowest is its longest `name=value`
    table.add_column("hyperparameters", min_width=_longest(v for t in labels for v in t.split()))
    table.add_column("seed", no_wrap=True, justify="right")
    table.add_column("state", ratio=1)
    for run, label in zip(plan.runs, labels, strict=True):
        state = escape(_state(run))
        table.add_row(escape(run.spec.run_id), escape(label), str(run.spec.seed), state)
    console().print(table)
    say(
        f"done {plan.count('done')}, pending {plan.count('pending')}, "
        f"failed {plan.count('failed')}, skipped {plan.count('skipped')}"
    )
    say(_estimate_line(plan))


def _longest(texts) -> int:
    return max([0, *(len(t) for t in texts)])


def _estimate_line(plan) -> str:
    """How long the runs still to train will take, from the measured seconds per epoch."""
    todo = plan.count("pending") + plan.count("failed")
    seconds, timed = plan.estimate()
    if not todo:
        return "estimate: nothing left to train"
    if not timed:
        return "estimate: none yet (no finished run of these cells to time)"
    runs = f"the {todo} run(s)" if timed == todo else f"{timed} of the {todo} run(s)"
    rest = "" if timed == todo else f"; the other {todo - timed} are in cells not timed yet"
    return (
        f"estimate: about {duration(seconds)} of training for {runs} to train, one after "
        f"another (from finished runs' seconds per epoch{rest})"
    )


def _plan_json(plan) -> dict[str, Any]:
    seconds, timed = plan.estimate()
    return {
        "folder": plan.folder,
        "counts": {s: plan.count(s) for s in ("done", "pending", "failed", "skipped")},
        "estimate_s": seconds if timed else None,
        "estimated_runs": timed,
        "runs": [
            {
                "run_id": run.spec.run_id,
                "arch": run.spec.arch,
                "reg": run.spec.reg,
                "params": dict(run.spec.params),
                "seed": run.spec.seed,
                "state": run.state,
                "status": run.status,
                "why": run.why or run.spec.skip,
            }
            for run in plan.runs
        ],
    }


def _by_reg(results: Any, against: str, args: argparse.Namespace) -> int:
    """`leaderboard --by reg`: each regularizer across architectures (results.across)."""
    from regbench.reporting import across_text
    from regbench.results import across

    if not 0 < args.detect < 1:
        raise RegbenchError(
            f"--detect {args.detect:g}: give the difference in accuracy to detect, between 0 "
            "and 1 (e.g. 0.01 for one point)"
        )
    summaries = results.across(baseline=against, detect=args.detect)
    if args.json:
        print_json({"by_reg": across.to_jsonable(summaries)})
        return EXIT_OK
    across_text.render(summaries, console())
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
        from regbench.reporting import compare_text
        from regbench.results import compare

        if args.json:
            print(compare.to_json(folders))
        else:
            compare_text.render(folders, console())
        return EXIT_OK
    results = regbench.load(folders[0])
    if args.by == "reg":
        return _by_reg(results, against, args)
    if args.json:
        print(leaderboard.to_json(results.runs, results.epochs, baseline=against))
        return EXIT_OK
    from regbench.reporting import board_text

    board_text.render(results.runs, results.epochs, console(), baseline=against, wide=args.wide)
    return EXIT_OK
