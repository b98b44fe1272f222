"""Probe 8: a full disk is said to be one wherever SQLite or the OS reports it ("database or
disk is full", a "disk I/O error" where the -shm cannot grow, the cause a failed ROLLBACK used
to hide), and a store whose creation it cut short is new, never an old store to upgrade."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from regbench.errors import RegbenchError
from regbench.results import integrity, migrations
from regbench.results.store import DB_NAME, Store, open_read_only, stored_runs

TESTS = Path(__file__).parent


def test_an_io_error_with_the_disk_nearly_full_is_the_disk_full(tmp_path, monkeypatch):
    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorcode = sqlite3.SQLITE_IOERR_WRITE  # type: ignore[attr-defined]
    monkeypatch.setattr(integrity, "free_bytes", lambda path: 24 * 1024)
    assert integrity.disk_full(tmp_path / DB_NAME, io_error)
    assert "the disk is full" in str(integrity.write_error(tmp_path / DB_NAME, io_error))
    monkeypatch.setattr(integrity, "free_bytes", lambda path: 50e9)  # room: a real I/O error
    assert not integrity.disk_full(tmp_path / DB_NAME, io_error)
    assert "disk I/O error" in str(integrity.write_error(tmp_path / DB_NAME, io_error))
    assert not integrity.disk_full(tmp_path, PermissionError(13, "Permission denied"))


def test_a_migration_the_disk_stopped_raises_the_full_disk_not_a_rollback(tmp_path, monkeypatch):
    """SQLite rolls a transaction back itself on SQLITE_FULL; the ROLLBACK regbench then
    issued failed ("cannot rollback - no transaction is active") and hid the cause."""
    db = sqlite3.connect(tmp_path / DB_NAME)

    def full(db, folder):
        db.execute("ROLLBACK")  # as SQLite does when the disk fills
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(migrations, "MIGRATIONS", (full,))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        migrations.migrate(db, tmp_path)


def test_a_store_whose_creation_was_cut_short_is_new_not_upgraded(tmp_path, caplog):
    """A WAL header page and no table, as a full disk leaves it: readers call it empty; the
    next writer makes it a store without a `.bak-v0` or an "upgraded from version 0" line."""
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    with pytest.raises(RegbenchError, match="is empty: it holds no results"):
        open_read_only(tmp_path)
    with caplog.at_level(logging.WARNING), Store(tmp_path) as store:
        assert store.statuses() == {}
    assert "upgraded" not in caplog.text
    assert not list(tmp_path.glob(f"{DB_NAME}.bak-*"))


# ---------------------------------------------------------------- a real full disk


def small_disk(root: Path, free_kb: int) -> Path:
    """A tmpfs with `free_kb` KiB left, unmounted by the caller; skips where mounting one is
    not allowed (not root, no CAP_SYS_ADMIN)."""
    mount = root / f"disk-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    found = os.statvfs(mount)
    filler = found.f_bavail * found.f_frsize - free_kb * 1024
    with open(mount / "filler", "wb") as out:
        out.truncate(0)
        out.write(b"\0" * filler)
    return mount


RUN = ["run", "--arch", "model1", "--reg", "none,l2,dropout", "--seeds", "2"]
RUN += ["--trainer", "fake_trainer:train", "--dataset", "digits", "--epochs", "1"]


def regbench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "regbench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok_runs(folder: Path) -> set[tuple[str, str]]:
    return {(r["run_id"], r["started_at"]) for r in stored_runs(folder) if r["status"] == "ok"}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="needs root to mount")
@pytest.mark.parametrize("free_kb", [8, 24, 48, 96, 160])
def test_a_really_full_disk_is_named_and_space_back_resumes(tmp_path, free_kb):
    """The probe as written: the grid on a disk with 8-160 KiB left (the store cannot be
    created, or fills mid-grid), then the space given back and the command rerun."""
    disk = small_disk(tmp_path, free_kb)
    try:
        folder = disk / "b"
        first = regbench(*RUN, "--experiment", str(folder))
        assert first.returncode in (0, 2) and "Traceback" not in first.stderr
        if first.returncode:
            assert "the disk is full; free some space" in first.stderr, first.stderr
        # read while the disk is still full: a -shm that cannot grow is not damage
        board = regbench("leaderboard", str(folder))
        assert "Traceback" not in board.stderr and "damaged" not in board.stderr
        kept = ok_runs(folder) if board.returncode == 0 else set()
        assert board.returncode == 0 or "is empty" in board.stderr, board.stderr
        (disk / "filler").unlink()
        again = regbench(*RUN, "--experiment", str(folder))
        assert again.returncode == 0, again.stderr
        assert "upgraded" not in again.stderr and not list(folder.glob(f"{DB_NAME}.bak-*"))
        done = ok_runs(folder)
        assert len(done) == 6 and kept <= done  # nothing recorded was lost or trained again
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
