"""`regbench doctor DIR`: check an experiment's store and repair what can be repaired."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from regbench.errors import RegbenchError
from regbench.results import lock
from regbench.results.integrity import DamagedStore, check_contents, check_file
from regbench.results.migrations import SCHEMA_VERSION
from regbench.results.store import DB_NAME, Store


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
                if check_file(path) == "empty":
                    problem = "empty"
                else:
                    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                        check_contents(db, path)
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
