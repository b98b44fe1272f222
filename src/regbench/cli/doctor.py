"""`regbench doctor DIR`: check an experiment's results store and repair it from its CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli.common import EXIT_OK, experiment_folder, print_json, say
from regbench.errors import RegbenchError


def cmd_doctor(args: argparse.Namespace) -> int:
    from regbench.results.doctor import doctor

    folder = experiment_folder(args, args.folder)
    if folder is None:
        raise RegbenchError("name the experiment folder: regbench doctor --experiment DIR")
    notes = doctor(Path(folder))
    if args.json:
        print_json({"folder": folder, "notes": notes})
        return EXIT_OK
    for note in notes:
        say(note)
    return EXIT_OK
