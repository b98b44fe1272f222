"""The `regbench` command line. Heavy modules are imported inside the commands that need them,
so `regbench --help` and `regbench list` never load TensorFlow."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from regbench.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, check_environment
from regbench.cli.output import KeptOutput, lost_note
from regbench.design.settings import SETTINGS, Setting, flags_of
from regbench.errors import STOP_REQUESTED, RegbenchError
from regbench.version import __version__

COMMANDS = {  # command function -> the module under regbench.cli that holds it
    "list": "inspect",
    "describe": "inspect",
    "run": "grid",
    "plan": "grid",
    "tune": "tune",
    "leaderboard": "grid",
    "visualize": "stages",
    "final": "stages",
    "report": "stages",
    "compare": "compare",
    "export": "export",
    "completion": "completion",
    "doctor": "doctor",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_settings(p: argparse.ArgumentParser, command: str, table: Sequence[Setting]) -> None:
    """The experiment's settings that `command` takes, as the settings table declares them;
    each flag's dest is an `Experiment` field, validated there."""
    p.add_argument("--config", help="TOML experiment file, or a shipped one (lab, quickstart)")
    for setting in flags_of(command, table):
        options: dict[str, Any] = {"dest": setting.name}
        options["help"] = argparse.SUPPRESS if setting.hidden else setting.help
        if setting.metavar:
            options["metavar"] = setting.metavar
        if setting.action == "store_const":
            options.update(action="store_const", const=True)
        elif setting.action:
            options["action"] = setting.action
        p.add_argument(setting.spelling, **options)
        if setting.name == "experiment":
            p.add_argument("--out", dest="old_out", help=argparse.SUPPRESS)  # the 0.1 spelling


def _add_folder_argument(p: argparse.ArgumentParser, command: str) -> None:
    """A command that reads one experiment: `--experiment DIR`, or DIR as its shorthand."""
    p.add_argument(
        "folder", nargs="?", metavar="DIR", help="the experiment folder (as --experiment DIR)"
    )
    p.add_argument("--experiment", metavar="DIR", help=f"experiment folder (`{command} DIR` too)")


def _add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON instead")


def _add_tuner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tuner", default="random", help="random (default), bayesian or hyperband")
    p.add_argument("--max-trials", type=int, default=10, help="trials per cell (default 10)")
    p.add_argument(
        "--seeds-per-trial",
        type=int,
        default=1,
        help="train each trial this many times and score the mean (default 1)",
    )


def _add_stage_options(p: argparse.ArgumentParser) -> None:
    """Where a finished experiment and its data are (visualize, final)."""
    p.add_argument(
        "--experiment", metavar="DIR", help="experiment folder (default reports/<dataset>)"
    )
    p.add_argument(
        "--dataset",
        help="dataset plugin, as for run: only runs trained on it are used (default: any), "
        "and the folder defaults to reports/<dataset> (reports/cifar10 without it)",
    )
    p.add_argument("--data-dir", help="CIFAR-10 location, as for `run`")
    p.add_argument("--cache-dir", help="dataset cache, as for `run`")


