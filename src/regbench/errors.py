"""Errors that the CLI turns into one clear line and an exit code instead of a traceback."""

import threading


class RegbenchError(Exception):
    """Bad input or an unusable environment: the message says what was wrong and what to do."""

    exit_code = 2


class CompositionConflict(RegbenchError):
    """Two regularizers of a combination both claim a side of the seam only one can have: the
    cell is skipped with this reason, the rest of the grid runs."""


class PluginError(RegbenchError):
    """A plugin could not be used (broken, or two plugins claim one name)."""


# A Ctrl-C that Python could not raise where it landed (inside a weakref callback or a
# finalizer, where an exception is printed and dropped): the CLI sets this instead, and the
# grid's loop raises KeyboardInterrupt from it, so the stop is never lost.
STOP_REQUESTED = threading.Event()
