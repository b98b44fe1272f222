"""Every setting of an experiment, declared once: its name, parser, role, flag and help.

`Experiment`'s validation, the command line's flags and their help, the keys of an experiment
file and docs/settings.md are all read from `SETTINGS` (datasette's `SETTINGS` is the model);
a test holds `Experiment`'s fields, the protocol's and docs/settings.md to it. Roles say what a
setting is part of: `grid` (what is trained), `protocol` (how: part of a run's identity and
its protocol columns), `execution` (how fast: recorded, never part of the science), `executor`
(where runs go: processes, devices), `where` (folders) and `report` (how results are read).

This module imports nothing heavy (design.parsers reads the values).
`python -m regbench.design.experiment` prints docs/settings.md from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from regbench.design import choices as c
from regbench.design import parsers as p

DEFAULT_TRAINER = "regbench.engine.trainer:train_run"
ROLES = ("grid", "protocol", "execution", "executor", "where", "report")
# the commands whose flags a role's settings are: the executor's are `run`'s alone (tune
# takes --executor and --workers too: see `Setting.also`)
COMMANDS = {role: ("run", "plan", "tune") for role in ROLES} | {"executor": ("run",)}


@dataclass(frozen=True)
class Setting:
    """One setting. `flag` is its command-line spelling ("" for none; default --name with
    dashes), `action` argparse's (append: a flag given several times), `also` commands beyond
    its role's that take the flag, `in_file` whether an experiment file may set it, `hidden`
    a flag left out of --help."""

    name: str
    parse: Callable[[Any, str], Any]
    role: str
    help: str
    flag: str | None = None
    metavar: str | None = None
    action: str | None = None
    also: tuple[str, ...] = ()
    in_file: bool = True
    hidden: bool = False

    @property
    def spelling(self) -> str:
        """The flag as typed: `--batch-size` for batch_size, "" for a setting without one."""
        return ("--" + self.name.replace("_", "-")) if self.flag is None else self.flag

    @property
    def commands(self) -> tuple[str, ...]:
        return (*COMMANDS[self.role], *self.also) if self.spelling else ()


# ---------------------------------------------------------------- the table

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "arch",
        p.names,
        "grid",
        "architectures: names, comma lists, or all (default all)",
        action="append",
    ),
    Setting(
        "reg",
        p.names,
        "grid",
        "regularizers: names, comma lists, a+b combinations, or all (default all)",
        action="append",
    ),
    Setting("dataset", p.text, "protocol", "dataset plugin (default cifar10)"),
    Setting(
        "dataset_options",
        p.parse_assignments,
        "protocol",
        "dataset-specific option, e.g. native=true for digits",
        flag="--dataset-option",
        metavar="KEY=VALUE",
        action="append",
    ),
    Setting(
        "params",
        p.params,
        "grid",
        "regularizer hyperparameter, e.g. dropout.rate=0.2; a comma list sweeps it",
        flag="--param",
        metavar="REG.NAME=VALUE[,VALUE]",
        action="append",
    ),
    Setting(
        "seeds",
        p.seeds,
        "grid",
        "number of seeds (0..N-1) or a list like 1,2,3 (default 1)",
    ),
    Setting(
        "epochs",
        p.whole(1, p.MAX_EPOCHS),
        "protocol",
        "training epochs per run (default 10, the lab's)",
    ),
    Setting(
        "batch_size", p.whole(1, p.MAX_BATCH), "protocol", "images per step (default 64, the lab's)"
    ),
    Setting(
        "optimizer",
        p.choice(c.OPTIMIZERS),
        "protocol",
        "sgd (default, Keras defaults), adam, adamw, rmsprop, nadam, adagrad",
    ),
    Setting(
        "learning_rate", p.positive, "protocol", "(default: the optimizer's own, 0.01 for sgd)"
    ),
    Setting(
        "optimizer_options",
        p.optimizer_options,
        "protocol",
        "optimizer setting, e.g. momentum=0.9 or nesterov=true (default: Keras's)",
        flag="--optimizer-option",
        metavar="KEY=VALUE",
        action="append",
    ),
    Setting(
        "lr_schedule",
        p.choice(c.LR_SCHEDULES),
        "protocol",
        "constant (default), cosine, step or warmup_cosine, over the whole training",
    ),
    Setting(
        "target",
        p.target,
        "protocol",
        "record time to reach it, e.g. val_accuracy=0.5 (default none)",
    ),
    Setting(
        "precision",
        p.choice(c.PRECISIONS),
        "protocol",
        "float32 (default), mixed_float16 or mixed_bfloat16",
    ),
    Setting(
        "jit_compile",
        p.choice(c.JIT_CHOICES),
        "execution",
        "XLA: auto (default: on where a GPU is), on or off",
    ),
    Setting(
        "steps_per_execution",
        p.whole(1, p.MAX_STEPS),
        "execution",
        "training steps per compiled call (fewer host round trips; default 1)",
    ),
    Setting(
        "pipeline",
        p.choice(c.PIPELINES),
        "execution",
        "input pipeline: auto (default: arrays), arrays or tf.data (TensorFlow only)",
    ),
    Setting(
        "engine",
        p.choice(c.ENGINES),
        "execution",
        "standard (default) or vmapped: a cell's seeds as one JAX program (JAX backend)",
    ),
    Setting(
        "tensorboard",
        p.flag,
        "execution",
        "write TensorBoard scalars and an HParams summary under DIR/tensorboard",
        action="store_const",
    ),
    Setting(
        "baseline", p.text, "report", "the regularizer each cell is compared with (default none)"
    ),
    Setting(
        "name",
        p.text,
        "where",
        "names the default folder, reports/<name> (an experiment file's key)",
        flag="",
    ),
    Setting(
        "experiment",
        p.path,
        "where",
        "experiment folder (default reports/<experiment name or dataset>)",
        metavar="DIR",
    ),
    Setting(
        "data_dir",
        p.existing,
        "where",
        "CIFAR-10: cifar-10-batches-py/ or cifar-10-python.tar.gz",
    ),
    Setting(
        "cache_dir",
        p.path,
        "where",
        "where converted datasets are cached (default $REGBENCH_CACHE or ~/.cache/regbench)",
    ),
    Setting(
        "executor",
        p.choice(c.EXECUTORS),
        "executor",
        "local (default: worker processes; for tune, each cell's search in one), inprocess "
        "(one after another in this process) or ray (tune: searched in local workers)",
        also=("tune",),
    ),
    Setting(
        "devices",
        p.devices,
        "executor",
        "GPU ids to use, e.g. 0,1 (default: all; cpu for none)",
    ),
    Setting("per_device", p.whole(1, 1024), "executor", "concurrent runs per GPU (default 1)"),
    Setting(
        "pack",
        p.whole(1, 1024),
        "executor",
        "vmapped engine: train up to N runs of one architecture and protocol as one program "
        "(default: a cell's seeds on CPU, up to 16 runs on a GPU)",
        metavar="N",
    ),
    Setting(
        "workers",
        p.whole(1, 1024),
        "executor",
        "worker processes on CPU (default: one per core, at most 4)",
        also=("tune",),
    ),
    Setting(
        "max_runs_per_worker",
        p.whole(1, 1_000_000),
        "executor",
        "replace a worker process with a fresh one after N runs, bounding memory creep "
        "(default: only once its memory grew 6%% past its size after its first run)",
        metavar="N",
    ),
    Setting(
        "run_timeout",
        p.positive,
        "executor",
        "stop a run still training after this long; record it `timeout` (default none)",
        metavar="SECONDS",
    ),
    Setting(
        "ray_address",
        p.text,
        "executor",
        "Ray cluster for --executor ray (default: start a local one)",
    ),
    Setting(
        "trainer",
        p.trainer,
        "executor",
        "the function that trains a run, module:function (for tests and timing)",
        in_file=False,
        hidden=True,
    ),
)


def parsers(table: Iterable[Setting] = SETTINGS) -> dict[str, Callable[[Any, str], Any]]:
    return {s.name: s.parse for s in table}


def file_keys(table: Iterable[Setting] = SETTINGS) -> tuple[str, ...]:
    """The keys an experiment file may hold."""
    return tuple(s.name for s in table if s.in_file)


def flags_of(command: str, table: Iterable[Setting] = SETTINGS) -> list[Setting]:
    """The settings `command` takes as flags, in the table's order."""
    return [s for s in table if command in s.commands]
