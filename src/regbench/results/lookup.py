"""Find a finished run of an experiment and reopen its trained model (visualize, final)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.errors import RegbenchError
from regbench.results.reader import load


def model_file(folder: Path, stored: Any) -> Path | None:
    """Where a run's stored model path points: relative paths (today's, `models/<run_id>.keras`)
    are inside the experiment folder. An older store's path that is not there, an absolute one
    or one relative to the working folder it was run from (the Ray executor's), is looked up in
    this folder's models/ (the folder was moved, copied, or named from elsewhere)."""
    if not isinstance(stored, str) or not stored:
        return None
    path = Path(stored)
    inside = path if path.is_absolute() else Path(folder) / path
    moved = Path(folder) / "models" / path.name
    return moved if not inside.exists() and moved.exists() else inside


def finished_run(
    folder: Path,
    run_id: str | None = None,
    arch: str | None = None,
    reg: str | None = None,
    cell: str | None = None,
    dataset: str | None = None,
) -> pd.Series:
    """The run named `run_id`, or the best-validated ok grid run of a cell (by its hash, as
    the leaderboard groups them) or of (arch, reg); with `dataset`, one trained on that
    dataset only. Its `model_path` is resolved against `folder`."""
    row = _find(folder, run_id, arch, reg, cell, dataset).copy()
    resolved = model_file(folder, row.get("model_path"))
    row["model_path"] = None if resolved is None else str(resolved)
    return row


def _find(folder, run_id, arch, reg, cell, dataset) -> pd.Series:
    runs = load(folder).runs
    if dataset is not None:
        every, runs = runs, of_dataset(runs, dataset, folder)
        if run_id and run_id not in set(runs["run_id"]) and run_id in set(every["run_id"]):
            trained = every.loc[every["run_id"] == run_id, "dataset"].iloc[0]
            raise RegbenchError(f"--dataset {dataset}: run {run_id} was trained on {trained}")
    if run_id:
        match = runs[runs["run_id"] == run_id]
        if match.empty:
            raise RegbenchError(
                f"no run {run_id!r} in {folder}; `regbench leaderboard {folder}` lists them"
            )
        row = match.iloc[0]
        if row["status"] != "ok":
            raise RegbenchError(
                f"run {run_id} has not finished ok (status {row['status']}): "
                "there is no trained model to use"
            )
        return row
    finished = runs[(runs["status"] == "ok") & (runs["stage"].fillna("grid") == "grid")]
    if cell is not None:
        finished = finished[finished["cell_hash"] == cell]
    else:
        finished = finished[(finished["arch"] == arch) & (finished["reg"] == reg)]
    if finished.empty:
        raise RegbenchError(
            f"no finished {arch} + {reg} run in {folder}; train it first with "
            f"`regbench run --arch {arch} --reg {reg} --experiment {shlex.quote(str(folder))}`"
        )
    return finished.sort_values("val_accuracy", ascending=False).iloc[0]


def of_dataset(runs: pd.DataFrame, dataset: str, folder: Path) -> pd.DataFrame:
    """The runs trained on `dataset`; none is one line naming the datasets there are."""
    mine = runs[runs["dataset"] == dataset]
    if mine.empty:
        there = ", ".join(sorted(runs["dataset"].dropna().astype(str).unique())) or "none"
        raise RegbenchError(
            f"--dataset {dataset}: no run in {folder} trained on it (its datasets: {there}); "
            "name one of those, or leave --dataset out"
        )
    return mine


def open_model(row: pd.Series, folder: Path | None = None) -> Any:
    """The trained Keras model saved with a run (compile state is not needed to look at it);
    a relative `model_path` is read from `folder`. A broken file gets one line."""
    stored = row.get("model_path")
    path = model_file(folder or Path.cwd(), stored)
    if path is None:
        raise RegbenchError(f"run {row['run_id']} saved no model")
    if not path.exists():
        raise RegbenchError(
            f"run {row['run_id']}'s model is gone: {path} does not exist; {_retrain(row, folder)}"
        )
    from regbench.plugins.manager import keras_with_plugins

    try:
        return keras_with_plugins().saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for a damaged archive
        message = " ".join(str(exc).split())[:200]
        raise RegbenchError(
            f"model {path} cannot be loaded ({type(exc).__name__}: {message}); "
            f"{_retrain(row, folder)}"
        ) from None


def _retrain(row: pd.Series, folder: Path | None) -> str:
    """How to train a run's model again: its cell and seed with `--force` (a run recorded
    ok is otherwise skipped, whether or not its model file is still there)."""
    where = shlex.quote(str(folder or Path.cwd()))
    return (
        f"retrain it with the command that trained it and --force, e.g. `regbench run "
        f"--experiment {where} --arch {row.get('arch')} --reg {row.get('reg')} "
        f"--seeds {row.get('seed')}, --force` (with the same options as before)"
    )
