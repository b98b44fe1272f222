"""`regbench compare DIR_A DIR_B ...`: the same cells of several experiments side by side."""

from __future__ import annotations

import argparse

from regbench.cli.common import EXIT_OK, console


def cmd_compare(args: argparse.Namespace) -> int:
    from regbench.results import compare

    if args.json:
        print(compare.to_json(args.experiments))
    else:
        compare.render(args.experiments, console())
    return EXIT_OK
