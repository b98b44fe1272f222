"""The results store: one SQLite file per experiment folder, written by one process only.

Every finished run is committed together with its epochs in one transaction, then the tidy
CSV exports are replaced atomically, so a kill at any moment leaves either the old state or
the new one, never half a row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError

DB_NAME = "results.sqlite"

RUN_COLUMNS: dict[str, str] = {
    "run_id": "TEXT PRIMARY KEY",
    "config_hash": "TEXT NOT NULL",
    "cell_hash": "TEXT",
    "stage": "TEXT",
    "arch": "TEXT",
    "reg": "TEXT",
    "params": "TEXT",
    "tuned": "TEXT",
    "seed": "INTEGER",
    "dataset": "TEXT",
    "dataset_options": "TEXT",
    "n_train": "INTEGER",
    "n_val": "INTEGER",
    "n_test": "INTEGER",
    "epochs": "INTEGER",
    "epochs_run": "INTEGER",
    "batch_size": "INTEGER",
    "optimizer": "TEXT",
    "learning_rate": "REAL",
    "optimizer_options": "TEXT",
    "lr_schedule": "TEXT",
    "optimizer_config": "TEXT",
    "arch_source": "TEXT",
    "reg_source": "TEXT",
    "arch_source_hash": "TEXT",
    "reg_source_hash": "TEXT",
    "status": "TEXT",
    "error": "TEXT",
    "train_accuracy": "REAL",
    "val_accuracy": "REAL",
    "test_accuracy": "REAL",
    "train_loss": "REAL",
    "val_loss": "REAL",
    "test_loss": "REAL",
    "total_params": "INTEGER",
    "trainable_params": "INTEGER",
    "non_trainable_params": "INTEGER",
    "train_time_s": "REAL",
    "eval_time_s": "REAL",
    "total_time_s": "REAL",
    "images_per_s": "REAL",
    "target": "TEXT",
    "epochs_to_target": "INTEGER",
    "seconds_to_target": "REAL",
    "jit_compile": "TEXT",
    "precision": "TEXT",
    "steps_per_execution": "INTEGER",
    "pipeline": "TEXT",
    "model_path": "TEXT",
    "summary": "TEXT",
    "python_version": "TEXT",
    "tf_version": "TEXT",
    "keras_version": "TEXT",
    "regbench_version": "TEXT",
    "backend": "TEXT",
    "device": "TEXT",
    "host": "TEXT",
    "git_revision": "TEXT",
    "worker": "TEXT",
    "started_at": "TEXT",
    "ended_at": "TEXT",
}
EPOCH_COLUMNS = ("run_id", "epoch", "split", "metric", "value", "elapsed_s")
TRIAL_COLUMNS = (
    "trial_id",
    "search_hash",
    "arch",
    "reg",
    "status",
    "score",
    "values",
    "train_time_s",
    "error",
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())});
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, split TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, elapsed_s REAL, PRIMARY KEY (run_id, epoch, split, metric)
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT NOT NULL, search_hash TEXT NOT NULL, arch TEXT, reg TEXT, status TEXT,
    score REAL, "values" TEXT, train_time_s REAL, error TEXT,
    PRIMARY KEY (search_hash, trial_id)
);
CREATE TABLE IF NOT EXISTS best_values (
    arch TEXT, reg TEXT, "values" TEXT, score REAL, search_hash TEXT, dataset TEXT,
    PRIMARY KEY (arch, reg)
);
"""


class Store:
    """The experiment folder's SQLite database; open it only in the writing (parent) process."""

    def __init__(self, folder: Path, create: bool = True) -> None:
        self.folder = Path(folder)
        path = self.folder / DB_NAME
        if not create and not path.exists():
            raise RegbenchError(f"{self.folder} holds no regbench results ({DB_NAME} not found)")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".probe-"):
                pass
        except OSError as exc:
            raise RegbenchError(
                f"cannot write to the experiment folder {self.folder}: {exc.strerror}; "
                "choose another with --out"
            ) from None
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ runs

    def statuses(self) -> dict[str, str]:
        """config_hash -> status of every stored run."""
        return dict(self.db.execute("SELECT config_hash, status FROM runs"))

    def seconds_per_epoch(self) -> dict[tuple[str, str], float]:
        """Mean measured fit seconds per epoch of each (arch, reg), from ok runs."""
        rows = self.db.execute(
            "SELECT arch, reg, AVG(train_time_s / epochs_run) FROM runs "
            "WHERE status = 'ok' AND epochs_run > 0 GROUP BY arch, reg"
        )
        return {(arch, reg): seconds for arch, reg, seconds in rows}

    def record_run(self, row: Mapping[str, Any], epochs: Iterable[Mapping[str, Any]]) -> None:
        """Commit one run and its epochs atomically (replacing an earlier try of the same run)."""
        values = {k: _cell(row.get(k)) for k in RUN_COLUMNS}
        with self.db:
            self.db.execute("DELETE FROM epochs WHERE run_id = ?", (values["run_id"],))
            self.db.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                list(values.values()),
            )
            self.db.executemany(
                f"INSERT OR REPLACE INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES (?,?,?,?,?,?)",
                [[values["run_id"], *(_cell(e[k]) for k in EPOCH_COLUMNS[1:])] for e in epochs],
            )
        self.export()

    # ------------------------------------------------------------ tuning

    def record_trial(self, trial: Mapping[str, Any]) -> None:
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO trials ({', '.join(_quoted(TRIAL_COLUMNS))}) "
                f"VALUES ({', '.join('?' * len(TRIAL_COLUMNS))})",
                [_cell(trial.get(k)) for k in TRIAL_COLUMNS],
            )

    def record_best(
        self,
        arch: str,
        reg: str,
        values: Mapping[str, Any],
        score: float,
        search_hash: str,
        dataset: str = "",
    ) -> None:
        with self.db:
            self.db.execute(
                'INSERT OR REPLACE INTO best_values (arch, reg, "values", score, search_hash, '
                "dataset) VALUES (?,?,?,?,?,?)",
                (arch, reg, json.dumps(dict(values), sort_keys=True), score, search_hash, dataset),
            )
        self.export()

    def best_values(self, dataset: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """Tuned values per (arch, reg); only those tuned on `dataset` when it is given."""
        rows = self.db.execute('SELECT arch, reg, "values", dataset FROM best_values')
        return {
            (arch, reg): json.loads(values)
            for arch, reg, values, tuned_on in rows
            if dataset is None or tuned_on == dataset
        }

    # ------------------------------------------------------------ exports

    def export(self) -> None:
        """Rewrite runs.csv, epochs.csv (and trials.csv) atomically from the database."""
        import pandas as pd

        for table in ("runs", "epochs", "trials"):
            frame = pd.read_sql_query(f"SELECT * FROM {table}", self.db)
            if table == "trials" and frame.empty:
                continue
            _atomic_csv(frame, self.folder / f"{table}.csv")


def _quoted(names: Iterable[str]) -> list[str]:
    return [f'"{n}"' for n in names]


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _atomic_csv(frame: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
