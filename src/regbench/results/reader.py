"""Read an experiment's results as pandas DataFrames (safe while a grid is still running)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from regbench.results.store import open_read_only


class Results(NamedTuple):
    """The runs table (one row per run) and the tidy epochs table."""

    runs: pd.DataFrame
    epochs: pd.DataFrame

    def leaderboard(self) -> pd.DataFrame:
        """The cells ranked by mean validation accuracy, one row per cell."""
        from regbench.results.leaderboard import table

        return table(self.runs, self.epochs)


def _connect(folder: Path) -> sqlite3.Connection:
    """Read-only, leaving no -wal/-shm; one clear line for a missing or unusable store."""
    return open_read_only(folder)


def load(folder: str | Path) -> Results:
    """Both tables of the experiment in `folder`; `params` is decoded from JSON to dicts."""
    with closing(_connect(Path(folder))) as db:
        runs = pd.read_sql_query("SELECT * FROM runs ORDER BY started_at, run_id", db)
        epochs = pd.read_sql_query("SELECT * FROM epochs ORDER BY run_id, epoch", db)
    runs["params"] = runs["params"].map(lambda s: json.loads(s) if isinstance(s, str) else {})
    return Results(runs, epochs)


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
