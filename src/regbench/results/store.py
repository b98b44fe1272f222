"""The results store: one SQLite file per experiment folder, written by one process only.

Every finished run is committed together with its epochs in one transaction; the database is
the source of truth and the tidy CSV exports follow it (at most every `export_every` seconds,
and when the store closes), each replaced atomically. A kill at any moment leaves either the
old state or the new one, never half a row. Writers hold the folder's lock (results/lock.py);
readers open the file read-only and leave nothing behind.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError
from regbench.results import lock
from regbench.results.migrations import (
    EPOCH_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    TABLES,
    TRIAL_COLUMNS,
    migrate,
    relative_model_path,
    table_columns,
)

__all__ = ["DB_NAME", "EPOCH_COLUMNS", "RUN_COLUMNS", "TRIAL_COLUMNS", "Store"]

DB_NAME = "results.sqlite"
CSV_TABLES = ("runs", "epochs", "trials")
EXPORT_EVERY_S = 1.0  # at least; longer when exports are slow (at most ~1/6 of the time)
log = logging.getLogger("regbench")


class DamagedStore(RegbenchError):
    """The store file cannot be read as a database (`regbench doctor` rebuilds it)."""


def open_for_writing(folder: Path) -> Store:
    """The store of `folder` for recording runs: locked, checked, migrated (after a backup),
    rebuilt from the CSV exports when the database is missing or empty."""
    return Store(folder)


def open_read_only(folder: Path) -> sqlite3.Connection:
    """A read-only connection to `folder`'s results that writes nothing to the folder (no
    -wal/-shm, no migration on disk: an older store is upgraded in a copy in memory).

    Raises RegbenchError with one line for a missing, empty, damaged, foreign or newer store.
    """
    folder = Path(folder)
    path = folder / DB_NAME
    if not path.exists():
        raise RegbenchError(f"{folder} holds no regbench results ({DB_NAME} not found)")
    if _check_file(path) == "empty":
        hint = _rebuild_hint(folder)
        raise RegbenchError(f"{path} is empty: it holds no results{hint}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise _damaged(path, str(exc)) from None
    version = _check_contents(db, path)
    if version == SCHEMA_VERSION:
        return db
    memory = sqlite3.connect(":memory:")
    try:
        db.backup(memory)
    finally:
        db.close()
    migrate(memory, folder)
    return memory


class Store:
    """The experiment folder's SQLite database.

    `Store(folder)` opens it for writing (see `open_for_writing`); `Store(folder,
    create=False)` opens an existing store read-only: it answers `statuses`, `best_values`
    and `seconds_per_epoch` but records nothing.
    """

    def __init__(
        self, folder: Path, create: bool = True, export_every: float | None = None
    ) -> None:
        self.folder = Path(folder)
        self.writable = create
        self.export_every = EXPORT_EVERY_S if export_every is None else export_every
        self._exported_at, self._export_cost = 0.0, 0.0
        self._dirty = False
        if not create:
            self.db = open_read_only(self.folder)
            return
        self._prepare_folder()
        lock.acquire(self.folder)
        try:
            self.db = self._open_writer()
        except BaseException:
            lock.release(self.folder)
            raise

    def _prepare_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".probe-"):
                pass
        except OSError as exc:
            raise RegbenchError(
                f"cannot write to the experiment folder {self.folder}: {exc.strerror}; "
                "choose another with --out"
            ) from None

    def _open_writer(self) -> sqlite3.Connection:
        path = self.folder / DB_NAME
        existed = path.exists() and _check_file(path) != "empty"
        db = sqlite3.connect(path, timeout=30)
        try:
            version = _check_contents(db, path) if existed else 0
            if existed and version < SCHEMA_VERSION:
                _backup(db, path.with_name(f"{DB_NAME}.bak-v{version}"))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing
            applied = migrate(db, self.folder)
            if existed and applied:
                log.warning(
                    "regbench: upgraded %s from store version %d to %d (backup: %s.bak-v%d)",
                    path,
                    version,
                    SCHEMA_VERSION,
                    DB_NAME,
                    version,
                )
            imported = import_csv(db, self.folder)
            if imported:
                log.warning(
                    "regbench: %s lacked %d run(s) found in runs.csv; restored them from the "
                    "CSV exports",
                    path,
                    imported,
                )
        except sqlite3.Error as exc:
            db.close()
            raise _write_error(path, exc) from None
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Export what is not exported yet, leave the file in rollback-journal mode (so
        readers need no -wal/-shm), close and unlock."""
        if not self.writable:
            self.db.close()
            return
        try:
            if self._dirty:
                self.export()
            self.db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass  # the data is committed; only the tidy-up failed
        finally:
            self.db.close()
            lock.release(self.folder)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ runs

    def statuses(self) -> dict[str, str]:
        """config_hash -> status of every stored run (an ok try wins over a failed one)."""
        rows = self.db.execute("SELECT config_hash, status FROM runs ORDER BY status = 'ok'")
        return dict(rows)

    def seconds_per_epoch(self) -> dict[tuple[str, str], float]:
        """Mean measured fit seconds per epoch of each (arch, reg), from ok runs."""
        rows = self.db.execute(
            "SELECT arch, reg, AVG(train_time_s / epochs_run) FROM runs "
            "WHERE status = 'ok' AND epochs_run > 0 GROUP BY arch, reg"
        )
        return {(arch, reg): seconds for arch, reg, seconds in rows}

    def record_run(self, row: Mapping[str, Any], epochs: Iterable[Mapping[str, Any]]) -> None:
        """Commit one run and its epochs atomically (replacing an earlier try of the same run).

        A write that fails (disk full, no permission) raises RegbenchError: what was
        committed before stays, and the caller stops the grid.
        """
        values = {k: _cell(row.get(k)) for k in RUN_COLUMNS}
        if isinstance(values["model_path"], str):
            values["model_path"] = relative_model_path(self.folder, values["model_path"])
        epoch_rows = [[values["run_id"], *(_cell(e[k]) for k in EPOCH_COLUMNS[1:])] for e in epochs]
        try:
            _commit_run(self.db, values, epoch_rows)
        except (sqlite3.Error, OverflowError) as exc:
            raise _write_error(self.folder / DB_NAME, exc, values["run_id"]) from None
        self._dirty = True
        self._export_if_due()

    # ------------------------------------------------------------ tuning

    def record_trial(self, trial: Mapping[str, Any]) -> None:
        try:
            with self.db:
                self.db.execute(
                    f"INSERT OR REPLACE INTO trials ({', '.join(_quoted(TRIAL_COLUMNS))}) "
                    f"VALUES ({', '.join('?' * len(TRIAL_COLUMNS))})",
                    [_cell(trial.get(k)) for k in TRIAL_COLUMNS],
                )
        except sqlite3.Error as exc:
            raise _write_error(self.folder / DB_NAME, exc) from None
        self._dirty = True

    def record_best(
        self,
        arch: str,
        reg: str,
        values: Mapping[str, Any],
        score: float,
        search_hash: str,
        dataset: str = "",
    ) -> None:
        try:
            with self.db:
                self.db.execute(
                    'INSERT OR REPLACE INTO best_values (arch, reg, "values", score, '
                    "search_hash, dataset) VALUES (?,?,?,?,?,?)",
                    (
                        arch,
                        reg,
                        json.dumps(dict(values), sort_keys=True),
                        score,
                        search_hash,
                        dataset,
                    ),
                )
        except sqlite3.Error as exc:
            raise _write_error(self.folder / DB_NAME, exc) from None
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

    def _export_if_due(self) -> None:
        waited = time.monotonic() - self._exported_at
        if waited >= max(self.export_every, 5 * self._export_cost):
            self.export()

    def export(self) -> None:
        """Rewrite runs.csv, epochs.csv (and trials.csv) atomically from the database; a
        table that is empty never replaces a CSV that has rows."""
        import pandas as pd

        started = time.monotonic()
        for table in CSV_TABLES:
            frame = pd.read_sql_query(f"SELECT * FROM {table}", self.db)
            target = self.folder / f"{table}.csv"
            if frame.empty and (table == "trials" or _has_rows(target)):
                continue
            try:
                _atomic_csv(frame, target)
            except OSError as exc:
                raise _write_error(target, exc) from None
        self._exported_at, self._dirty = time.monotonic(), False
        self._export_cost = self._exported_at - started


