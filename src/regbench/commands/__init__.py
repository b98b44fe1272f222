"""What every command shares: the terminal and the exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def console(stderr: bool = False):
    """A rich console; plain and colourless when not a TTY or NO_COLOR is set."""
    from rich.console import Console

    return Console(
        stderr=stderr,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        width=None if sys.stdout.isatty() else 160,
    )


def cache_dir(args) -> Path:
    """--cache-dir, or the default dataset cache."""
    from regbench.datasets import default_cache_dir

    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()
