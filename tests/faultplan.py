"""Test-only write faults at regbench's write sites, for tests/test_fault_injection.py.

REGBENCH_TEST_FAULTS names them: a comma list of SITE:ERRNO[@N], e.g. `store:ENOSPC@3`: the
third write at that site in a process, and every one after it, fails with that errno (a disk
that is full stays full). Sites: `store` (SQLite writes to results.sqlite), `csv` (the CSV
exports), `logs` (files under a `logs` folder), `lock` (opening `.regbench.lock`) and `model`
(the fake trainer's model saves, in the workers). REGBENCH_TEST_EXPORT_PAUSE=SECONDS:MARKER makes
every CSV export touch MARKER and pause before it replaces its file, so a test can stop the
command while it exports. `install()` patches the process it runs in;
`python -m faultrun ARGS` is `regbench ARGS` with it installed. Nothing here is in regbench.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sqlite3
import time
from pathlib import Path

SITES = ("store", "csv", "logs", "lock", "model")
_writes: dict[str, int] = {}


def plan() -> dict[str, tuple[int, int]]:
    """site -> (errno, first failing write) from REGBENCH_TEST_FAULTS."""
    faults = {}
    for item in filter(None, os.environ.get("REGBENCH_TEST_FAULTS", "").split(",")):
        site, _, rest = item.partition(":")
        name, _, nth = rest.partition("@")
        faults[site] = (getattr(errno, name), int(nth or 1))
    return faults


def check(site: str, path: object) -> None:
    """Count a write at `site`; raise the planned OSError when it is due."""
    fault = plan().get(site)
    if fault is None:
        return
    _writes[site] = _writes.get(site, 0) + 1
    code, nth = fault
    if _writes[site] >= nth:
        raise OSError(code, os.strerror(code), str(path))


class _Connection(sqlite3.Connection):
    """A results store whose writing statements fail as SQLite reports a full disk (or a
    read-only file) once the plan says so."""

    def _check(self, sql: str) -> None:
        if sql.lstrip().split(" ", 1)[0].upper() in ("INSERT", "DELETE", "UPDATE", "REPLACE"):
            try:
                check("store", "results.sqlite")
            except OSError as exc:
                full = exc.errno == errno.ENOSPC
                raise sqlite3.OperationalError(
                    "database or disk is full" if full else "attempt to write a readonly database"
                ) from None

    def execute(self, sql, *args, **kwargs):
        self._check(sql)
        return super().execute(sql, *args, **kwargs)

    def executemany(self, sql, *args, **kwargs):
        self._check(sql)
        return super().executemany(sql, *args, **kwargs)


def install() -> None:
    """Patch this process's write sites (a no-op without REGBENCH_TEST_FAULTS or
    REGBENCH_TEST_EXPORT_PAUSE)."""
    pause = os.environ.get("REGBENCH_TEST_EXPORT_PAUSE", "")
    if not plan() and not pause:
        return
    seconds, _, marker = pause.partition(":")
    connect, replace, os_open, opener = sqlite3.connect, os.replace, os.open, builtins.open

    def faulty_connect(database, *args, **kwargs):
        if str(database).endswith("results.sqlite") and "factory" not in kwargs:
            kwargs["factory"] = _Connection
        return connect(database, *args, **kwargs)

    def faulty_replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".csv"):
            check("csv", dst)
            if marker:
                Path(marker).touch()
                time.sleep(float(seconds))
        return replace(src, dst, *args, **kwargs)

    def faulty_os_open(path, flags, *args, **kwargs):
        if str(path).endswith(".regbench.lock"):
            check("lock", path)
        return os_open(path, flags, *args, **kwargs)

    def faulty_open(file, mode="r", *args, **kwargs):
        writing = any(m in mode for m in "wax+")
        if writing and isinstance(file, str | Path) and Path(file).parent.name == "logs":
            check("logs", file)
        return opener(file, mode, *args, **kwargs)

    sqlite3.connect, os.replace, os.open = faulty_connect, faulty_replace, faulty_os_open
    builtins.open = io.open = faulty_open