def _commit_run(db: sqlite3.Connection, values: Mapping[str, Any], epochs: list[list]) -> None:
    with db:
        db.execute("DELETE FROM epochs WHERE run_id = ?", (values["run_id"],))
        db.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
            list(values.values()),
        )
        db.executemany(
            f"INSERT OR REPLACE INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES (?,?,?,?,?,?)",
            epochs,
        )


# ---------------------------------------------------------------- checks


def _check_file(path: Path) -> str:
    """'empty' or 'sqlite'; raises for a folder, a non-SQLite file, a truncated one."""
    if path.is_dir():
        raise RegbenchError(f"{path} is a folder, not a results store; move it away and rerun")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise RegbenchError(f"cannot read {path}: {exc.strerror}") from None
    if size == 0:
        return "empty"
    if not header.startswith(b"SQLite format 3\x00") or len(header) < 100:
        raise _damaged(path, "not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the page count is trusted only then
    if valid and size < pages * page_size:
        raise _damaged(path, f"truncated: {size} bytes of {pages * page_size}")
    return "sqlite"


def _check_contents(db: sqlite3.Connection, path: Path) -> int:
    """The store's schema version, after an integrity check; raises for a damaged store,
    another program's SQLite file, or a store from a newer regbench."""
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise _damaged(path, f"integrity check: {verdict}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = table_columns(db, "runs") if "runs" in tables else []
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, str(exc)) from None
    if version > SCHEMA_VERSION:
        raise RegbenchError(
            f"{path} was written by a newer regbench (store version {version}; this one "
            f"reads up to {SCHEMA_VERSION}); upgrade regbench: pip install -U regbench"
        )
    foreign = [t for t in tables if t not in TABLES]
    if tables and ("runs" not in tables or not {"run_id", "config_hash"} <= set(columns)):
        names = ", ".join(sorted(foreign)[:5])
        raise RegbenchError(
            f"{path} is not a regbench results store (its tables: {names}); move it away "
            "or choose another folder"
        )
    return version


def _damaged(path: Path, why: str) -> RegbenchError:
    return DamagedStore(
        f"{path} is damaged ({why}); `regbench doctor {path.parent}` moves it aside and "
        "rebuilds it from the CSV exports"
    )


def _rebuild_hint(folder: Path) -> str:
    if _has_rows(folder / "runs.csv"):
        return f"; `regbench doctor {folder}` rebuilds it from runs.csv"
    return ""


def _write_error(path: Path, exc: BaseException, run_id: str | None = None) -> RegbenchError:
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in text:
        why = "the disk is full; free some space"
    elif isinstance(exc, PermissionError) or "readonly" in text or "permission" in text:
        why = "permission denied; make the folder writable"
    elif isinstance(exc, OverflowError):
        why = f"a value does not fit the store ({text})"
    else:
        why = text
    what = f"cannot record run {run_id}" if run_id else "cannot write"
    return RegbenchError(
        f"{what} in {path}: {why}, then rerun the same command to resume (finished runs are kept)"
    )


def _backup(db: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of the store before it is upgraded (an existing one is kept)."""
    if target.exists():
        return
    tmp = target.with_name(f".{target.name}.tmp")
    copy = sqlite3.connect(tmp)
    try:
        db.backup(copy)
    finally:
        copy.close()
    os.replace(tmp, target)


def doctor(folder: Path) -> list[str]:
    """Check `folder`'s store and repair what can be repaired, saying what was done: leftover
    temporary files removed; a damaged, empty or missing store moved aside (never deleted)
    and rebuilt from the CSV exports; an older one upgraded. A foreign or newer store, or a
    folder in use by a writer, is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RegbenchError(f"{folder} is not an experiment folder")
    path = folder / DB_NAME
    notes: list[str] = []
    lock.acquire(folder)
    try:
        leftovers = [*folder.glob(".*.csv.*"), *folder.glob(".probe-*")]
        leftovers += [*(folder / "models").glob(".*.tmp.keras")]
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
            notes.append(f"removed the leftover temporary file {leftover}")
        problem = "missing" if not path.exists() else None
        if path.exists():
            try:
                if _check_file(path) == "empty":
                    problem = "empty"
                else:
                    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                        _check_contents(db, path)
            except DamagedStore as exc:
                problem = str(exc).partition(" (")[2].partition(");")[0] or "damaged"
        if problem and path.exists():
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for suffix in ("", "-wal", "-shm", "-journal"):
                part = path.with_name(DB_NAME + suffix)
                if part.exists():
                    os.replace(part, path.with_name(f"{DB_NAME}.damaged-{stamp}{suffix}"))
            notes.append(f"{path} was {problem}: moved aside to {DB_NAME}.damaged-{stamp}")
        store = Store(folder)
        try:
            count = store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            store.close()
        if problem and count:
            notes.append(f"rebuilt {path} from the CSV exports: {count} run(s)")
        elif problem:
            notes.append(f"no CSV exports to rebuild from: {path} starts empty")
        notes.append(f"{path}: ok ({count} run(s), store version {SCHEMA_VERSION})")
    finally:
        lock.release(folder)
    return notes


# ---------------------------------------------------------------- CSV exports


def import_csv(db: sqlite3.Connection, folder: Path) -> int:
    """Add the runs (and their epochs) that runs.csv holds and the database lacks; the
    number added. A lost or emptied database is rebuilt this way from its exports."""
    import pandas as pd

    runs_csv = Path(folder) / "runs.csv"
    if not _has_rows(runs_csv):
        return 0
    try:
        runs = pd.read_csv(runs_csv, dtype=object, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        log.warning("regbench: cannot read %s (%s); not restoring from it", runs_csv, exc)
        return 0
    if "run_id" not in runs:
        return 0
    known = {r[0] for r in db.execute("SELECT run_id FROM runs")}
    missing = runs[~runs["run_id"].isin(known)]
    if missing.empty:
        return 0
    columns = [c for c in RUN_COLUMNS if c in missing.columns]
    epoch_rows = _csv_epochs(folder / "epochs.csv", set(missing["run_id"]))
    with db:
        db.executemany(
            f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [
                [_from_csv(row[c], RUN_COLUMNS[c]) for c in columns]
                for row in missing.to_dict("records")
            ],
        )
        db.executemany(
            f"INSERT OR REPLACE INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES (?,?,?,?,?,?)",
            epoch_rows,
        )
        trials = Path(folder) / "trials.csv"
        if _has_rows(trials):
            frame = pd.read_csv(trials, dtype=object, keep_default_na=False, na_values=[""])
            names = [c for c in TRIAL_COLUMNS if c in frame.columns]
            db.executemany(
                f"INSERT OR IGNORE INTO trials ({', '.join(_quoted(names))}) "
                f"VALUES ({', '.join('?' * len(names))})",
                [
                    [
                        _from_csv(row[c], "REAL" if c in ("score", "train_time_s") else "TEXT")
                        for c in names
                    ]
                    for row in frame.to_dict("records")
                ],
            )
    return len(missing)


def _csv_epochs(path: Path, run_ids: set[str]) -> list[list[Any]]:
    import pandas as pd

    if not _has_rows(path):
        return []
    try:
        frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError):
        return []
    frame = frame[frame["run_id"].isin(run_ids)]
    kinds = ("TEXT", "INTEGER", "TEXT", "TEXT", "REAL", "REAL")
    return [
        [_from_csv(row[c], kind) for c, kind in zip(EPOCH_COLUMNS, kinds, strict=True)]
        for row in frame.to_dict("records")
    ]


def _from_csv(value: Any, kind: str) -> Any:
    """A CSV cell (a string, or NaN for empty) as the column's SQLite type."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    kind = kind.split()[0]
    try:
        if kind == "INTEGER":
            return int(float(value))
        if kind == "REAL":
            return float(value)
    except ValueError:
        return value
    return str(value)


def _has_rows(path: Path) -> bool:
    """Whether a CSV export holds more than its header line."""
    try:
        with open(path, "rb") as handle:
            handle.readline()
            return bool(handle.readline().strip())
    except OSError:
        return False


def _quoted(names: Iterable[str]) -> list[str]:
    return [f'"{n}"' for n in names]


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _file_mode() -> int:
    """What the umask allows a new file (0o666 less the umask), as `open` would create it."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_csv(frame: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
