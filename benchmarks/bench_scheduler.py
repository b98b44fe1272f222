"""Benchmark 4: scheduler overhead. Per-run cost of the local scheduler and the results store
with a trivial trainer plugin (tests/fake_trainer.py), so only regbench's own work is timed.

    python benchmarks/bench_scheduler.py [--runs 120] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _results import record

from regbench.design.plan import RunSpec
from regbench.engine.executor import ExecutorOptions, Hooks, run_with_workers
from regbench.results.store import Store

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    os.environ["PYTHONPATH"] = str(TESTS)
    specs = [RunSpec(arch="model1", reg="none", params={}, seed=seed) for seed in range(args.runs)]
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))

        def on_result(result) -> None:
            store.record_run(result.row, result.epochs)  # the parent's real work per run
            stamps.append(time.perf_counter())

        start = time.perf_counter()
        run_with_workers(
            specs,
            ExecutorOptions(trainer="fake_trainer:train", workers=args.workers),
            Hooks(on_result),
        )
        total = time.perf_counter() - start
        store.close()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    per_run = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    body = (
        f"{args.runs} runs through the local scheduler with {args.workers} worker(s) and a "
        "trainer that returns at once; each result committed to SQLite and exported to CSV "
        "by the parent.\n\n"
        f"- start-up (spawn worker, first result): {stamps[0] - start:.2f} s\n"
        f"- per run, steady state: mean **{per_run * 1000:.1f} ms**, "
        f"median {statistics.median(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms "
        "(target ≤ 50 ms)\n"
        f"- whole loop: {total:.2f} s\n"
    )
    record(
        "4. Scheduler overhead",
        "python benchmarks/bench_scheduler.py " + " ".join(sys.argv[1:]),
        body,
    )


if __name__ == "__main__":
    main()
