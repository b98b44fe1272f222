"""`regbench visualize`, `final` and `report`: what comes after the grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli.common import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    baseline,
    experiment_folder,
    say,
    warn,
)


def _folder(args: argparse.Namespace, positional: str | None = None) -> Path:
    """The experiment folder, defaulting as `run` does: reports/<dataset>."""
    chosen = experiment_folder(args, positional)
    return Path(chosen) if chosen is not None else Path("reports") / args.dataset


def _output(args: argparse.Namespace, flag: str) -> str | None:
    """The output folder option, or its deprecated spelling `--out`."""
    if args.old_out is not None:
        warn(f"--out is deprecated here; use {flag}")
    return getattr(args, flag.lstrip("-").replace("-", "_")) or args.old_out


def cmd_visualize(args: argparse.Namespace) -> int:
    import regbench

    written = regbench.visualize(
        _folder(args),
        run=args.run,
        arch=args.arch,
        reg=args.reg,
        image=args.image,
        class_name=args.class_,
        visualizers=[n.strip() for n in args.with_.split(",") if n.strip()],
        layers=args.layers,
        out=_output(args, "--figures"),
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
    )
    for path in written:
        say(str(path))
    return EXIT_OK


def cmd_final(args: argparse.Namespace) -> int:
    """Retrain one cell on train+validation and read the test split once (the lab's last step)."""
    import regbench
    from regbench.cli.common import console
    from regbench.cli.progress import GridProgress

    if not args.best and not (args.arch and args.reg):
        from regbench.errors import RegbenchError

        raise RegbenchError("choose the cell with --arch and --reg, or take the best with --best")
    folder = _folder(args)
    try:
        row = regbench.final(
            folder,
            arch=args.arch,
            reg=args.reg,
            best=args.best,
            epochs=args.epochs,
            seed=args.seed,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            observer=GridProgress(console()),
        )
    except regbench.Interrupted:
        say("interrupted: the final run was not recorded; rerun the same command")
        return EXIT_INTERRUPTED
    if row["status"] != "ok":
        say(f"final run {row['run_id']} {row['status']}: {row.get('error')}")
        return EXIT_FAILED_RUNS
    say(
        f"final stage, {row['arch']} + {row['reg']}, "
        f"{row['run_id']}: trained on {row['n_train']:,} images (train+validation) in "
        f"{row['train_time_s'] / 60:.2f} min; test accuracy {row['test_accuracy']:.4f} "
        f"({row['n_test']:,} images, read once)\nfigure: {row['figure']}"
    )
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    import regbench
    from regbench.errors import RegbenchError

    chosen = experiment_folder(args, args.folder)
    if chosen is None:
        raise RegbenchError("name the experiment folder: regbench report DIR")
    against = baseline(args.baseline)
    paths = regbench.report(chosen, _output(args, "--report-dir"), baseline=against)
    for kind in ("html", "markdown", "figures"):
        say(f"{kind}: {paths[kind]}")
    return EXIT_OK
