"""`regbench compare DIR_A DIR_B ...`: the same cells of several experiments side by side."""

from __future__ import annotations

import argparse

from regbench.cli.common import EXIT_OK, baseline, console
from regbench.errors import RegbenchError


def cmd_compare(args: argparse.Namespace) -> int:
    from regbench.reporting import compare_text
    from regbench.results import compare

    folders = [*args.experiment, *args.folders]
    if len(folders) < 2:
        raise RegbenchError(
            "compare needs two or more experiment folders: "
            "regbench compare --experiment DIR --experiment DIR (or DIR DIR)"
        )
    against = None if args.baseline is None else baseline(args.baseline)
    if args.json:
        print(compare.to_json(folders, against))
    else:
        compare_text.render(folders, console(), against)
    return EXIT_OK
