"""Plugin code run under guard: whatever it raises, and `os._exit`, make it a broken plugin.

A plugin module may do anything while it imports or registers: raise a BaseException of its
own, raise KeyboardInterrupt, call `sys.exit` or `os._exit`. None of that may end regbench
silently or with a traceback, so while plugin code runs `os._exit` (on the loading thread)
raises `Exited` instead, and a KeyboardInterrupt counts as the user's only if a SIGINT came.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Exited(BaseException):
    """`os._exit(code)` called by plugin code while it loaded."""

    def __init__(self, code: int) -> None:
        super().__init__(f"os._exit({code}) called while loading")
        self.code = code


class Guard:
    """What happened while the guard was up: whether the user pressed Ctrl-C."""

    interrupted = False

    def own(self, exc: BaseException) -> bool:
        """Whether `exc` is the plugin's to answer for, not a stop the user asked for."""
        return not (isinstance(exc, KeyboardInterrupt) and self.interrupted)


def describe(exc: BaseException) -> str:
    """The error as a broken plugin's one line."""
    if isinstance(exc, Exited):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


@contextlib.contextmanager
def guarded() -> Iterator[Guard]:
    """Run plugin code with `os._exit` caught on this thread and SIGINT noted."""
    guard = Guard()
    real_exit = os._exit
    loader = threading.get_ident()

    def exit_(code: int) -> None:
        if threading.get_ident() != loader:  # another thread's exit (a watchdog) is real
            real_exit(code)
        raise Exited(code)

    os._exit = exit_  # type: ignore[assignment]
    with _sigint_noted(guard):
        try:
            yield guard
        finally:
            os._exit = real_exit


@contextlib.contextmanager
def _sigint_noted(guard: Guard) -> Iterator[None]:
    """Keep SIGINT's handler, noting that a SIGINT came (only the main thread can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def noted(signum: int, frame: Any) -> None:
        guard.interrupted = True
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, noted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
