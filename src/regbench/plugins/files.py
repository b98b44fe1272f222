"""Paths and files from the user, checked before use: `~user` that names no user, and what
is not a regular file (a FIFO would hang a read, /dev/zero would fill memory), are one
clear line instead of a traceback or a hang. And files regbench writes, written whole or not
at all (`replaced`)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from regbench.errors import RegbenchError

CONFIG_LIMIT = 1 << 20  # an experiment file: 1 MiB is thousands of lines of TOML
IMAGE_LIMIT = 256 << 20  # a picture to visualize


def expanded(path: str | os.PathLike[str], what: str) -> Path:
    """`path` with `~` and `~user` expanded; a user this machine does not have is refused."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = str(path).split(os.sep, 1)[0]
        raise RegbenchError(
            f"{what} {path}: {user} names no user on this machine; give the path in full"
        ) from None


def read_regular(path: Path, what: str, limit: int, advice: str = "give a file") -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes (opened
    without blocking, so that a FIFO is refused rather than waited on); `advice` ends each
    refusal."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        reason = exc.strerror or exc
        raise RegbenchError(f"cannot read {what} {path}: {reason}; {advice}") from None
    with os.fdopen(fd, "rb") as handle:
        _refuse(os.fstat(fd), path, what, limit, advice)
        return handle.read(limit + 1)[:limit]


def check_regular(path: Path, what: str, limit: int, advice: str = "give a file") -> None:
    """Refuse `path` unless it is a regular file of at most `limit` bytes; a missing path
    or a folder is left to the reader, which says so in its own words."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RegbenchError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(found.st_mode):
        _refuse(found, path, what, limit, advice)


def _refuse(found: os.stat_result, path: Path, what: str, limit: int, advice: str) -> None:
    if not stat.S_ISREG(found.st_mode):
        kind = _kind(found.st_mode)
        raise RegbenchError(f"{what} {path} is not a regular file ({kind}); {advice}")
    if found.st_size > limit:
        size = f"{found.st_size:,} bytes, more than the {limit:,}"
        raise RegbenchError(f"{what} {path} is {size} it may be; {advice}")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a folder" if stat.S_ISDIR(mode) else "not a file"


@contextlib.contextmanager
def replaced(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary file beside `path` to write, renamed over `path` once the block ends: a
    reader sees the old file or the new one, never half of one, and a failed write leaves no
    temporary behind (one a kill leaves is named `.<name>.<random><suffix>`, for doctor to
    find). The file gets the mode `open` would give it: 0o666 less the umask."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def new_file_mode() -> int:
    """What the umask allows a new file (0o666 less the umask), as `open` would create it."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
