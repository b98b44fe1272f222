"""`regbench doctor DIR`: check an experiment's store and repair what can be repaired."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from regbench.errors import RegbenchError
from regbench.results import exports, lock
from regbench.results.integrity import (
    DamagedStore,
    check_contents,
    check_file,
    columns_note,
    missing_columns,
    wal_frames,
)
from regbench.results.migrations import SCHEMA_VERSION, TABLES, migrate, quoted, table_columns
from regbench.results.store import DB_NAME, Store

Rows = dict[str, list[dict[str, Any]]]
NOT_FILES = ("a folder", "not a regular file", "a link to nothing")  # moved aside, not read


def doctor(folder: Path) -> list[str]:
    """Check `folder`'s store and repair what can be repaired, saying what was done: leftover
    temporary files removed; committed pages left in a -wal checkpointed; missing columns
    added; a damaged, empty, missing or non-file store moved aside (never deleted) and
    rebuilt from the CSV exports and every run still readable in it, never with fewer runs
    than those two hold together; an older one upgraded. A foreign or newer store, or a
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
        problem, salvaged = _examine(path, notes), {}
        if problem and os.path.lexists(path):
            salvaged = _salvage(path, folder) if problem != "not a file" else {}
            aside = _move_aside(path)
            notes.append(f"{path}: {problem}; moved it aside to {aside.name}")
        with Store(folder) as store:
            _restore(store.db, salvaged)
            held = {r[0] for r in store.db.execute("SELECT run_id FROM runs")}
            store.export()
        known = {r["run_id"] for r in salvaged.get("runs", [])} | _csv_ids(folder)
        if known - held:  # cannot happen unless an insert was refused: say so, keep all
            raise RegbenchError(
                f"{path} was rebuilt with {len(held)} run(s) but {len(known)} were known; "
                f"the old store is kept aside and the CSVs are unchanged"
            )
        if problem:
            notes.append(
                f"rebuilt {path} from the CSV exports and the old store: {len(held)} run(s)"
                if held
                else f"no runs to rebuild from: {path} starts empty"
            )
        notes.append(f"{path}: ok ({len(held)} run(s), store version {SCHEMA_VERSION})")
    finally:
        lock.release(folder)
    return notes


def _examine(path: Path, notes: list[str]) -> str | None:
    """What is wrong with the store that needs it moved aside (None: nothing, or nothing
    the writer does not repair in place, noted)."""
    if not os.path.lexists(path):
        return "missing"
    try:
        if check_file(path) == "empty":
            return "empty"
        if wal_frames(path):
            notes.append(f"{path}: moved the committed runs left in its -wal into the file")
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            check_contents(db, path)
            if missing := missing_columns(db):
                notes.append(f"repaired {path}: {columns_note(missing)} (added back)")
    except DamagedStore as exc:
        return "not a file" if exc.why in NOT_FILES else exc.why
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def _salvage(path: Path, folder: Path) -> Rows:
    """Every row still readable in a damaged store, upgraded to this version when it can be
    (read from a private copy: the damaged files stay as they are). Rows are read by rowid
    range, halving a range that meets a damaged page, so one bad page loses only its own
    rows; they are copied into a store of the damaged one's version and schema, which the
    migrations then upgrade (a row read but not upgraded would not match its run)."""
    rows: Rows = {}
    with tempfile.TemporaryDirectory(prefix="regbench-salvage-") as tmp:
        copy = Path(tmp) / DB_NAME
        for suffix in ("-journal", "-wal", ""):
            if os.path.isfile(f"{path}{suffix}"):
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        with open(copy, "r+b") as handle:  # the header's page count may lie: use the size
            handle.seek(92)
            handle.write(b"\xff\xff\xff\xff")
        memory = sqlite3.connect(":memory:")
        with closing(sqlite3.connect(copy)) as db:
            version = _read_or(db, "PRAGMA user_version", 0)
            for table in TABLES:
                schema = _read_or(db, f"SELECT sql FROM sqlite_master WHERE name = '{table}'", None)
                if schema:
                    memory.execute(schema)
                    readable = _readable(db, table, copy.stat().st_size)
                    if readable:
                        marks = ", ".join("?" * len(readable[0]))
                        memory.executemany(f"INSERT INTO {table} VALUES ({marks})", readable)
        memory.execute(f"PRAGMA user_version = {int(version)}")
        memory.commit()
        with suppress(sqlite3.Error):  # a row the migrations refuse: kept as it was read
            migrate(memory, folder)
        memory.row_factory = sqlite3.Row
        for table in TABLES:
            try:
                rows[table] = [dict(row) for row in memory.execute(f"SELECT * FROM {table}")]
            except sqlite3.Error:
                rows[table] = []
        memory.close()
    return rows


def _read_or(db: sqlite3.Connection, query: str, default: Any) -> Any:
    """The first value `query` gives, or `default` where damage stops it."""
    try:
        found = db.execute(query).fetchone()
    except sqlite3.Error:
        return default
    return default if found is None else found[0]


def _readable(db: sqlite3.Connection, table: str, size: int) -> list[tuple[Any, ...]]:
    """The rows of `table` that can be read, by rowid range; a range that meets a damaged
    page is halved until the page's own rows are the only ones left out."""
    top = _read_or(db, f"SELECT max(rowid) FROM {table}", None) or max(size // 16, 1)
    found: list[tuple[Any, ...]] = []
    ranges = [(lo, min(lo + 1023, top)) for lo in range(1, top + 1, 1024)]
    while ranges:
        lo, hi = ranges.pop()
        try:
            query = f"SELECT * FROM {table} WHERE rowid BETWEEN ? AND ?"
            found += db.execute(query, (lo, hi)).fetchall()
        except sqlite3.Error:
            if lo < hi:
                middle = (lo + hi) // 2
                ranges += [(lo, middle), (middle + 1, hi)]
    return found


def _restore(db: sqlite3.Connection, rows: Rows) -> None:
    """Add the salvaged rows the rebuilt store lacks (one commit)."""
    with db:
        for table, found in rows.items():
            columns = set(table_columns(db, table))
            for row in found:
                names = [name for name in row if name in columns]
                db.execute(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(quoted(names))}) "
                    f"VALUES ({', '.join('?' * len(names))})",
                    [row[n] for n in names],
                )


def _csv_ids(folder: Path) -> set[str]:
    return {str(row["run_id"]) for row in exports.csv_runs(folder)}


def _move_aside(path: Path) -> Path:
    """Rename the store (and its -wal, -shm, -journal) to a name not taken yet."""
    stamp, n = time.strftime("%Y%m%dT%H%M%S"), 0
    aside = path.with_name(f"{DB_NAME}.damaged-{stamp}")
    while any(os.path.lexists(f"{aside}{s}") for s in ("", "-wal", "-shm", "-journal")):
        n += 1
        aside = path.with_name(f"{DB_NAME}.damaged-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.lexists(f"{path}{suffix}"):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside
