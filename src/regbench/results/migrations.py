"""The store's schema and its history: an ordered list of small migrations.

A store records how many migrations it has had in `PRAGMA user_version`. Opening an older
store applies the missing ones in order, in one transaction, after a backup copy; a store
from a newer regbench (a higher version than `SCHEMA_VERSION`) is refused. Never edit a
migration that has shipped: add a new one at the end (a new column: a migration that calls
`_add_missing_columns` with it, and the column in `RUN_COLUMNS`). A migration never calls code
that may change later (the engine's run identity): it runs a frozen copy (results/frozen/).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from regbench.results.frozen import identity_v3, identity_v4, identity_v5, identity_v6

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
    "kept_epoch": "INTEGER",
    "initial_loss": "REAL",
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
    "dataset_source": "TEXT",
    "dataset_source_hash": "TEXT",
    "provenance_scheme": "TEXT",
    "status": "TEXT",
    "error": "TEXT",
    "train_accuracy": "REAL",
    "train_accuracy_running": "REAL",
    "val_accuracy": "REAL",
    "test_accuracy": "REAL",
    "train_loss": "REAL",
    "val_loss": "REAL",
    "test_loss": "REAL",
    "total_params": "INTEGER",
    "trainable_params": "INTEGER",
    "non_trainable_params": "INTEGER",
    "train_time_s": "REAL",
    "compile_time_s": "REAL",
    "program_runs": "INTEGER",
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
    "engine": "TEXT",
    "split_scheme": "TEXT",
    "passes_per_step": "INTEGER",
    "final_weights": "TEXT",
    "xla": "INTEGER",
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
BEST_COLUMNS = {"arch": "TEXT", "reg": "TEXT", "values": "TEXT", "score": "REAL"}
BEST_COLUMNS |= {"search_hash": "TEXT", "dataset": "TEXT"}
TUNED_UNDER = {"protocol": "TEXT", "seed": "INTEGER"}  # m010: what the values were tuned under
BEST_COLUMNS |= TUNED_UNDER
TABLES = ("runs", "epochs", "trials", "best_values")


def quoted(names: Iterable[str]) -> list[str]:
    """Column names quoted for SQL (`values` is a keyword)."""
    return [f'"{n}"' for n in names]


CREATE_TABLES = (
    f"CREATE TABLE IF NOT EXISTS runs ({', '.join(f'{k} {v}' for k, v in RUN_COLUMNS.items())})",
    """CREATE TABLE IF NOT EXISTS epochs (
        run_id TEXT NOT NULL, epoch INTEGER NOT NULL, split TEXT NOT NULL,
        metric TEXT NOT NULL, value REAL, elapsed_s REAL,
        PRIMARY KEY (run_id, epoch, split, metric))""",
    """CREATE TABLE IF NOT EXISTS trials (
        trial_id TEXT NOT NULL, search_hash TEXT NOT NULL, arch TEXT, reg TEXT, status TEXT,
        score REAL, "values" TEXT, train_time_s REAL, error TEXT,
        PRIMARY KEY (search_hash, trial_id))""",
    """CREATE TABLE IF NOT EXISTS best_values (
        arch TEXT, reg TEXT, "values" TEXT, score REAL, search_hash TEXT, dataset TEXT,
        PRIMARY KEY (arch, reg))""",
)

Migration = Callable[[sqlite3.Connection, Path], None]
MIGRATIONS: list[Migration] = []


def migration(function: Migration) -> Migration:
    MIGRATIONS.append(function)
    return function


def table_columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]


def _add_missing_columns(db: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """ALTER TABLE ADD COLUMN for each column an older store lacks (type only: constraints
    cannot be added to a filled table)."""
    present = set(table_columns(db, table))
    for name, kind in columns.items():
        if name not in present:
            db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind.split()[0]}')


@migration
def m001_tables(db: sqlite3.Connection, folder: Path) -> None:
    """The four tables; stores from before versioning gain every column they lack
    (cell_hash, model_path, best_values.dataset, ...)."""
    for statement in CREATE_TABLES:  # not executescript: it would commit the migration
        db.execute(statement)
    _add_missing_columns(db, "runs", RUN_COLUMNS)
    _add_missing_columns(db, "epochs", {c: "REAL" for c in EPOCH_COLUMNS})
    _add_missing_columns(db, "trials", {c: "TEXT" for c in TRIAL_COLUMNS})
    _add_missing_columns(db, "best_values", BEST_COLUMNS)


@migration
def m002_identity_v2(db: sqlite3.Connection, folder: Path) -> None:
    """Recompute config_hash and cell_hash: execution options (jit, steps per execution,
    pipeline) left run identity. run_id stays: it is the key, and model files carry it.
    The identity is the frozen copy of IDENTITY_VERSION 3, never the engine's current one."""
    _rewrite_runs(
        db,
        lambda row: {
            "config_hash": identity_v3.config_hash(row),
            "cell_hash": identity_v3.cell_hash(row),
        },
    )


