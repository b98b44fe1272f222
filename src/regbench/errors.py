"""Errors that the CLI turns into one clear line and an exit code instead of a traceback."""


class RegbenchError(Exception):
    """Bad input or an unusable environment: the message says what was wrong and what to do."""

    exit_code = 2


class PluginError(RegbenchError):
    """A plugin could not be used (broken, or two plugins claim one name)."""
