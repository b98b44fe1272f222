"""Tuning cells side by side: each cell's keras-tuner search in a worker process of its own.

The worker is `python -m regbench.engine.tuning_pool TASK REPORTS` (two pipe descriptors), as
the grid's worker is and for the same reason (multiprocessing's spawn would rerun a script's
main module). As many run at once as `plan_workers` gives the grid: a GPU each, or a share of
the cores. Every trial and the chosen best come back over the pipe the moment they are known,
and the parent records them: only the parent writes the store. A search that fails, or a
worker that dies, is that cell's error; the other cells go on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.engine.tuning import Search

if TYPE_CHECKING:
    from regbench.engine.executor import ExecutorOptions


@dataclass(frozen=True)
class _Task:
    """What a worker is sent: the scheduler's pid (it dies with it) and import path, the
    search, and where the data is."""

    parent: int
    sys_path: list[str]
    search: Search
    data_dir: Path | None
    cache_dir: Path | None


Heard = Callable[[Search, dict[str, Any]], None]


def search_in_workers(
    searches: Sequence[Search],
    options: ExecutorOptions,
    on_start: Callable[[Search, str], None],
    on_trial: Heard,
    on_best: Heard,
) -> dict[tuple[str, str], dict[str, Any] | str]:
    """Run `searches` in worker processes; each cell's best values, or its error (a string).

    `on_start` hears a cell as its worker starts (with the worker's id), `on_trial` and
    `on_best` what the searches report, in this process. Ctrl-C kills the workers; what was
    heard before it is kept by the listeners.
    """
    from regbench.engine.executor import plan_workers

    slots = [env for _, env in plan_workers(options, len(searches))]
    waiting = deque(searches)
    running: dict[Any, tuple[dict[str, str], _Worker]] = {}  # by its report pipe
    found: dict[tuple[str, str], dict[str, Any] | str] = {}
    try:
        while waiting or running:
            while waiting and len(running) < len(slots):
                busy = {id(env) for env, _ in running.values()}
                env = next(e for e in slots if id(e) not in busy)
                search = waiting.popleft()
                worker = _start(search, env, options)
                running[worker.reports] = (env, worker)
                on_start(search, worker.name)
            for reports in wait(list(running)):
                _, worker = running[reports]
                if worker.heard(on_trial, on_best, found):
                    del running[reports]
                    worker.end()
    finally:
        for _, worker in running.values():
            worker.kill()
    return found


class _Worker:
    def __init__(self, search: Search, process: subprocess.Popen, reports: Connection) -> None:
        self.search, self.process, self.reports = search, process, reports
        self.name = f"tuner pid {process.pid}"

    def heard(self, on_trial: Heard, on_best: Heard, found: dict) -> bool:
        """Pass on what the worker reported; True once its search is over."""
        cell = (self.search.arch, self.search.reg)
        try:
            while self.reports.poll():
                kind, payload = self.reports.recv()
                if kind == "trial":
                    on_trial(self.search, payload)
                elif kind == "best":
                    on_best(self.search, payload)
                else:  # "done" with the values, or "error" with its line
                    found[cell] = payload
                    return True
        except (EOFError, OSError):
            code = self.process.wait()
            found[cell] = f"the tuning worker of {cell[0]} + {cell[1]} died (exit code {code})"
            return True
        return False

    def end(self) -> None:
        self.reports.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        self.reports.close()


def _start(search: Search, env: dict[str, str], options: ExecutorOptions) -> _Worker:
    task_in, task_out = os.pipe()
    reports_in, reports_out = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "regbench.engine.tuning_pool", str(task_in), str(reports_out)],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=2,  # what a plugin prints goes with the logs: stdout is for results
            pass_fds=(task_in, reports_out),
            process_group=0,  # a terminal's Ctrl-C reaches the parent only: it decides
        )
    finally:
        os.close(task_in)
        os.close(reports_out)
    from regbench.engine.executor import absolute

    with Connection(task_out, readable=False) as task:
        where = absolute(options.data_dir), absolute(options.cache_dir)
        task.send(_Task(os.getpid(), list(sys.path), search, *where))
    return _Worker(search, process, Connection(reports_in, writable=False))


def serve(task_fd: int, reports_fd: int) -> None:
    """The worker: read its one search, run it, report, exit."""
    from regbench.engine.worker import exit_when_orphaned, load_splits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with Connection(task_fd, writable=False) as inbox:
        task: _Task = inbox.recv()
    sys.path[:] = task.sys_path
    threading.Thread(target=exit_when_orphaned, args=(task.parent,), daemon=True).start()
    outbox = Connection(reports_fd, readable=False)
    search = task.search
    try:
        from regbench.errors import RegbenchError

        data = load_splits(search.protocol, search.seed, task.data_dir, task.cache_dir)
        best = search.run(
            data,
            on_trial=lambda row: outbox.send(("trial", row)),
            on_best=lambda best: outbox.send(("best", best)),
        )
        outbox.send(("done", best))
    except RegbenchError as exc:
        outbox.send(("error", str(exc)))
    except Exception as exc:  # a plugin's bug: that cell's error, said in one line
        outbox.send(("error", f"{type(exc).__name__}: {exc}"))
    outbox.close()
    os._exit(0)  # skip the interpreter's teardown: with TensorFlow loaded it took 1.5 s


if __name__ == "__main__":  # run as a script: serve from the module proper, not __main__
    from regbench.engine.tuning_pool import serve as _serve

    _serve(int(sys.argv[1]), int(sys.argv[2]))
