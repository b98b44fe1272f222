"""`regbench export DIR --to mlflow`: an experiment's runs in the tracking tool a lab uses."""

from __future__ import annotations

import argparse

from regbench.cli.common import EXIT_OK, console


def cmd_export(args: argparse.Namespace) -> int:
    from regbench.results import mlflow_export

    done = mlflow_export.export(args.experiment, args.tracking_uri, args.mlflow_experiment)
    console().print(
        f"exported {done.added} run(s) to MLflow experiment {done.experiment_id} at "
        f"{done.tracking_uri} ({done.already_there} already there)",
        markup=False,
        highlight=False,
    )
    return EXIT_OK
