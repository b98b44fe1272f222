"""Errors that the CLI turns into one clear line and an exit code instead of a traceback."""


class RegbenchError(Exception):
    """Bad input or an unusable environment: the message says what was wrong and what to do."""

    exit_code = 2


class CompositionConflict(RegbenchError):
    """Two regularizers of a combination both claim a side of the seam only one can have: the
    cell is skipped with this reason, the rest of the grid runs."""


class PluginError(RegbenchError):
    """A plugin could not be used (broken, or two plugins claim one name)."""
