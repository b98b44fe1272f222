"""Is this file a regbench store we may use? One clear line when it is not.

Checked before a store is opened: a folder in its place, a file that is not SQLite, a
truncated one, damaged pages (SQLite's quick_check), another program's database, a store
from a newer regbench.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError
from regbench.results.exports import has_rows
from regbench.results.migrations import (
    BEST_COLUMNS,
    EPOCH_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    TABLES,
    TRIAL_COLUMNS,
    table_columns,
)

# free bytes under which an I/O error is the disk being full: SQLite reports a full disk as
# "disk I/O error" where the -shm or -wal cannot grow, and a failed ROLLBACK hides the cause
LOW_SPACE = 1 << 20
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
WAL_HEADER = 32  # bytes: a -wal file longer than this holds frames SQLite may read
# the columns each table has at SCHEMA_VERSION, with the type a missing one is added with
EXPECTED_COLUMNS = {
    "runs": {name: kind.split()[0] for name, kind in RUN_COLUMNS.items()},
    "epochs": {c: "REAL" for c in EPOCH_COLUMNS},
    "trials": {c: "TEXT" for c in TRIAL_COLUMNS},
    "best_values": BEST_COLUMNS,
}


class DamagedStore(RegbenchError):
    """The store file cannot be read as a database (`regbench doctor` rebuilds it)."""

    def __init__(self, message: str, why: str = "damaged") -> None:
        super().__init__(message)
        self.why = why


def check_file(path: Path) -> str:
    """'empty' or 'sqlite'; raises for a folder or other non-file (never opened: a FIFO would
    hang), a non-SQLite file, a truncated one. A main file shorter than its header says is
    not truncated while its -wal holds frames: a checkpoint cut short by a full disk leaves
    it so, and SQLite reads the pages from the WAL."""
    try:
        kind = path.stat().st_mode
    except FileNotFoundError:
        if not path.is_symlink():
            raise RegbenchError(f"cannot read {path}: No such file or directory") from None
        kind = 0  # a link to nothing: not a store, and doctor moves it aside like one
    except OSError as exc:
        raise RegbenchError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(kind):
        what = "a folder" if stat.S_ISDIR(kind) else "not a regular file"
        what = "a link to nothing" if kind == 0 else what
        raise DamagedStore(
            f"{path} is {what}, not a results store; `regbench doctor {path.parent}` moves it "
            "aside and rebuilds the store from the CSV exports",
            what,
        )
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise RegbenchError(f"cannot read {path}: {exc.strerror}") from None
    if size == 0:
        return "empty"
    if not header.startswith(b"SQLite format 3\x00") or len(header) < 100:
        raise damaged(path, "not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the page count is trusted only then
    if valid and size < pages * page_size and not wal_frames(path):
        raise damaged(path, f"truncated: {size} bytes of {pages * page_size}")
    return "sqlite"


def wal_frames(path: Path) -> bool:
    """Whether `path`'s -wal file holds frames (committed pages not yet in the main file)."""
    try:
        return os.stat(f"{path}-wal").st_size > WAL_HEADER
    except OSError:
        return False


def wal_mode(path: Path) -> bool:
    """Whether the file's header says WAL mode (readers would create -wal and -shm)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(20)[18:20] == b"\x02\x02"
    except OSError:
        return False


def missing_columns(db: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """The columns of SCHEMA_VERSION that the store's tables lack (a column dropped by hand):
    table -> {column: type}; the tables themselves are the migrations' business."""
    missing = {}
    for table, expected in EXPECTED_COLUMNS.items():
        present = set(table_columns(db, table))
        lacking = {c: kind for c, kind in expected.items() if c not in present}
        if present and lacking:
            missing[table] = lacking
    return missing


def add_columns(db: sqlite3.Connection, missing: dict[str, dict[str, str]]) -> None:
    """Add the columns `missing_columns` found (their values unknown: NULL), in one commit."""
    with db:
        for table, columns in missing.items():
            for name, kind in columns.items():
                db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')


def columns_note(missing: dict[str, dict[str, str]]) -> str:
    return "; ".join(f"{table} lacked {', '.join(cols)}" for table, cols in missing.items())


def check_contents(db: sqlite3.Connection, path: Path) -> int:
    """The store's schema version, after an integrity check; raises for a damaged store,
    another program's SQLite file, or a store from a newer regbench."""
    try:
        verdict = db.execute("PRAGMA quick_check").fetchall()[0][0]  # done: no open statement
        if verdict != "ok":
            raise damaged(path, f"integrity check: {verdict}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = table_columns(db, "runs") if "runs" in tables else []
    except sqlite3.DatabaseError as exc:
        raise damaged(path, str(exc)) from None
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


def blank(db: sqlite3.Connection) -> bool:
    """A store without a single table: its creation was cut short (a full disk) before the
    first one, so it holds nothing to upgrade, back up or keep."""
    return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def damaged(path: Path, why: str) -> RegbenchError:
    return DamagedStore(
        f"{path} is damaged ({why}); `regbench doctor {path.parent}` moves it aside and "
        "rebuilds it from the CSV exports",
        why,
    )


def rebuild_hint(folder: Path) -> str:
    if has_rows(folder / "runs.csv"):
        return f"; `regbench doctor {folder}` rebuilds it from runs.csv"
    return ""


def unsaved_model(row: dict[str, Any]) -> RegbenchError | None:
    """The error that stops a grid when a run's model could not be written (a full or
    read-only disk: every later run would fail the same way), taken off the row; None when
    its model was written."""
    unsaved = row.pop("write_error", None)
    if not unsaved:
        return None
    cause = OSError(unsaved["errno"], unsaved["strerror"])
    return write_error(Path(unsaved["path"]), cause, row["run_id"])


def disk_full(path: Path, exc: BaseException) -> bool:
    """Whether `exc`, met writing at `path`, is the disk (or a quota) being full: ENOSPC or
    EDQUOT from the OS, SQLITE_FULL, or any I/O error of SQLite's with under LOW_SPACE left."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    if not isinstance(exc, sqlite3.Error | OSError):
        return False
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return True
    io_error = code == sqlite3.SQLITE_IOERR or getattr(exc, "errno", None) == errno.EIO
    return io_error and free_bytes(path) < LOW_SPACE


def free_bytes(path: Path) -> float:
    """The bytes an unprivileged writer may still use where `path` lies (its nearest folder
    that exists); infinity when that cannot be told."""
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        found = os.statvfs(folder)
    except OSError:
        return float("inf")
    return float(found.f_bavail * found.f_frsize)


def write_error(path: Path, exc: BaseException, run_id: str | None = None) -> RegbenchError:
    text = str(exc)
    if disk_full(path, exc):
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
