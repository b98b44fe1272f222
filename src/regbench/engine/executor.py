"""Executors: run a list of RunSpecs somewhere and hand each RunResult back to the parent.

The parent alone writes results (through the `on_result` callback); executors only move plain
specs out and plain results in.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regbench.engine.devices import detect_gpus, worker_env
from regbench.engine.plan import RunSpec
from regbench.engine.trainer import RunResult, skipped_result
from regbench.engine.worker import DataCache, resolve_trainer, worker_main
from regbench.errors import RegbenchError

DEFAULT_TRAINER = "regbench.engine.trainer:train_run"


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


def failed_result(spec: RunSpec, error: str, worker: str = "", status: str = "failed") -> RunResult:
    """A `failed` (or `timeout`) row for a run that never reported back."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return RunResult(
        {
            **spec.row(),
            "status": status,
            "error": error,
            "worker": worker,
            "started_at": now,
            "ended_at": now,
        }
    )


def run_in_process(specs: Sequence[RunSpec], options: ExecutorOptions, hooks: Hooks) -> None:
    """One run after another in this process (debugging, and the baseline for benchmarks)."""
    train = resolve_trainer(options.trainer)
    data = DataCache(options.data_dir, options.cache_dir)
    for spec in _record_skipped(specs, hooks):
        hooks.on_start(spec.run_id, "main")
        result = train(
            spec, lambda spec=spec: data.get(spec), options.models_dir, hooks.on_progress
        )
        result.row["worker"] = "main"
        hooks.on_result(result)


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
    def __init__(self, ctx, worker_id: str, env: dict[str, str], outbox, options) -> None:
        self.id, self.env, self.task, self.runs = worker_id, env, None, 0
        self.sent_at = 0.0
        self.inbox = ctx.Queue()
        self.process = ctx.Process(
            target=worker_main,
            args=(
                worker_id,
                env,
                os.getpid(),
                self.inbox,
                outbox,
                options.trainer,
                options.data_dir,
                options.cache_dir,
                options.models_dir,
            ),
            daemon=True,
            name=f"regbench-{worker_id}",
        )
        self.process.start()

    def close(self) -> None:
        """Release the inbox of a worker that has ended."""
        self.inbox.close()
        self.inbox.join_thread()

    def send(self, spec: RunSpec) -> None:
        self.task, self.sent_at = spec, time.monotonic()
        self.inbox.put(spec)


def check_counts(options: ExecutorOptions) -> None:
    """Refuse worker counts that would start nothing or divide a GPU by zero."""
    for flag, value in (
        ("--per-device", options.per_device),
        ("--workers", options.workers),
        ("--max-runs-per-worker", options.max_runs_per_worker),
    ):
        if value is not None and value < 1:
            raise RegbenchError(f"{flag} must be at least 1; got {value}")


def plan_workers(options: ExecutorOptions) -> list[tuple[str, dict[str, str]]]:
    """(worker id, environment) for every worker: K per GPU, or CPU workers sharing the cores."""
    devices = detect_gpus() if options.devices is None else list(options.devices)
    devices = [d for d in devices if d != "cpu"]
    check_counts(options)
    if devices:
        return [
            (f"gpu{d}.{k}", worker_env(d, 0)) for d in devices for k in range(options.per_device)
        ]
    # one single-threaded worker per core measured 1.3x faster than one two-threaded worker
    # on 2 cores (benchmarks/bench_grid.py); beyond 4, workers mostly add memory
    count = options.workers or max(1, min(4, os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // count)
    return [(f"cpu{k}", worker_env(None, threads)) for k in range(count)]


def run_with_workers(specs: Sequence[RunSpec], options: ExecutorOptions, hooks: Hooks) -> None:
    """Long-lived pinned worker processes; a dead worker's run is recorded failed and replaced."""
    specs = _record_skipped(specs, hooks)
    if not specs:
        return
    ctx = multiprocessing.get_context("spawn")
    outbox = ctx.Queue()
    plans = plan_workers(options)
    workers = {wid: _Worker(ctx, wid, env, outbox, options) for wid, env in plans[: len(specs)]}
    pending = deque(specs)
    try:
        while pending or any(w.task for w in workers.values()):
            for worker in workers.values():
                if worker.task is None and pending:
                    worker.send(pending.popleft())
            _stop_overdue(workers.values(), options.run_timeout, hooks)
            try:
                kind, wid, payload = outbox.get(timeout=0.2)
            except queue.Empty:
                _replace_dead(ctx, workers, outbox, options, hooks)
                continue
            _handle(kind, workers[wid], payload, hooks)
            limit = options.max_runs_per_worker
            if kind == "result" and limit and workers[wid].runs >= limit and pending:
                workers[wid] = _recycle(ctx, workers[wid], outbox, options)
    finally:
        _shutdown(workers.values())


def _handle(kind: str, worker: _Worker, payload: Any, hooks: Hooks) -> None:
    if kind == "start":
        hooks.on_start(payload, worker.id)
    elif kind == "progress":
        hooks.on_progress(payload)
    elif (
        kind == "result"
        and worker.task is not None
        and (
            payload.row["run_id"] == worker.task.run_id  # not a late word from a replaced worker
        )
    ):
        worker.task = None
        worker.runs += 1
        payload.row["worker"] = worker.id
        hooks.on_result(payload)


def _recycle(ctx, worker: _Worker, outbox, options: ExecutorOptions) -> _Worker:
    """Stop an idle worker and start a fresh one in its place: TensorFlow's memory creeps up a
    few MB per run in a long-lived process (benchmarks/RESULTS.md), a new process starts clean."""
    worker.inbox.put(None)
    worker.process.join(timeout=30)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.close()
    return _Worker(ctx, worker.id, worker.env, outbox, options)


def _stop_overdue(workers, timeout: float | None, hooks: Hooks) -> None:
    """Kill the worker of a run past `timeout` and record the run `timeout`; the dead worker
    is replaced like any other, and the grid goes on."""
    if timeout is None:
        return
    now = time.monotonic()
    for worker in workers:
        if worker.task is not None and now - worker.sent_at > timeout:
            spec, worker.task = worker.task, None
            worker.process.kill()
            worker.process.join()
            error = f"run exceeded the run timeout of {timeout:g} s and was stopped"
            hooks.on_result(failed_result(spec, error, worker.id, status="timeout"))


def _replace_dead(ctx, workers: dict[str, _Worker], outbox, options, hooks: Hooks) -> None:
    for wid, worker in list(workers.items()):
        if worker.process.is_alive():
            continue
        if worker.task is not None:
            spec, reason = worker.task, _describe_death(worker.process.exitcode)
            worker.task = None
            hooks.on_result(failed_result(spec, f"{reason} during {spec.run_id}", wid))
        worker.process.join()
        worker.close()
        workers[wid] = _Worker(ctx, wid, worker.env, outbox, options)


def _shutdown(workers) -> None:
    """Ask idle workers to stop, kill busy ones (they ignore SIGTERM, which the parent
    handles), and make sure none outlives us."""
    workers = list(workers)
    for worker in workers:
        if worker.process.is_alive():
            if worker.task is None:
                worker.inbox.put(None)
            else:
                worker.process.kill()
    deadline = time.monotonic() + 10
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
