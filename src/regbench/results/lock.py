"""One writer per experiment folder: an advisory lock on `DIR/.regbench.lock`.

The kernel releases a `flock` when its holder dies, however it dies, so a lock left by a
killed run is simply taken over; the file's text (the holder's pid) only names who holds a
live one. Readers never take it. Within one process the lock is shared (counted), so library
code may open the store for writing more than once.
"""

from __future__ import annotations

import contextlib
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
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise unusable(path, exc) from None
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
        raise unusable(path, exc) from None
    with contextlib.suppress(OSError):  # the pid only names the holder; the flock is the lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = (fd, 1)


def unusable(path: Path, exc: OSError) -> RegbenchError:
    """One line for a lock file that cannot be opened or locked, with what to do about it."""
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        why = "is a folder, not a lock file; move it away"
    elif isinstance(exc, PermissionError):
        why = (
            "cannot be opened for writing (another user's file, read-only or immutable); "
            "make it writable or remove it, or write to another folder with --experiment"
        )
    else:
        why = f"cannot be used ({exc.strerror or exc}); remove it, or use another --experiment"
    return RegbenchError(f"lock file {path} {why}")


def release(folder: Path) -> None:
    """Drop one hold on `folder`; the last one unlocks it."""
    key = Path(folder).resolve()
    if key not in _held:
        return
    fd, count = _held.pop(key)
    if count > 1:
        _held[key] = (fd, count - 1)
        return
    with contextlib.suppress(OSError):  # a full disk or a read-only file: the pid stays
        os.ftruncate(fd, 0)
    os.close(fd)  # closing the descriptor releases the flock
