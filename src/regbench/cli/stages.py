"""`regbench visualize`, `final` and `report`: what comes after the grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regbench.cli.common import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    baseline,
    experiment_folder,
    plain,
    print_json,
    say,
    warn,
)
from regbench.errors import RegbenchError


def _folder(args: argparse.Namespace, positional: str | None = None) -> Path:
    """The experiment folder, defaulting as `run` does: reports/<dataset>."""
    chosen = experiment_folder(args, positional)
    return Path(chosen) if chosen is not None else Path("reports") / (args.dataset or "cifar10")


def _output(args: argparse.Namespace, old: str) -> str | None:
    """`--output-dir`, or an earlier spelling of it (`old`, or 0.1's `--out`) with a
    deprecation line."""
    for flag, value in (
        (old, getattr(args, "old_" + old.lstrip("-").replace("-", "_"))),
        ("--out", args.old_output),
    ):
        if value is not None:
            warn(f"{flag} is deprecated; use --output-dir (it is the same folder)")
            if args.output_dir is None:
                return str(value)
    return args.output_dir


def cmd_visualize(args: argparse.Namespace) -> int:
    import regbench

    written = regbench.visualize(
        _folder(args),
        run=args.run,
        arch=args.arch,
        reg=args.reg,
        image=args.image,
        class_name=args.class_,
        split=args.split,
        visualizers=[n.strip() for n in args.with_.split(",") if n.strip()],
        layers=args.layers,
        out=_output(args, "--figures"),
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        dataset=args.dataset,
    )
    if args.json:
        print_json({"files": written})
        return EXIT_OK
    for path in written:
        say(str(path))
    return EXIT_OK


def _seeds(args: argparse.Namespace) -> tuple[int, ...]:
    """`--seeds` as `run` reads it (a count or a list), `--seed N` as the one seed N."""
    from regbench.design.experiment import Experiment

    if args.seed is not None:
        warn(f"--seed is deprecated; use --seeds {args.seed}, (a list of one seed)")
        return (args.seed,)
    return Experiment.create(seeds=args.seeds).seeds


def cmd_final(args: argparse.Namespace) -> int:
    """Retrain one cell on train+validation and read the test split once (the lab's last step),
    once per seed."""
    import regbench
    from regbench.cli.common import console
    from regbench.study.progress import GridProgress

    if not args.best and not (args.arch and args.reg):
        raise RegbenchError("choose the cell with --arch and --reg, or take the best with --best")
    folder = _folder(args)
    rows: list[dict[str, Any]] = []
    for seed in _seeds(args):
        try:
            rows.append(
                regbench.final(
                    folder,
                    arch=args.arch,
                    reg=args.reg,
                    best=args.best,
                    epochs=args.epochs,
                    seed=seed,
                    data_dir=args.data_dir,
                    cache_dir=args.cache_dir,
                    observer=GridProgress(console(stderr=args.json), label="final"),
                    dataset=args.dataset,
                )
            )
        except regbench.Interrupted:
            say("interrupted: the final run was not recorded; rerun the same command", args.json)
            return EXIT_INTERRUPTED
    if args.json:
        print_json({"runs": [plain(row) for row in rows]})
    else:
        for row in rows:
            _show_final(row)
    return EXIT_OK if all(row["status"] == "ok" for row in rows) else EXIT_FAILED_RUNS


def _show_final(row: dict[str, Any]) -> None:
    if row["status"] != "ok":
        say(f"final run {row['run_id']} {row['status']}: {row.get('error')}")
        return
    say(
        f"final stage, {row['arch']} + {row['reg']}, "
        f"{row['run_id']}: trained on {row['n_train']:,} images (train+validation) in "
        f"{row['train_time_s'] / 60:.2f} min; test accuracy {row['test_accuracy']:.4f} "
        f"({row['n_test']:,} images, read once)"
    )
    say(f"figure: {row['figure']}")


def cmd_report(args: argparse.Namespace) -> int:
    import regbench

    chosen = experiment_folder(args, args.folder)
    if chosen is None:
        raise RegbenchError("name the experiment folder: regbench report --experiment DIR")
    against = baseline(args.baseline)
    paths = regbench.report(chosen, _output(args, "--report-dir"), baseline=against)
    if args.json:
        print_json(paths)
        return EXIT_OK
    for kind in ("html", "markdown", "figures"):
        say(f"{kind}: {paths[kind]}")
    return EXIT_OK
