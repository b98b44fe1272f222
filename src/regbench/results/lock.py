"""One writer per experiment folder: an advisory lock on `DIR/.regbench.lock`.

The kernel releases a `flock` when its holder dies, however it dies, so a lock left by a
killed run is simply taken over; the file's text (the holder's pid) only names who holds a
live one. Readers never take it. Within one process the lock is shared (counted), so library
code may open the store for writing more than once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from regbench.errors import RegbenchError

LOCK_NAME = ".regbench.lock"

_held: dict[Path, tuple[int, int]] = {}  # folder -> (file descriptor, holders in this process)


def acquire(folder: Path) -> None:
    """Lock `folder` for writing, or raise naming the process that holds it."""
    key = Path(folder).resolve()
    if key in _held:
        fd, count = _held[key]
        _held[key] = (fd, count + 1)
        return
    path = key / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RegbenchError(
            f"{folder} is in use by another regbench (pid {holder}); wait for it to finish, "
            "or write to another folder with --experiment (experiment= in Python)"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise RegbenchError(f"cannot lock {path}: {exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = (fd, 1)


def release(folder: Path) -> None:
    """Drop one hold on `folder`; the last one unlocks it."""
    key = Path(folder).resolve()
    if key not in _held:
        return
    fd, count = _held.pop(key)
    if count > 1:
        _held[key] = (fd, count - 1)
        return
    os.ftruncate(fd, 0)
    os.close(fd)  # closing the descriptor releases the flock
