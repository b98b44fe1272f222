"""`regbench doctor DIR`: check an experiment's results store and repair it from its CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli.common import EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from regbench.results.doctor import doctor

    for note in doctor(Path(args.experiment)):
        print(note)
    return EXIT_OK