@migration
def m003_relative_model_paths(db: sqlite3.Connection, folder: Path) -> None:
    """Model paths relative to the experiment folder, so a moved or copied folder works.
    An absolute path elsewhere whose file sits in this folder's models/ (the folder was
    moved) is pointed there too."""
    rows = db.execute("SELECT run_id, model_path FROM runs WHERE model_path IS NOT NULL")
    for run_id, stored in rows.fetchall():
        relative = relative_model_path(folder, stored)
        if relative != stored:
            db.execute("UPDATE runs SET model_path = ? WHERE run_id = ?", (relative, run_id))


@migration
def m004_best_values_dataset(db: sqlite3.Connection, folder: Path) -> None:
    """Tuned values from before they remembered their dataset: the dataset of the store's
    runs when they all used one (`--tuned` then finds them); otherwise left unknown."""
    datasets = [r[0] for r in db.execute("SELECT DISTINCT dataset FROM runs") if r[0]]
    if len(datasets) == 1:
        db.execute(
            "UPDATE best_values SET dataset = ? WHERE dataset IS NULL OR dataset = ''",
            (datasets[0],),
        )


@migration
def m005_kept_epoch_and_initial_loss(db: sqlite3.Connection, folder: Path) -> None:
    """The epoch whose weights a run kept (early stopping), the initial loss the divergence
    rule measures from, and the seconds an engine spent compiling before training (the
    vmapped engine); unknown (NULL) for runs trained before."""
    columns = {"kept_epoch": "INTEGER", "initial_loss": "REAL", "compile_time_s": "REAL"}
    _add_missing_columns(db, "runs", columns)


@migration
def m006_identity_v4(db: sqlite3.Connection, folder: Path) -> None:
    """Identity version 4 (results.frozen.identity_v4): the target left it, the learning rate
    is the one the optimizer started from (stored so too, so protocols compare), and a run of
    another engine than "standard" is a run of its own. run_id stays: it is the key."""
    _rewrite_runs(
        db,
        lambda row: {
            "config_hash": identity_v4.config_hash(row),
            "cell_hash": identity_v4.cell_hash(row),
            "learning_rate": identity_v4.learning_rate(row),
        },
    )


@migration
def m007_provenance_scheme(db: sqlite3.Connection, folder: Path) -> None:
    """How a run's source hashes were made: "object" (each plugin object's own code) for runs
    trained from now on; NULL for those trained before, whose hashes covered every file of
    the plugin's package. Their values stay as recorded: nothing is re-hashed. And how many
    runs the program that trained a run trained (`program_runs`: the vmapped engine packs
    several); unknown (NULL) for runs trained before."""
    _add_missing_columns(db, "runs", {"provenance_scheme": "TEXT", "program_runs": "INTEGER"})


