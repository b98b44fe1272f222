"""The long-lived worker process: loads each dataset once, trains the runs it is sent.

The scheduler starts it as `python -m regbench.engine.worker TASKS REPORTS` (two pipe file
descriptors), not with multiprocessing: its spawn re-runs the parent's main module in every
child, so a plain script calling `regbench.run` (or one piped to `python -`) would start its
grid again in each worker. Only what the worker is sent crosses: a setup, then tasks.
Module-level imports stay light, so the worker ignores Ctrl-C before anything heavy loads.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regbench.design.plan import Protocol, RunSpec
    from regbench.plugins.datasets import Splits


@dataclass(frozen=True)
class Setup:
    """What a worker needs before its first task: the scheduler's pid (it dies with it), the
    scheduler's import path (so a trainer or plugin the scheduler can import is found), the
    trainer and where data, cache and models are."""

    parent: int
    sys_path: list[str]
    trainer: str
    data_dir: Path | None
    cache_dir: Path | None
    models_dir: Path | None


def resolve_trainer(path: str) -> Callable[..., Any]:
    """'module:function' to the trainer function (picklable by name, so workers can find it)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class DataCache:
    """Datasets loaded by this process, keyed by what makes them differ."""

    def __init__(self, data_dir: Path | None, cache_dir: Path | None) -> None:
        self.data_dir, self.cache_dir = data_dir, cache_dir
        self._loaded: dict[str, Splits] = {}

    def get(self, spec: RunSpec) -> Splits:
        protocol = spec.protocol
        key = f"{protocol.dataset}|{sorted(protocol.dataset_options.items())}|{spec.seed}"
        if key not in self._loaded:  # keep one: memory stays flat
            self._loaded = {key: load_splits(protocol, spec.seed, self.data_dir, self.cache_dir)}
        return self._loaded[key]


def load_splits(
    protocol: Protocol, seed: int, data_dir: Path | None, cache_dir: Path | None
) -> Splits:
    """The protocol's dataset, split for `seed`, read from `data_dir` through `cache_dir`."""
    from regbench.plugins.manager import registry

    dataset = registry().get("datasets", protocol.dataset)
    options = {**protocol.dataset_options, "data_dir": data_dir, "cache_dir": cache_dir}
    return dataset.load(seed, options)


def exit_when_orphaned(parent: int) -> None:
    """Die with the parent: a killed scheduler must leave no worker behind."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def serve(tasks_fd: int, reports_fd: int) -> None:
    """The worker process's entry point: read the setup from the task pipe, then serve."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (Slurm signals the whole process group)
    inbox = Connection(tasks_fd, writable=False)
    outbox = Connection(reports_fd, readable=False)
    try:
        setup: Setup = inbox.recv()
    except (EOFError, OSError):  # the parent went away before sending anything
        os._exit(1)
    sys.path[:] = setup.sys_path
    worker_main(setup, inbox, outbox)


def worker_main(setup: Setup, inbox: Connection, outbox: Connection) -> None:
    """Serve tasks from `inbox` until it yields None (or the parent is gone); report
    ('ready'|'start'|'progress'|'memory'|'result', payload) on `outbox`, its own pipe."""
    threading.Thread(target=exit_when_orphaned, args=(setup.parent,), daemon=True).start()
    train = resolve_trainer(setup.trainer)
    data = DataCache(setup.data_dir, setup.cache_dir)
    sending = threading.Lock()  # a plugin may report progress from a thread of its own

    def report(kind: str, payload: Any) -> None:
        with sending:
            try:
                outbox.send((kind, payload))
            except OSError:  # the parent closed its end (it stopped the grid): nobody listens
                os._exit(1)

    report("ready", None)  # started: a run timeout counts from here, not from the launch

    while (task := _next_task(inbox)) is not None:
        for spec in task:
            report("start", spec.run_id)
        for result in train_task(task, train, data, setup.models_dir, partial(_progress, report)):
            if (rss := resident_bytes()) is not None:
                report("memory", rss)  # the parent recycles a worker that grew
            report("result", result)
    outbox.close()  # every message is in the pipe: sends return once written
    os._exit(0)  # skip the interpreter's teardown: with TensorFlow loaded it took 1.5 s


def _progress(report: Callable[[str, Any], None], info: dict[str, Any]) -> None:
    """An epoch's progress, or the event that a run's training started (its own message:
    the parent times the run from it)."""
    from regbench.engine.outcome import TRAINING  # here: a worker starts with few imports

    if info.get("event") == TRAINING:
        report("training", info["run_id"])
    else:
        report("progress", info)


def _next_task(inbox: Connection) -> list[RunSpec] | None:
    """The next task; None when told to stop, or when the parent closed its end (it died)."""
    try:
        return inbox.recv()
    except (EOFError, OSError):
        return None


def train_task(
    task: list[RunSpec],
    train: Callable[..., Any],
    data: DataCache,
    models_dir: Path | None,
    progress: Callable[[dict[str, Any]], None],
) -> Iterator[Any]:
    """The results of one task: its runs one by one, or its pack together (vmapped)."""
    if task[0].execution.engine == "vmapped":
        from regbench.engine.vmapped import train_pack

        yield from train_pack(task, data.get, models_dir, progress)
        return
    for spec in task:
        yield train(spec, lambda spec=spec: data.get(spec), models_dir, progress)


def resident_bytes() -> int | None:
    """This process's resident memory (Linux /proc; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":  # run as a script: serve from the module proper, not __main__
    from regbench.engine.worker import serve as _serve

    _serve(int(sys.argv[1]), int(sys.argv[2]))
