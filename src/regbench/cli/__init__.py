"""The `regbench` command line. Heavy modules are imported inside the commands that need them,
so `regbench --help` and `regbench list` never load TensorFlow."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from regbench import __version__
from regbench.cli.common import EXIT_INTERRUPTED, EXIT_USAGE
from regbench.errors import RegbenchError

COMMANDS = {  # command function -> the module under regbench.cli that holds it
    "list": "inspect",
    "describe": "inspect",
    "run": "grid",
    "tune": "grid",
    "leaderboard": "grid",
    "visualize": "stages",
    "final": "stages",
    "report": "stages",
    "doctor": "doctor",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML experiment file, or a shipped one (lab, quickstart)")
    p.add_argument("--arch", action="append", help="architectures: names, comma lists, or all")
    p.add_argument("--reg", action="append", help="regularizers: names, comma lists, or all")
    p.add_argument("--dataset", help="dataset plugin (default cifar10)")
    p.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        help="dataset-specific option, e.g. native=true for digits",
    )
    p.add_argument("--data-dir", help="CIFAR-10: cifar-10-batches-py/ or cifar-10-python.tar.gz")
    p.add_argument(
        "--cache-dir",
        help="where converted datasets are cached (default $REGBENCH_CACHE or ~/.cache/regbench)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", help="sgd (default, Keras defaults), adam, adamw, rmsprop, ...")
    p.add_argument("--learning-rate", type=float)
    p.add_argument(
        "--param",
        action="append",
        metavar="REG.NAME=VALUE",
        help="regularizer hyperparameter, e.g. dropout.rate=0.2",
    )
    p.add_argument("--seeds", help="number of seeds (0..N-1) or a list like 1,2,3")
    p.add_argument("--target", help="record time to reach it, e.g. val_accuracy=0.5")
    p.add_argument("--jit-compile", choices=("auto", "on", "off"))
    p.add_argument("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    p.add_argument(
        "--steps-per-execution",
        type=int,
        help="training steps per compiled call (fewer host round trips)",
    )
    p.add_argument(
        "--pipeline",
        choices=("auto", "arrays", "tf.data"),
        help="input pipeline (auto: tf.data on TensorFlow, measured faster; arrays elsewhere)",
    )
    p.add_argument("--out", help="experiment folder (default reports/<experiment name>)")


def _add_tuner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tuner", default="random", help="random (default), bayesian or hyperband")
    p.add_argument("--max-trials", type=int, default=10, help="trials per cell (default 10)")


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    """Where a finished experiment and its data are (visualize, final)."""
    p.add_argument("--experiment", help="experiment folder (default reports/<dataset>)")
    p.add_argument("--dataset", default="cifar10", help="names the default experiment folder")
    p.add_argument("--data-dir", help="CIFAR-10 location, as for `run`")
    p.add_argument("--cache-dir", help="dataset cache, as for `run`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="regbench",
        description="regbench: benchmark regularizers on CNNs, one command per study",
    )
    parser.add_argument("--version", action="version", version=f"regbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="installed architectures, regularizers, datasets, visualizers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="list")

    p = sub.add_parser("describe", help="a model's layers and parameter counts")
    p.add_argument("--arch", required=True)
    p.add_argument("--reg", default="none")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--input-shape", default="32,32,3")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="describe")

    for name, help_text in (
        ("run", "train the grid of architectures x regularizers x seeds"),
        ("plan", "show the grid and what is done, without running"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_run_options(p)
        p.add_argument("--force", action="store_true", help="rerun cells that are already ok")
        p.add_argument("--dry-run", action="store_true", default=name == "plan")
        p.add_argument(
            "--tuned",
            action="store_true",
            help="use the best values from this experiment's tuning stage",
        )
        p.add_argument(
            "--tune",
            action="store_true",
            help="run the tuning stage first, then the grid with its values",
        )
        _add_tuner_options(p)
        p.add_argument("--executor", choices=("local", "inprocess", "ray"), default="local")
        p.add_argument("--devices", help="GPU ids to use, e.g. 0,1 (default: all; cpu for none)")
        p.add_argument("--per-device", type=int, default=1, help="concurrent runs per GPU")
        p.add_argument(
            "--ray-address",
            help="Ray cluster to use with --executor ray (default: start a local one)",
        )
        p.add_argument(
            "--max-runs-per-worker",
            type=int,
            help="start a fresh worker process after this many runs (bounds memory creep)",
        )
        p.add_argument("--workers", type=int, help="worker processes when running on CPU")
        p.add_argument(
            "--trainer", default="regbench.engine.trainer:train_run", help=argparse.SUPPRESS
        )
        p.set_defaults(func="run")

    p = sub.add_parser("tune", help="keras-tuner search of the regularizers' hyperparameters")
    _add_run_options(p)
    _add_tuner_options(p)
    p.set_defaults(func="tune")

    p = sub.add_parser("visualize", help="feature maps, filters and Grad-CAM of a trained run")
    p.add_argument("--run", help="run id (see `regbench leaderboard`)")
    p.add_argument("--arch")
    p.add_argument("--reg")
    _add_experiment_options(p)
    p.add_argument("--image", help="any image file; resized to the model's input")
    p.add_argument(
        "--class",
        dest="class_",
        metavar="CLASS",
        help="without --image: the first test image of this class (default horse)",
    )
    p.add_argument("--layers", type=int, default=4, help="feature maps of the first N layers")
    p.add_argument(
        "--with",
        dest="with_",
        default="featuremaps,filters,gradcam",
        help="visualizers to run, comma separated",
    )
    p.add_argument("--out", help="folder for the figures")
    p.set_defaults(func="visualize")

    p = sub.add_parser("final", help="retrain a cell on train+validation, test it once")
    p.add_argument("--arch")
    p.add_argument("--reg")
    p.add_argument("--best", action="store_true", help="the cell with the best mean val accuracy")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    _add_experiment_options(p)
    p.set_defaults(func="final")

    p = sub.add_parser("report", help="HTML and Markdown report of an experiment, with figures")
    p.add_argument("experiment")
    p.add_argument("--out", help="folder for report.html, report.md and figures/ (default: DIR)")
    p.set_defaults(func="report")

    p = sub.add_parser("leaderboard", help="the ranked results of an experiment folder")
    p.add_argument("experiment")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="leaderboard")

    p = sub.add_parser("doctor", help="check an experiment's store; rebuild it from the CSVs")
    p.add_argument("experiment")
    p.set_defaults(func="doctor")
    return parser


def _terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM (timeout, Slurm, docker stop) stops a command as Ctrl-C does: finished runs
    kept, workers ended, exit 130. A second one during the tidy-up is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"regbench.cli.{COMMANDS[args.func]}")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if in_main_thread else None
    try:
        return getattr(module, f"cmd_{args.func}")(args)
    except RegbenchError as exc:
        print(f"regbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("regbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
