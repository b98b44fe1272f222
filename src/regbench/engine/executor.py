"""Executors: run a list of RunSpecs somewhere and hand each RunResult back to the parent.

The parent alone writes results (through the `on_result` callback); executors only move plain
specs out and plain results in. Each worker reports on a pipe of its own: a worker killed
mid-message (out of memory, the run timeout) breaks only its own pipe, where a shared queue's
lock would stay held and silence every other worker. Workers are plain child processes
(engine.worker), never multiprocessing's: a script without a `__main__` guard works.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from regbench.design.plan import RunSpec
from regbench.design.settings import DEFAULT_TRAINER
from regbench.engine.devices import detect_gpus, worker_env
from regbench.engine.outcome import TRAINING, RunResult, now, skipped_result
from regbench.engine.packing import ACCELERATOR_PACK, packs
from regbench.engine.worker import DataCache, Setup, resolve_trainer, train_task
from regbench.errors import STOP_REQUESTED, RegbenchError

MAX_MEMORY_GROWTH = 0.06
# A CPU worker is restarted with more threads for the last runs only when its previous run took
# this long: a fresh worker costs ~5 s (TensorFlow import, data load) on 2 cores, 2 threads save
# ~35% of a run (benchmarks/RESULTS.md), so shorter runs would lose more than they gain.
TAIL_RESTART_MIN_S = 30.0
# What a run that has not started training yet may take beyond its run timeout: importing
# Keras, loading its data, building and compiling its model (tens of seconds on a loaded machine)
WARM_UP_S = 300.0


@dataclass
class Hooks:
    """What the parent wants to hear about while a grid runs."""

    on_result: Callable[[RunResult], None]
    on_start: Callable[[str, str], None] = lambda run_id, worker: None
    on_progress: Callable[[dict[str, Any]], None] = lambda info: None


@dataclass
class ExecutorOptions:
    data_dir: Path | None = None
    cache_dir: Path | None = None
    models_dir: Path | None = None
    trainer: str = DEFAULT_TRAINER
    devices: Sequence[str] | None = None  # None: detect; [] or ["cpu"]: CPU
    per_device: int = 1
    workers: int | None = None  # CPU workers (default: one per core, at most 4)
    ray_address: str | None = None  # None: start a local Ray
    max_runs_per_worker: int | None = None  # recycle a worker after this many runs
    run_timeout: float | None = None  # seconds; a run past it is killed and recorded `timeout`
    # recycle a worker whose memory grew this share past its size after its first run
    # (None: never); keeps a worker's growth over 12 runs within 10% (benchmarks/RESULTS.md)
    max_memory_growth: float | None = MAX_MEMORY_GROWTH
    pack: int | None = None  # vmapped engine: runs per program (None: engine.executor.pack_size)


def failed_result(spec: RunSpec, error: str, worker: str = "", status: str = "failed") -> RunResult:
    """A `failed` (or `timeout`) row for a run that never reported back."""
    stamp = now()
    return RunResult(
        {
            **spec.row(),
            "status": status,
            "error": error,
            "worker": worker,
            "started_at": stamp,
            "ended_at": stamp,
        }
    )


def _epochs(hooks: Hooks) -> Callable[[dict[str, Any]], None]:
    """The progress hook, given epochs only (not the event that training started)."""
    return lambda info: None if info.get("event") == TRAINING else hooks.on_progress(info)


def run_in_process(specs: Sequence[RunSpec], options: ExecutorOptions, hooks: Hooks) -> None:
    """One run after another in this process (debugging, and the baseline for benchmarks)."""
    train = resolve_trainer(options.trainer)
    data = DataCache(options.data_dir, options.cache_dir)
    for task in group_tasks(_record_skipped(specs, hooks), pack_size(options)):
        for spec in task:
            hooks.on_start(spec.run_id, "main")
        for result in train_task(task, train, data, options.models_dir, _epochs(hooks)):
            result.row["worker"] = "main"
            hooks.on_result(result)


def group_tasks(specs: Sequence[RunSpec], pack: int | None = None) -> list[list[RunSpec]]:
    """What one worker trains at a time: a run, or a pack of runs on the vmapped engine
    (engine.packing: `pack` runs at most, None: each cell's seeds), in order of first run."""
    standard = [s for s in specs if s.execution.engine != "vmapped"]
    together = packs([s for s in specs if s.execution.engine == "vmapped"], pack)
    first = {s.run_id: k for k, s in enumerate(specs)}
    tasks = [[s] for s in standard] + together
    return sorted(tasks, key=lambda task: min(first[s.run_id] for s in task))


def pack_size(options: ExecutorOptions) -> int | None:
    """Runs per vmapped program: `options.pack`, or by default a cell's seeds on CPU and up
    to ACCELERATOR_PACK runs of one architecture on a GPU (one program keeps the GPU busy
    where several processes would take turns)."""
    if options.pack is not None:
        return options.pack
    devices = detect_gpus() if options.devices is None else list(options.devices)
    return ACCELERATOR_PACK if [d for d in devices if d != "cpu"] else None


def _record_skipped(specs: Sequence[RunSpec], hooks: Hooks) -> list[RunSpec]:
    """Report every skipped cell's row at once (nothing to train); the rest are to run."""
    for spec in specs:
        if spec.skip:
            hooks.on_result(skipped_result(spec))
    return [spec for spec in specs if not spec.skip]


def _describe_death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (killed: possibly out of memory)" if name == "SIGKILL" else ""
        return f"worker died from {name}{hint}"
    return f"worker exited with code {exitcode}"


class _Worker:
    """One worker process (`python -m regbench.engine.worker`) and its two pipes: tasks in,
    reports out. The worker holds the only writing end of its report pipe, so its death reads
    as end of file there."""

    def __init__(self, worker_id: str, env: dict[str, str], options: ExecutorOptions) -> None:
        self.id, self.env, self.runs = worker_id, env, 0
        self.task: list[RunSpec] | None = None  # the runs it is training, until each reports
        self.sent_at = 0.0  # when it was given its task
        self.ready_at: float | None = None  # when it had started (its trainer imported)
        self.training_at: float | None = None  # when its run's training started
        self.threads = int(env.get("TF_NUM_INTRAOP_THREADS", 0))  # 0: a GPU worker
        self.first_rss: int | None = None  # bytes, after its first run
        self.rss: int | None = None  # bytes, after its latest run
        self.last_seconds = 0.0  # how long its latest run took
        tasks_in, tasks_out = os.pipe()
        reports_in, reports_out = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "regbench.engine.worker", str(tasks_in), str(reports_out)],
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,  # never the terminal, nor the script on `python -`
                stdout=2,  # what a plugin prints goes with the logs: stdout is for results
                pass_fds=(tasks_in, reports_out),
                process_group=0,  # a terminal's Ctrl-C reaches the parent only: it decides
            )
        except BaseException:
            os.close(tasks_out)
            os.close(reports_in)
            raise
        finally:
            os.close(tasks_in)
            os.close(reports_out)
        _STARTED.add(self.process)
        self.inbox = Connection(tasks_out, readable=False)
        self.reports = Connection(reports_in, writable=False)
        self.post(
            Setup(
                parent=os.getpid(),
                sys_path=list(sys.path),
                trainer=options.trainer,
                data_dir=absolute(options.data_dir),
                cache_dir=absolute(options.cache_dir),
                models_dir=absolute(options.models_dir),
            )
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def receive(self) -> list[tuple[str, Any]]:
        """The (kind, payload) messages waiting on the worker's pipe; none once it is closed (a
        dead worker's message cut short is dropped: its run is recorded failed)."""
        messages = []
        try:
            while not self.reports.closed and self.reports.poll():
                messages.append(self.reports.recv())
        except (EOFError, OSError):
            self.reports.close()
        return messages

    def post(self, message: Any) -> None:
        """Send a message (the setup, a task, None: stop); a dead worker's broken pipe is
        ignored here: its death is noticed, and its task recorded, where deaths are."""
        with contextlib.suppress(OSError):
            self.inbox.send(message)

    def send(self, task: list[RunSpec]) -> None:
        self.task, self.sent_at, self.training_at = list(task), time.monotonic(), None
        self.post(task)

    def end(self, timeout: float | None = None) -> None:
        """Wait for the process to end (killing it after `timeout` seconds), release its pipes."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _STARTED.discard(self.process)
        self.reports.close()
        self.inbox.close()


# every worker process started and not yet ended: Ctrl-C can land between a worker's start and
# its bookkeeping (a recycle, a replacement), and no such worker may outlive the grid
_STARTED: set[subprocess.Popen] = set()


def absolute(path: Path | None) -> Path | None:
    """A path that means the same in a worker whatever its working folder."""
    return None if path is None else Path(path).absolute()


def check_counts(options: ExecutorOptions) -> None:
    """Refuse worker counts that would start nothing or divide a GPU by zero."""
    for flag, value in (
        ("--per-device", options.per_device),
        ("--workers", options.workers),
        ("--max-runs-per-worker", options.max_runs_per_worker),
    ):
        if value is not None and value < 1:
            raise RegbenchError(f"{flag} must be at least 1; got {value}")
    growth = options.max_memory_growth
    if growth is not None and not growth > 0:
        raise RegbenchError(f"max_memory_growth must be positive (or None: never); got {growth}")


def check_devices(options: ExecutorOptions) -> None:
    """Refuse GPUs that are not there (a typo would otherwise train on the CPU under a GPU's
    name)."""
    if options.devices:
        present = detect_gpus()
        missing = [d for d in options.devices if d != "cpu" and d not in present]
        if missing:
            raise RegbenchError(
                f"--devices {','.join(missing)}: no such GPU here (visible: "
                f"{', '.join(present) or 'none'}); leave --devices out to use what there is"
            )


def plan_workers(
    options: ExecutorOptions, runs: int | None = None
) -> list[tuple[str, dict[str, str]]]:
    """(worker id, environment) for every worker to start for `runs` runs: K per GPU, or CPU
    workers sharing the cores. No more workers than runs start, and the cores are divided among
    the workers that do start, so a 1-run grid gets every core."""
    devices = detect_gpus() if options.devices is None else list(options.devices)
    devices = [d for d in devices if d != "cpu"]
    check_counts(options)
    limit = len(devices) * options.per_device if runs is None else max(1, runs)
    if devices:
        plans = [
            (f"gpu{d}.{k}", worker_env(d, 0)) for k in range(options.per_device) for d in devices
        ]  # spread over the devices first when fewer runs than slots
        return sorted(plans[:limit])
    # one single-threaded worker per core measured 1.3x faster than one two-threaded worker
    # on 2 cores (benchmarks/bench_grid.py); beyond 4, workers mostly add memory
    count = options.workers or max(1, min(4, cpu_cores()))
    count = count if runs is None else min(count, max(1, runs))
    threads = max(1, cpu_cores() // count)
    return [(f"cpu{k}", worker_env(None, threads)) for k in range(count)]


def cpu_cores() -> int:
    """The cores this process may use (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def tail_threads(threads: int, to_start: int, alive: int, cores: int) -> int:
    """Threads for the next run on a CPU worker that has `threads`: when fewer runs are left
    to start than workers are alive, the workers that will go idle hand their cores to the
    runs still to start (the running ones finish on what they have)."""
    if threads == 0 or to_start <= 0 or to_start >= alive:
        return threads
    return max(threads, cores // to_start)


def run_with_workers(specs: Sequence[RunSpec], options: ExecutorOptions, hooks: Hooks) -> None:
    """Long-lived pinned worker processes; a dead worker's run is recorded failed and replaced."""
    specs = _record_skipped(specs, hooks)
    if not specs:
        return
    tasks = group_tasks(specs, pack_size(options))
    jax = {"KERAS_BACKEND": "jax"} if _vmapped(specs) else {}
    workers: dict[str, _Worker] = {}
    retired: list[_Worker] = []
    pending = deque(tasks)
    try:
        for wid, env in plan_workers(options, len(tasks)):
            workers[wid] = _Worker(wid, {**env, **jax}, options)
        while pending or any(w.task for w in workers.values()):
            if STOP_REQUESTED.is_set():  # a Ctrl-C that landed where it could not be raised
                raise KeyboardInterrupt
            _dispatch(workers, retired, pending, options)
            _stop_overdue(workers.values(), options.run_timeout, hooks)
            pipes = [w.reports for w in workers.values() if not w.reports.closed]
            wait(pipes, timeout=0.2)
            for wid, worker in list(workers.items()):
                for kind, payload in worker.receive():
                    _handle(kind, worker, payload, hooks)
                idle = worker.task is None and worker.alive()
                if idle and pending and _worn(worker, options):
                    workers[wid] = _recycle(worker, options)
            _replace_dead(workers, options, hooks)
    except BaseException:  # Ctrl-C, or a write that failed: stop at once, nothing to wait for
        _shutdown([*workers.values(), *retired], wait_idle=False)
        raise
    _shutdown([*workers.values(), *retired])


def _vmapped(specs: Sequence[RunSpec]) -> bool:
    """The vmapped engine trains on JAX: its workers start with that backend."""
    return any(s.execution.engine == "vmapped" for s in specs)


def _dispatch(workers: dict[str, _Worker], retired, pending: deque, options) -> None:
    """Give each idle worker the next run; retire idle workers once nothing is left to start,
    and restart one with more threads when the cores of finishing workers would go idle."""
    for wid in list(workers):
        worker = workers[wid]
        if worker.task is not None:
            continue
        if not pending:
            worker.post(None)
            retired.append(workers.pop(wid))
            continue
        threads = tail_threads(worker.threads, len(pending), len(workers), cpu_cores())
        if threads > worker.threads and worker.last_seconds >= TAIL_RESTART_MIN_S:
            env = {**worker.env, **worker_env(None, threads)}
            worker = workers[wid] = _recycle(worker, options, env)
        worker.send(pending.popleft())


def _worn(worker: _Worker, options: ExecutorOptions) -> bool:
    """Whether an idle worker should make way for a fresh process: it served its quota of
    runs, or its memory grew past the allowed share of its size after its first run."""
    limit, growth = options.max_runs_per_worker, options.max_memory_growth
    if limit and worker.runs >= limit:
        return True
    return bool(
        growth is not None
        and worker.first_rss
        and worker.rss
        and worker.rss > worker.first_rss * (1 + growth)
    )


def _handle(kind: str, worker: _Worker, payload: Any, hooks: Hooks) -> None:
    if kind == "ready":
        worker.ready_at = time.monotonic()
    elif kind == "training":
        worker.training_at = time.monotonic()
    elif kind == "start":
        hooks.on_start(payload, worker.id)
    elif kind == "memory":
        worker.rss = payload
        if worker.first_rss is None:
            worker.first_rss = payload
    elif kind == "progress":
        hooks.on_progress(payload)
    elif kind == "result" and worker.task is not None:
        ids = [spec.run_id for spec in worker.task]
        if payload.row["run_id"] not in ids:  # a late word from a replaced worker
            return
        worker.task.pop(ids.index(payload.row["run_id"]))
        if not worker.task:
            worker.task = None
            worker.runs += 1
        worker.last_seconds = float(payload.row.get("total_time_s") or 0.0)
        payload.row["worker"] = worker.id
        hooks.on_result(payload)


def _recycle(
    worker: _Worker, options: ExecutorOptions, env: dict[str, str] | None = None
) -> _Worker:
    """Stop an idle worker and start a fresh one in its place (with `env`, else the same):
    TensorFlow's memory creeps up a few MB per run in a long-lived process
    (benchmarks/RESULTS.md), a new process starts clean."""
    worker.post(None)
    worker.end(timeout=30)
    return _Worker(worker.id, env or worker.env, options)


def _stop_overdue(workers, timeout: float | None, hooks: Hooks) -> None:
    """Kill the worker of a run past `timeout` and record the run `timeout`; the dead worker
    is replaced like any other, and the grid goes on. The time counts from the run's training
    start: a worker's start (Python, imports) and a run's warm-up (Keras, its data, building
    and compiling the model; slow on a loaded machine) are not the run's. A run that has not
    started training gets WARM_UP_S more, from when it was sent or its worker had started."""
    if timeout is None:
        return
    now = time.monotonic()
    for worker in workers:
        if worker.task is None or worker.ready_at is None:
            continue
        if worker.training_at is not None:
            overdue = now - worker.training_at > timeout
        else:
            overdue = now - max(worker.sent_at, worker.ready_at) > timeout + WARM_UP_S
        if overdue:
            task, worker.task = worker.task, None
            worker.process.kill()
            worker.process.wait()
            error = f"run exceeded the run timeout of {timeout:g} s and was stopped"
            for spec in task:
                hooks.on_result(failed_result(spec, error, worker.id, status="timeout"))


def _replace_dead(workers: dict[str, _Worker], options, hooks: Hooks) -> None:
    """Record the runs a dead worker left unreported as failed and start another in its place
    (what it reported before it died is read first)."""
    for wid, worker in list(workers.items()):
        if worker.alive():
            continue
        for kind, payload in worker.receive():
            _handle(kind, worker, payload, hooks)
        if worker.task is not None:
            reason = _describe_death(worker.process.returncode)
            for spec in worker.task:
                hooks.on_result(failed_result(spec, f"{reason} during {spec.run_id}", wid))
            worker.task = None
        worker.end()
        workers[wid] = _Worker(wid, worker.env, options)


def _shutdown(workers, wait_idle: bool = True) -> None:
    """Ask idle workers to stop (kill them too unless `wait_idle`: one still starting would
    keep an interrupted grid waiting), kill busy ones (they ignore SIGTERM, which the parent
    handles), and make sure none outlives us."""
    workers = list(workers)
    for worker in workers:
        if worker.alive():
            if worker.task is None and wait_idle:
                worker.post(None)
            else:
                worker.process.kill()
    deadline = time.monotonic() + 10
    for worker in workers:
        worker.end(timeout=max(0.0, deadline - time.monotonic()))
    for process in list(_STARTED):  # started as Ctrl-C arrived: tracked nowhere else
        process.kill()
        process.wait()
        _STARTED.discard(process)
