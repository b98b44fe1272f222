"""The results store: one SQLite file per experiment folder, written by one process only.

Every finished run is committed together with its epochs in one transaction; the database is
the source of truth and the tidy CSV exports follow it (at most every `export_every` seconds,
and when the store closes), each replaced atomically. A kill at any moment leaves either the
old state or the new one, never half a row. Writers hold the folder's lock (results/lock.py);
readers open the file read-only and leave nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from regbench.errors import RegbenchError
from regbench.plugins.files import replaced
from regbench.results import exports, lock
from regbench.results.integrity import (
    add_columns,
    blank,
    check_contents,
    check_file,
    columns_note,
    damaged,
    missing_columns,
    rebuild_hint,
    wal_frames,
    wal_mode,
    write_error,
)

if TYPE_CHECKING:
    from regbench.design.plan import RunSpec

from regbench.results.migrations import (
    EPOCH_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    TRIAL_COLUMNS,
    migrate,
    quoted,
    relative_model_path,
)

__all__ = ["DB_NAME", "EPOCH_COLUMNS", "RUN_COLUMNS", "TRIAL_COLUMNS", "Store"]

DB_NAME = "results.sqlite"
EXPORT_EVERY_S = 1.0  # at least; longer when exports are slow (at most ~1/6 of the time)
log = logging.getLogger("regbench")


def open_for_writing(folder: Path) -> Store:
    """The store of `folder` for recording runs: locked, checked, migrated (after a backup),
    rebuilt from the CSV exports when the database is missing or empty."""
    return Store(folder)


def open_read_only(folder: Path) -> sqlite3.Connection:
    """A read-only connection to `folder`'s results that writes nothing to the folder (no
    -wal/-shm, no migration on disk: an older store, or one missing a column, is upgraded in a
    copy in memory).

    Raises RegbenchError with one line for a missing, empty, damaged, foreign or newer store.
    """
    folder = Path(folder)
    path = folder / DB_NAME
    if not os.path.lexists(path):
        hint = rebuild_hint(folder)
        raise RegbenchError(f"{folder} holds no regbench results ({DB_NAME} not found){hint}")
    if check_file(path) == "empty":
        hint = rebuild_hint(folder)
        raise RegbenchError(f"{path} is empty: it holds no results{hint}")
    db = _reader(path)
    version = check_contents(db, path)
    if blank(db):
        db.close()
        hint = rebuild_hint(folder)
        raise RegbenchError(f"{path} is empty: it holds no results{hint}")
    try:
        missing = missing_columns(db)
    except sqlite3.Error as exc:
        raise damaged(path, str(exc)) from None
    if version == SCHEMA_VERSION and not missing:
        return db
    memory = sqlite3.connect(":memory:")
    try:
        db.backup(memory)
    finally:
        db.close()
    migrate(memory, folder)
    lacking = missing_columns(memory)
    add_columns(memory, lacking)
    exports.fill_columns(memory, Path(folder), list(lacking.get("runs", {})))
    return memory


def _reader(path: Path) -> sqlite3.Connection:
    """Read `path` without writing to its folder: SQLite would create -wal and -shm for a
    WAL-mode file, so such a file is opened immutable when no writer has it (no -wal or
    -shm), read through a writer's -wal and -shm when both are there, and otherwise (one of
    them left alone, a hot journal) from a private copy."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if wal.exists() != shm.exists():
        return _recovered_in_memory(path)
    live = wal.exists() or not wal_mode(path)
    uri = f"file:{quote(os.fsencode(path))}?{'mode=ro' if live else 'immutable=1'}"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=30)
        db.execute("PRAGMA schema_version").fetchone()  # the first read meets a crash's leftovers
    except sqlite3.Error:
        # a writer killed mid-transaction, or a -shm a full disk cut short (an I/O error):
        # a private copy without the -shm recovers; a damaged file fails there too, and says so
        return _recovered_in_memory(path)
    return db


def stored_runs(folder: Path) -> list[dict[str, Any]]:
    """Every stored run's row as a dict; with no store (yet, or lost) the runs its runs.csv
    export holds, so a plan counts them done (a writer restores them)."""
    if not os.path.lexists(Path(folder) / DB_NAME):
        return exports.csv_runs(Path(folder))
    db = open_read_only(Path(folder))
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM runs")]
    except sqlite3.DatabaseError as exc:
        raise damaged(Path(folder) / DB_NAME, str(exc)) from None
    finally:
        db.close()


def _recovered_in_memory(path: Path) -> sqlite3.Connection:
    """The last committed state of a store whose writer was killed mid-transaction (a hot
    rollback journal, or a WAL index only a writer may rebuild): SQLite recovers a private copy
    of the files, so the folder stays as the killed writer left it for the next writer to
    recover in place."""
    memory = sqlite3.connect(":memory:")
    with tempfile.TemporaryDirectory(prefix="regbench-read-") as tmp:
        copy = Path(tmp) / DB_NAME
        for suffix in ("-journal", "-wal", ""):  # the journal first: it holds the old pages
            try:
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise RegbenchError(f"cannot read {path}{suffix}: {exc.strerror}") from None
        db = sqlite3.connect(copy)
        try:
            db.backup(memory)
        except sqlite3.Error as exc:
            raise damaged(path, str(exc)) from None
        finally:
            db.close()
    return memory


