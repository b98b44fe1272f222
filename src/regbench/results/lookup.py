"""Find a finished run of an experiment and reopen its trained model (visualize, final)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from regbench.errors import RegbenchError
from regbench.results.reader import load


def finished_run(
    folder: Path,
    run_id: str | None = None,
    arch: str | None = None,
    reg: str | None = None,
    cell: str | None = None,
) -> pd.Series:
    """The run named `run_id`, or the best-validated ok grid run of a cell (by its hash, as
    the leaderboard groups them) or of (arch, reg)."""
    runs = load(folder).runs
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
            f"`regbench run --arch {arch} --reg {reg} --out {folder}`"
        )
    return finished.sort_values("val_accuracy", ascending=False).iloc[0]


def open_model(row: pd.Series) -> Any:
    """The trained Keras model saved with a run (compile state is not needed to look at it)."""
    path = row.get("model_path")
    if not isinstance(path, str):
        raise RegbenchError(f"run {row['run_id']} saved no model")
    if not Path(path).exists():
        raise RegbenchError(f"run {row['run_id']}'s model is gone: {path} does not exist")
    from regbench.plugins.keras import import_keras

    return import_keras().saving.load_model(path, compile=False)
