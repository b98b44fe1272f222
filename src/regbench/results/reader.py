"""Read an experiment's results as pandas DataFrames (safe while a grid is still running)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from regbench.results.migrations import RUN_COLUMNS
from regbench.results.store import open_read_only


class Results(NamedTuple):
    """The runs table (one row per run) and the tidy epochs table."""

    runs: pd.DataFrame
    epochs: pd.DataFrame

    def leaderboard(self) -> pd.DataFrame:
        """The cells ranked by mean validation accuracy, one row per cell."""
        from regbench.results.leaderboard import table

        return table(self.runs, self.epochs)

    def across(self, baseline: str = "none", detect: float = 0.01) -> list[Any]:
        """Each regularizer across architectures, one summary per protocol (results.across):
        effects, pooled effect, helps/hurts, the ranking of all against all, seeds needed."""
        from regbench.results.across import summarize
        from regbench.results.leaderboard import table

        return summarize(table(self.runs, self.epochs, baseline), baseline, detect)


def _connect(folder: Path) -> sqlite3.Connection:
    """Read-only, leaving no -wal/-shm; one clear line for a missing or unusable store."""
    return open_read_only(folder)


def load(folder: str | Path) -> Results:
    """Both tables of the experiment in `folder`; `params` is decoded from JSON to dicts."""
    with closing(_connect(Path(folder))) as db:
        runs = pd.read_sql_query("SELECT * FROM runs ORDER BY started_at, run_id", db)
        epochs = pd.read_sql_query("SELECT * FROM epochs ORDER BY run_id, epoch", db)
    runs["params"] = runs["params"].map(_decoded)
    return Results(typed(runs), epochs)


def _decoded(text: object) -> dict:
    """A stored JSON object; anything else (damaged text, a number) is no values."""
    try:
        found = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# the figures an `ok` row must hold to be ranked: a seed, and a finite accuracy in [0, 1]
NEEDED = ("seed", "val_accuracy")


def typed(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with every number column as numbers: a cell that is not one (text written by
    hand, a value lost to damage) or is infinite reads as missing. An `ok` row that lacks a
    figure it is ranked by becomes `damaged`, with the reason, so that readers list it rather
    than rank or crash on it."""
    runs = runs.copy()
    for column, kind in RUN_COLUMNS.items():
        if column in runs and kind.split()[0] in ("REAL", "INTEGER"):
            values = pd.to_numeric(runs[column], errors="coerce")
            runs[column] = values.where(np.isfinite(values.astype(float)))
    if "status" not in runs:
        return runs
    accuracy = runs.get("val_accuracy", pd.Series(np.nan, index=runs.index))
    unreadable = {
        "seed": runs.get("seed", pd.Series(np.nan, index=runs.index)).isna(),
        "val_accuracy": accuracy.isna() | (accuracy < 0) | (accuracy > 1),
    }
    for column in NEEDED:
        bad = (runs["status"] == "ok") & unreadable[column]
        runs.loc[bad, "status"] = "damaged"
        runs.loc[bad, "error"] = f"stored {column} is missing or not a number: not ranked"
    return runs


def load_trials(folder: str | Path) -> pd.DataFrame:
    """The tuning trials, one column per hyperparameter (prefixed `hp.`)."""
    with closing(_connect(Path(folder))) as db:
        trials = pd.read_sql_query("SELECT * FROM trials ORDER BY arch, reg, trial_id", db)
    values = trials.pop("values").map(lambda s: json.loads(s) if isinstance(s, str) else {})
    expanded = pd.json_normalize(values.tolist()).add_prefix("hp.") if len(values) else None
    return trials if expanded is None else pd.concat([trials, expanded], axis=1)


def load_best(folder: str | Path) -> pd.DataFrame:
    """The tuning stage's best values per (arch, reg), `values` decoded to dicts."""
    with closing(_connect(Path(folder))) as db:
        best = pd.read_sql_query(
            'SELECT arch, reg, "values", score FROM best_values ORDER BY arch, reg', db
        )
    best["values"] = best["values"].map(lambda s: json.loads(s or "{}"))
    return best