@migration
def m008_identity_v5(db: sqlite3.Connection, folder: Path) -> None:
    """Identity version 5 (results.frozen.identity_v5): the Keras backend is part of a run (a
    row without one: TensorFlow, or JAX for the vmapped engine), and so is the dataset's split
    scheme (`split_scheme`; NULL, "unnamed", for runs trained before: the built-in datasets'
    test split then varied with the seed); options and combinations in one spelling, written
    back so that protocols compare.
    And two columns the engines fill: how many forward-backward passes a training step took
    (`passes_per_step`; 1 for runs trained before) and which weights a run ended with
    (`final_weights`; unknown, NULL, before). run_id stays: it is the key."""
    columns = {"split_scheme": "TEXT", "passes_per_step": "INTEGER", "final_weights": "TEXT"}
    _add_missing_columns(db, "runs", columns)
    db.execute("UPDATE runs SET passes_per_step = 1 WHERE passes_per_step IS NULL")
    _rewrite_runs(
        db,
        lambda row: {
            **identity_v5.encoded(identity_v5.canonical(row)),
            "config_hash": identity_v5.config_hash(row),
            "cell_hash": identity_v5.cell_hash(row),
        },
    )


@migration
def m009_identity_v6(db: sqlite3.Connection, folder: Path) -> None:
    """Identity version 6 (results.frozen.identity_v6): where a run's dataset plugin comes
    from (`dataset_source`, `dataset_source_hash`), as for architectures and regularizers (a
    run from before recorded none, so it is trained again once), and an explicit XLA setting
    (`jit_compile` "on" or "off"; the vmapped engine's runs record "auto": it is one XLA
    program whatever was asked): the rows are rehashed. And whether XLA compiled a run's
    training (`xla`: 1 or 0; unknown, NULL, before). run_id stays: it is the key."""
    columns = {"dataset_source": "TEXT", "dataset_source_hash": "TEXT", "xla": "INTEGER"}
    _add_missing_columns(db, "runs", columns)
    db.execute("UPDATE runs SET jit_compile = 'auto' WHERE engine = 'vmapped'")
    _rewrite_runs(
        db,
        lambda row: {
            "config_hash": identity_v6.config_hash(row),
            "cell_hash": identity_v6.cell_hash(row),
        },
    )


@migration
def m010_tuned_under(db: sqlite3.Connection, folder: Path) -> None:
    """Tuned values keep what they were tuned under: the training protocol (JSON of its
    settings) and the seed whose split scored the trials, so `run --tuned` trains them as
    tuned and says when a grid seed is that one. Values tuned before: both unknown (NULL)."""
    _add_missing_columns(db, "best_values", {"protocol": "TEXT", "seed": "INTEGER"})


def _rewrite_runs(
    db: sqlite3.Connection, values_of: Callable[[dict[str, object]], Mapping[str, object]]
) -> None:
    """Set each run row's columns to `values_of(row)`; a row too damaged to rebuild (the
    frozen identity raises KeyError, TypeError or ValueError on it) is kept as it is."""
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(row) for row in db.execute("SELECT * FROM runs")]
    finally:
        db.row_factory = None
    for row in rows:
        try:
            values = values_of(row)
        except (KeyError, TypeError, ValueError):
            continue
        db.execute(
            f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE run_id = ?",
            (*values.values(), row["run_id"]),
        )


def relative_model_path(folder: Path, stored: str) -> str:
    """`stored` relative to `folder` when it lies inside it (or its file is in models/)."""
    path = Path(stored)
    if not path.is_absolute():
        return stored
    for base in {Path(folder).absolute(), Path(folder).resolve()}:
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    moved = Path(folder) / "models" / path.name
    return f"models/{path.name}" if path.parent.name == "models" and moved.exists() else stored


SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, folder: Path) -> list[str]:
    """Apply the migrations `db` has not had, in one transaction; their names."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    pending = MIGRATIONS[version:]
    if not pending:
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        if version:  # a store that lacks a table or column its version had (edited by hand,
            # half copied) gets today's first, so no migration meets a column it needs missing
            m001_tables(db, folder)
        for step in pending:
            step(db, folder)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite ends a transaction itself on a full disk: the cause stays
            db.execute("ROLLBACK")
        raise
    return [step.__name__ for step in pending]