class Store:
    """The experiment folder's SQLite database.

    `Store(folder)` opens it for writing (see `open_for_writing`), creating it where there is
    none; `Store(folder, read_only=True)` opens an existing store read-only: it answers
    `statuses`, `best_values` and `seconds_per_epoch` but records nothing.
    """

    def __init__(
        self, folder: Path, read_only: bool = False, export_every: float | None = None
    ) -> None:
        self.folder = Path(folder)
        self.writable = not read_only
        self.export_every = EXPORT_EVERY_S if export_every is None else export_every
        self._exported_at, self._export_cost = 0.0, 0.0
        # a writer exports once at least: a closing export an earlier process could not finish
        # (killed in it) is redone, so the CSVs never stay behind the store
        self._dirty = self.writable
        if read_only:
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
                "choose another with --experiment (experiment= in Python)"
            ) from None

    def _open_writer(self) -> sqlite3.Connection:
        path = self.folder / DB_NAME
        existed = os.path.lexists(path) and check_file(path) != "empty"
        db = sqlite3.connect(path, timeout=30)
        try:
            if existed and wal_frames(path):  # a checkpoint a full disk cut short: finish it
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            version = check_contents(db, path) if existed else 0
            existed = existed and not blank(db)  # a creation a full disk cut short is new
            if existed and version < SCHEMA_VERSION:
                _backup(db, path.with_name(f"{DB_NAME}.bak-v{version}"))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing
            applied = migrate(db, self.folder)
            if missing := missing_columns(db):
                add_columns(db, missing)
                filled = exports.fill_columns(db, self.folder, list(missing.get("runs", {})))
                log.warning(
                    "regbench: repaired %s: %s (added; %s)",
                    path,
                    columns_note(missing),
                    f"{filled} value(s) restored from runs.csv" if filled else "values unknown",
                )
            if existed and applied:
                log.warning(
                    "regbench: upgraded %s from store version %d to %d (backup: %s.bak-v%d)",
                    path,
                    version,
                    SCHEMA_VERSION,
                    DB_NAME,
                    version,
                )
            imported = exports.import_csv(db, self.folder)
            if imported:
                log.warning(
                    "regbench: %s lacked %d run(s) found in runs.csv; restored them from the "
                    "CSV exports",
                    path,
                    imported,
                )
        except sqlite3.Error as exc:
            db.close()
            raise write_error(path, exc) from None
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
                with stops_deferred():  # Ctrl-C or SIGTERM now would leave the CSVs stale
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
        if values["status"] != "ok" and self._finished(values["run_id"]):
            self._keep_attempt(values)  # --force whose retry failed: the result stays
            return
        if isinstance(values["model_path"], str):
            values["model_path"] = relative_model_path(self.folder, values["model_path"])
        epoch_rows = [[values["run_id"], *(_cell(e[k]) for k in EPOCH_COLUMNS[1:])] for e in epochs]
        try:
            _commit_run(self.db, values, epoch_rows)
        except (sqlite3.Error, OverflowError) as exc:
            raise write_error(self.folder / DB_NAME, exc, values["run_id"]) from None
        self._dirty = True
        self._export_if_due()

    def _finished(self, run_id: Any) -> bool:
        found = self.db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return found is not None and found[0] == "ok"

    def _keep_attempt(self, values: Mapping[str, Any]) -> None:
        """A failed retry of a finished run, kept apart in logs/attempts.jsonl: a finished
        result is only ever replaced by another finished one."""
        attempt = {k: values[k] for k in ("run_id", "status", "error", "started_at", "ended_at")}
        try:
            logs = self.folder / "logs"
            logs.mkdir(exist_ok=True)
            with open(logs / "attempts.jsonl", "a", encoding="utf-8") as out:
                out.write(json.dumps(attempt, default=str) + "\n")
        except OSError as exc:
            raise write_error(logs / "attempts.jsonl", exc, values["run_id"]) from None

    def measure_targets(self, specs: Iterable[RunSpec]) -> int:
        """Time to target of the finished runs of `specs`, measured again from their stored
        epochs for the target each spec asks for: a target is a measurement of the history,
        so adding or changing one trains nothing. How many rows changed."""
        from regbench.engine.outcome import time_to_target

        wanted = {s.config_hash: s for s in specs}
        stored = self.db.execute("SELECT run_id, config_hash, target FROM runs WHERE status = 'ok'")
        changed = 0
        for run_id, config_hash, target in stored.fetchall():
            spec = wanted.get(config_hash)
            label = None if spec is None else spec.target_label
            if spec is None or target == label:
                continue
            epochs = [
                dict(zip(("epoch", "split", "metric", "value", "elapsed_s"), row, strict=True))
                for row in self.db.execute(
                    "SELECT epoch, split, metric, value, elapsed_s FROM epochs WHERE run_id = ?",
                    (run_id,),
                )
            ]
            reached = time_to_target(epochs, spec.protocol.target)
            try:
                with self.db:
                    self.db.execute(
                        "UPDATE runs SET target = ?, epochs_to_target = ?, seconds_to_target = ? "
                        "WHERE run_id = ?",
                        (label, *reached, run_id),
                    )
            except sqlite3.Error as exc:
                raise write_error(self.folder / DB_NAME, exc, run_id) from None
            changed += 1
        self._dirty = self._dirty or bool(changed)
        return changed

    # ------------------------------------------------------------ tuning

    def record_trial(self, trial: Mapping[str, Any]) -> None:
        try:
            with self.db:
                self.db.execute(
                    f"INSERT OR REPLACE INTO trials ({', '.join(quoted(TRIAL_COLUMNS))}) "
                    f"VALUES ({', '.join('?' * len(TRIAL_COLUMNS))})",
                    [_cell(trial.get(k)) for k in TRIAL_COLUMNS],
                )
        except sqlite3.Error as exc:
            raise write_error(self.folder / DB_NAME, exc) from None
        self._dirty = True

    def record_best(
        self,
        arch: str,
        reg: str,
        values: Mapping[str, Any],
        score: float,
        search_hash: str,
        dataset: str = "",
        protocol: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        """The best values of a cell, with the protocol (its settings) and the seed they were
        tuned under."""
        try:
            with self.db:
                self.db.execute(
                    'INSERT OR REPLACE INTO best_values (arch, reg, "values", score, '
                    "search_hash, dataset, protocol, seed) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        arch,
                        reg,
                        json.dumps(dict(values), sort_keys=True),
                        score,
                        search_hash,
                        dataset,
                        None if protocol is None else json.dumps(dict(protocol), sort_keys=True),
                        seed,
                    ),
                )
        except sqlite3.Error as exc:
            raise write_error(self.folder / DB_NAME, exc) from None
        self.export()

    def best_values(self, dataset: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """Tuned values per (arch, reg); only those tuned on `dataset` when it is given."""
        rows = self.db.execute('SELECT arch, reg, "values", dataset FROM best_values')
        return {
            (arch, reg): json.loads(values)
            for arch, reg, values, tuned_on in rows
            if dataset is None or tuned_on == dataset
        }

    def tuned_under(
        self, dataset: str | None = None
    ) -> dict[tuple[str, str], tuple[dict[str, Any] | None, int | None]]:
        """Per (arch, reg): the protocol settings and the seed its values were tuned under
        (None, None for values tuned before regbench recorded them)."""
        rows = self.db.execute("SELECT arch, reg, protocol, seed, dataset FROM best_values")
        found = {}
        for arch, reg, protocol, seed, tuned_on in rows:
            if dataset is not None and tuned_on != dataset:
                continue
            try:
                settings = json.loads(protocol) if isinstance(protocol, str) else None
            except ValueError:
                settings = None
            found[(arch, reg)] = (settings if isinstance(settings, dict) else None, seed)
        return found

    # ------------------------------------------------------------ exports

    def _export_if_due(self) -> None:
        waited = time.monotonic() - self._exported_at
        if waited >= max(self.export_every, 5 * self._export_cost):
            self.export()

    def export(self) -> None:
        """Rewrite runs.csv, epochs.csv (and trials.csv) atomically from the database; a
        table that is empty never replaces a CSV that has rows."""
        started = time.monotonic()
        try:
            exports.export_csvs(self.db, self.folder)
        except OSError as exc:
            raise write_error(Path(exc.filename or self.folder), exc) from None
        self._exported_at, self._dirty = time.monotonic(), False
        self._export_cost = self._exported_at - started


@contextmanager
def stops_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first that came, to the
    handler there was (the CLI's raises KeyboardInterrupt): a stop that lands in the closing
    export takes effect once the export is whole. Main thread only (where signals land)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = {s: signal.getsignal(s) for s in STOPS}
    held = {s: h for s, h in held.items() if h not in (signal.SIG_IGN, None)}
    for stop in held:
        signal.signal(stop, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for stop, handler in held.items():
            signal.signal(stop, handler)
        if arrived:
            signal.raise_signal(arrived[0])


STOPS = (signal.SIGINT, signal.SIGTERM)


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


def _backup(db: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of the store before it is upgraded (an existing one is kept)."""
    if target.exists():
        return
    with replaced(target) as tmp:
        copy = sqlite3.connect(tmp)
        try:
            db.backup(copy)
        finally:
            copy.close()


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
