"""Benchmark 3: memory. Resident memory after each of 12 consecutive runs in one worker loop
(the same DataCache + trainer + clear_session path a worker process takes).

    python benchmarks/bench_memory.py [--arch model2] [--reg batchnorm] [--epochs 1]
"""

from __future__ import annotations

import argparse
import resource
import sys

import psutil
from _results import record

from regbench.executor import ExecutorOptions, Hooks, run_in_process
from regbench.plan import RunSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="model2")
    parser.add_argument("--reg", default="batchnorm")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    me = psutil.Process()
    samples: list[tuple[str, float, float]] = []

    def on_result(result) -> None:
        assert result.row["status"] == "ok", result.row.get("error")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        samples.append((result.row["run_id"], me.memory_info().rss / 2**20, peak))
        print(f"run {len(samples)}: rss {samples[-1][1]:.0f} MiB, peak {peak:.0f} MiB", flush=True)

    specs = [
        RunSpec(
            arch=args.arch, reg=args.reg, params={}, seed=0, dataset="digits", epochs=args.epochs
        )
        for _ in range(args.runs)
    ]
    # the same cell again and again (the store would skip repeats; this loop does not)
    run_in_process(specs, ExecutorOptions(), Hooks(on_result=on_result))
    first, last = samples[0][1], samples[-1][1]
    growth = (last - first) / first * 100
    body = (
        f"{args.runs} consecutive runs of {args.arch} + {args.reg}, digits, "
        f"{args.epochs} epoch(s) each, one process.\n\n"
        "| run | RSS MiB | peak RSS MiB |\n|---|---|---|\n"
        + "".join(
            f"| {i + 1} | {rss:.0f} | {peak:.0f} |\n" for i, (_, rss, peak) in enumerate(samples)
        )
        + f"\nGrowth of RSS from run 1 to run {args.runs}: **{growth:+.1f}%** "
        "(target ≤ 10%)."
    )
    record(
        "3. Memory across consecutive runs",
        "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:]),
        body,
    )


if __name__ == "__main__":
    main()