def build_parser(table: Sequence[Setting] = SETTINGS) -> argparse.ArgumentParser:
    """The command line; its run, plan and tune flags from the settings `table`."""
    parser = _Parser(
        prog="regbench",
        description="regbench: benchmark regularizers on CNNs, one command per study",
    )
    parser.add_argument("--version", action="version", version=f"regbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="installed architectures, regularizers, datasets, visualizers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="list")

    p = sub.add_parser("describe", help="a model's layers and parameter counts")
    p.add_argument("--arch", required=True, help="architecture name")
    p.add_argument("--reg", default="none", help="regularizer name (default none)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="REG.NAME=VALUE",
        help="hyperparameter value, e.g. dropout.rate=0.2, as for run (the REG. may be left out)",
    )
    p.add_argument("--input-shape", default="32,32,3", help="H,W,C (default 32,32,3)")
    p.add_argument("--classes", type=int, default=10, help="output classes (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="describe")

    p = sub.add_parser("run", help="train the grid of architectures x regularizers x seeds")
    _add_settings(p, "run", table)
    p.add_argument("--force", action="store_true", help="rerun cells that are already ok")
    p.add_argument("--dry-run", action="store_true", help="show the plan, train nothing")
    p.add_argument(
        "--tuned", action="store_true", help="use the best values of this experiment's tuning"
    )
    p.add_argument(
        "--tune", action="store_true", help="run the tuning stage first, then the grid with it"
    )
    _add_tuner_options(p)
    _add_json(p, "the leaderboard (progress goes to stderr)")
    p.set_defaults(func="run")

    p = sub.add_parser("plan", help="show the grid and what is done, without running")
    _add_settings(p, "plan", table)
    p.add_argument(
        "--tuned", action="store_true", help="with the best values of this experiment's tuning"
    )
    _add_json(p, "the runs, their states and the time estimate")
    p.set_defaults(func="plan")

    p = sub.add_parser("tune", help="keras-tuner search of the regularizers' hyperparameters")
    _add_settings(p, "tune", table)
    _add_tuner_options(p)
    _add_json(p, "the best values (trials go to stderr)")
    p.set_defaults(func="tune")

    p = sub.add_parser("visualize", help="feature maps, filters and Grad-CAM of a trained run")
    p.add_argument("--run", help="run id (see `regbench plan` or `regbench leaderboard --wide`)")
    p.add_argument(
        "--arch",
        help="with --reg: that cell's finished run with the best validation accuracy",
    )
    p.add_argument("--reg", help="with --arch")
    _add_stage_options(p)
    p.add_argument("--image", help="any image file; resized to the model's input")
    p.add_argument(
        "--class",
        dest="class_",
        metavar="CLASS",
        help="without --image: the first image of this class in --split, a name or an index "
        "(default: horse where the dataset has it, else the split's first image)",
    )
    p.add_argument(
        "--split",
        choices=("validation", "test"),
        default="validation",
        help="the data --class picks from (default validation: no test image is looked at)",
    )
    p.add_argument(
        "--layers",
        type=int,
        default=4,
        metavar="N",
        help="featuremaps: draw the feature maps of the model's first N layers (default 4)",
    )
    p.add_argument(
        "--with",
        dest="with_",
        default="featuremaps,filters,gradcam",
        metavar="NAMES",
        help="visualizers to run, comma separated (default featuremaps,filters,gradcam; "
        "`regbench list` shows the installed ones)",
    )
    p.add_argument(
        "--output-dir",
        metavar="FOLDER",
        help="folder for the figures (default DIR/figures/visualize/RUN_ID)",
    )
    # the spellings before --output-dir, each still taken with a deprecation line
    p.add_argument("--figures", dest="old_figures", help=argparse.SUPPRESS)
    p.add_argument("--out", dest="old_output", help=argparse.SUPPRESS)
    _add_json(p, "the files written")
    p.set_defaults(func="visualize")

    p = sub.add_parser("final", help="retrain a cell on train+validation, test it once")
    p.add_argument("--arch", help="with --reg: the cell to retrain")
    p.add_argument("--reg", help="with --arch")
    p.add_argument("--best", action="store_true", help="the cell with the best mean val accuracy")
    p.add_argument("--epochs", type=int, help="epochs (default: the cell's own)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        help="as for run: a count (3: seeds 0, 1, 2) or a list like 1,2,3; one final run "
        "each (default: seed 0)",
    )
    seeds.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # --seeds N, now
    _add_stage_options(p)
    _add_json(p, "the final runs' rows")
    p.set_defaults(func="final")

    p = sub.add_parser("report", help="HTML and Markdown report of an experiment, with figures")
    _add_folder_argument(p, "report")
    p.add_argument(
        "--output-dir",
        metavar="FOLDER",
        help="folder for report.html, report.md and figures/ (default: DIR)",
    )
    # the spellings before --output-dir, each still taken with a deprecation line
    p.add_argument("--report-dir", dest="old_report_dir", help=argparse.SUPPRESS)
    p.add_argument("--out", dest="old_output", help=argparse.SUPPRESS)
    p.add_argument(
        "--baseline", default="none", help="the regularizer cells are compared with (default none)"
    )
    _add_json(p, "the paths written")
    p.set_defaults(func="report")

    p = sub.add_parser("leaderboard", help="the ranked results of an experiment folder")
    p.add_argument(
        "folders", nargs="*", metavar="DIR", help="experiment folder (several: compare them)"
    )
    p.add_argument("--experiment", metavar="DIR", help="experiment folder (or give it as DIR)")
    p.add_argument("--out", dest="old_out", help=argparse.SUPPRESS)
    p.add_argument(
        "--baseline", default="none", help="the regularizer cells are compared with (default none)"
    )
    p.add_argument("--wide", action="store_true", help="also show each cell's run ids")
    p.add_argument(
        "--by",
        choices=("cell", "reg"),
        default="cell",
        help="cell: each cell ranked (default); reg: each regularizer across architectures "
        "(pooled effect, helps/hurts, all-against-all ranking, seeds needed)",
    )
    p.add_argument(
        "--detect",
        type=float,
        default=0.01,
        metavar="DIFF",
        help="--by reg: the difference in accuracy the seeds-needed column is for (default 0.01)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="leaderboard")

    p = sub.add_parser("compare", help="the same cells of several experiments side by side")
    p.add_argument(
        "folders", nargs="*", metavar="DIR", help="experiment folders (as --experiment DIR ...)"
    )
    p.add_argument(
        "--experiment",
        metavar="DIR",
        action="append",
        default=[],
        help="an experiment folder; repeat it (or give DIR DIR ...) to compare 2 or more",
    )
    p.add_argument(
        "--baseline",
        help="also compare each experiment's cells with this regularizer, as the leaderboard "
        "does (default: experiments compared with the first only)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func="compare")

    p = sub.add_parser("export", help="copy an experiment's runs into another tracking tool")
    _add_folder_argument(p, "export")
    p.add_argument("--to", choices=("mlflow",), default="mlflow", help="target (default mlflow)")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI: http://HOST:5000, sqlite:///FILE, or a folder or file:DIR "
        "(a SQLite store DIR/mlflow.db, as MLflow 3 keeps file stores off); default "
        "MLFLOW_TRACKING_URI, else MLflow's own default (./mlflow.db)",
    )
    p.add_argument(
        "--mlflow-experiment", help="MLflow experiment name (default: the folder's name)"
    )
    _add_json(p, "what was exported")
    p.set_defaults(func="export")

    p = sub.add_parser("completion", help='shell completion: eval "$(regbench completion bash)"')
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    p.set_defaults(func="completion")

    p = sub.add_parser("doctor", help="check an experiment's store; rebuild it from the CSVs")
    _add_folder_argument(p, "doctor")
    _add_json(p, "what was checked and done")
    p.set_defaults(func="doctor")
    return parser


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop_as_interrupt(signum, frame) -> None:
    """Ctrl-C, and SIGTERM (timeout, Slurm, docker stop) as Ctrl-C: finished runs kept,
    workers ended, exit 130. Any further one (Ctrl-C pressed again and again) is ignored, so
    the tidy-up runs to its end instead of being cut short with a traceback."""
    for stop in STOP_SIGNALS:  # not SIG_IGN: Python raises for a signal already on its way
        signal.signal(stop, _ignore)
    raise KeyboardInterrupt


def _ignore(signum, frame) -> None:
    """A stop signal after the first: the tidy-up is under way."""


def _keep_dropped_interrupts(previous):
    """`sys.unraisablehook` that turns a KeyboardInterrupt Python had to drop (raised inside a
    weakref callback or a finalizer) into STOP_REQUESTED, silently, instead of a printed
    traceback and a lost Ctrl-C; anything else goes to `previous`."""

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            STOP_REQUESTED.set()
            return
        previous(unraisable)

    return hook


def _one_line_renames(show):
    """`warnings.showwarning` that prints a renamed setting (an experiment file's old key) as
    one line, as --out is, and leaves any other warning to `show`."""

    def shown(message, category, filename, lineno, file=None, line=None) -> None:
        from regbench.design.experiment import RenamedSetting

        if issubclass(category, RenamedSetting):
            print(f"regbench: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return shown


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. Once interrupted, the process is on its way out: Ctrl-C
    and SIGTERM stay ignored after the return, so a late one cannot end it by a signal, and the
    command itself (`argv` None: the `regbench` program) exits at once, skipping the
    interpreter's second-long teardown (everything is written and closed by then)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for stop in STOP_SIGNALS:  # one ignored already (`regbench run &` in a script) stays so
            if signal.getsignal(stop) is not signal.SIG_IGN:
                previous[stop] = signal.signal(stop, _stop_as_interrupt)
    code = None
    STOP_REQUESTED.clear()
    unraisable = sys.unraisablehook
    sys.unraisablehook = _keep_dropped_interrupts(unraisable)
    stdout = sys.stdout
    kept = KeptOutput(stdout)
    sys.stdout = kept
    try:
        code = _command(argv)
    except KeyboardInterrupt:
        print("regbench: interrupted; rerun the same command to resume", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        sys.stdout = stdout
        sys.unraisablehook = unraisable
        if note := lost_note(kept):
            print(note, file=sys.stderr)
        if code != EXIT_INTERRUPTED:
            for stop, handler in previous.items():
                signal.signal(stop, handler)
    if code == EXIT_INTERRUPTED and argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"regbench.cli.{COMMANDS[args.func]}")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_renames(warnings.showwarning)
            check_environment()
            return getattr(module, f"cmd_{args.func}")(args)
    except RegbenchError as exc:
        print(f"regbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `regbench leaderboard DIR --json | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
