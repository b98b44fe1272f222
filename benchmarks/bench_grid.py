"""Benchmark 2: grid throughput. The lab's 12-cell grid run in-process, with 1 worker and with
2 workers, each from the command line as a user would (worker start-up included).

    python benchmarks/bench_grid.py [--epochs 2] [--dataset digits]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _results import record

GRID = ["--arch", "model1,model2,model3", "--reg", "none,l2,dropout,batchnorm"]


def timed_grid(extra: list[str], dataset: str, epochs: int, out: str) -> float:
    command = [
        sys.executable,
        "-m",
        "regbench",
        "run",
        *GRID,
        "--dataset",
        dataset,
        "--epochs",
        str(epochs),
        "--out",
        out,
        *extra,
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"grid failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    variants = [
        ("in-process", ["--executor", "inprocess"]),
        ("1 worker", ["--workers", "1"]),
        ("2 workers (1 thread each)", ["--workers", "2"]),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in variants:
            seconds = timed_grid(extra, args.dataset, args.epochs, f"{tmp}/{len(rows)}")
            rows.append((name, seconds))
            print(f"{name}: {seconds:.1f} s", flush=True)
    base = rows[0][1]
    body = (
        f"12 cells (model1-3 x none/l2/dropout/batchnorm), {args.dataset}, "
        f"{args.epochs} epochs, wall time of the whole command.\n\n"
        "| executor | wall s | runs/min | vs in-process |\n|---|---|---|---|\n"
        + "".join(f"| {n} | {s:.1f} | {12 / s * 60:.1f} | {base / s:.2f}x |\n" for n, s in rows)
    )
    record(
        "2. Grid throughput on CPU",
        "python benchmarks/bench_grid.py " + " ".join(sys.argv[1:]),
        body,
    )


if __name__ == "__main__":
    main()
