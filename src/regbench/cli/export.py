"""`regbench export DIR --to mlflow`: an experiment's runs in the tracking tool a lab uses."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli.common import EXIT_OK, experiment_folder, print_json, say, warn
from regbench.errors import RegbenchError


def cmd_export(args: argparse.Namespace) -> int:
    from regbench.results import mlflow_export

    folder = experiment_folder(args, args.folder)
    if folder is None:
        raise RegbenchError("name the experiment folder: regbench export --experiment DIR")
    done = mlflow_export.export(folder, args.tracking_uri, args.mlflow_experiment)
    missing = missing_models(Path(folder))
    if args.json:
        print_json({**vars(done), "models_missing": missing})
        return EXIT_OK
    redone = (
        f", {done.redone} left unfinished by an export cut short, redone" if done.redone else ""
    )
    say(
        f"exported {done.added} run(s) to MLflow experiment {done.experiment_id} at "
        f"{done.tracking_uri} ({done.already_there} already there{redone})"
    )
    if args.tracking_uri and done.tracking_uri != args.tracking_uri:
        say(
            f"({args.tracking_uri} is written as the SQLite store {done.tracking_uri}: MLflow 3 "
            f"opens a file store only with {mlflow_export.ALLOW_FILE_STORE}=true)"
        )
    if missing:
        warn(
            f"{len(missing)} run(s) saved a model that is no longer in {folder}/models, so "
            f"MLflow has no model file for them: {', '.join(missing)}"
        )
    return EXIT_OK


def missing_models(folder: Path) -> list[str]:
    """The runs whose stored model file cannot be found (moved, deleted) from this folder."""
    from regbench.results.lookup import model_file
    from regbench.results.reader import load

    runs = load(folder).runs
    return [
        row.run_id
        for row in runs.itertuples()
        if (path := model_file(folder, row.model_path)) is not None and not path.is_file()
    ]
