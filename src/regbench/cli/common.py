"""What every command shares: the terminal and the exit codes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def console() -> Console:
    """A rich console; plain and colourless when not a TTY or NO_COLOR is set."""
    from rich.console import Console

    return Console(
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        width=None if sys.stdout.isatty() else 160,
    )


def cache_dir(args) -> Path:
    """--cache-dir, or the default dataset cache."""
    from regbench.plugins.datasets import default_cache_dir

    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def load_options(args, dataset_options) -> dict[str, Any]:
    """A dataset's plugin options plus where its data and cache are (--data-dir, --cache-dir)."""
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    return {**dataset_options, "data_dir": data_dir, "cache_dir": cache_dir(args)}


def check_data(specs, args) -> None:
    """Load each dataset once in the parent and check every architecture fits it, so bad data
    fails with one line before anything is written (and the array cache is warm for workers)."""
    from regbench.errors import RegbenchError
    from regbench.plugins.manager import registry

    if args.data_dir is not None and not Path(args.data_dir).expanduser().exists():
        raise RegbenchError(f"--data-dir {args.data_dir} does not exist")
    shapes: dict[str, tuple[int, int, int]] = {}
    for spec in specs:
        protocol = spec.protocol
        key = json.dumps([protocol.dataset, dict(protocol.dataset_options)], sort_keys=True)
        if key not in shapes:
            dataset = registry().get("datasets", protocol.dataset)
            data = dataset.load(spec.seed, load_options(args, protocol.dataset_options))
            shapes[key] = data.input_shape
        registry().get("architectures", spec.arch).check_input(shapes[key])
