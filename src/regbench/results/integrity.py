"""Is this file a regbench store we may use? One clear line when it is not.

Checked before a store is opened: a folder in its place, a file that is not SQLite, a
truncated one, damaged pages (SQLite's quick_check), another program's database, a store
from a newer regbench.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from regbench.errors import RegbenchError
from regbench.results.exports import has_rows
from regbench.results.migrations import SCHEMA_VERSION, TABLES, table_columns


class DamagedStore(RegbenchError):
    """The store file cannot be read as a database (`regbench doctor` rebuilds it)."""


def check_file(path: Path) -> str:
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
        raise damaged(path, "not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the page count is trusted only then
    if valid and size < pages * page_size:
        raise damaged(path, f"truncated: {size} bytes of {pages * page_size}")
    return "sqlite"


def check_contents(db: sqlite3.Connection, path: Path) -> int:
    """The store's schema version, after an integrity check; raises for a damaged store,
    another program's SQLite file, or a store from a newer regbench."""
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
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


def damaged(path: Path, why: str) -> RegbenchError:
    return DamagedStore(
        f"{path} is damaged ({why}); `regbench doctor {path.parent}` moves it aside and "
        "rebuilds it from the CSV exports"
    )


def rebuild_hint(folder: Path) -> str:
    if has_rows(folder / "runs.csv"):
        return f"; `regbench doctor {folder}` rebuilds it from runs.csv"
    return ""


def write_error(path: Path, exc: BaseException, run_id: str | None = None) -> RegbenchError:
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
