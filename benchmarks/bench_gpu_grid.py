"""Benchmark 5: the full lab grid on one GPU. 12 cells x 10 epochs x 25,000 training images of
CIFAR shape (synthetic), with 1, 2 and 4 runs packed on the device at once.

Runs on any Keras backend; on the lent GPU machine (no TensorFlow there) use JAX:

    KERAS_BACKEND=jax python benchmarks/bench_gpu_grid.py [--per-device 1,2,4] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import RESULTS, record

GRID = ["--arch", "model1,model2,model3", "--reg", "none,l2,dropout,batchnorm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-device", default="1,2,4")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=35000, help="5/7 of it is the training set")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--extra", default="", help="more `regbench run` flags")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "REGBENCH_CACHE": f"{tmp}/cache"}
        for k in [int(x) for x in args.per_device.split(",")]:
            out = f"{tmp}/grid{k}"
            command = [
                sys.executable,
                "-m",
                "regbench",
                "run",
                *GRID,
                "--dataset",
                "synthetic",
                "--dataset-option",
                f"size={args.size}",
                "--epochs",
                str(args.epochs),
                "--per-device",
                str(k),
                "--out",
                out,
                *args.extra.split(),
            ]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - start
            print(result.stdout[-3000:], result.stderr[-3000:], flush=True)
            import pandas as pd

            runs = pd.read_csv(f"{out}/runs.csv")
            ok = int((runs["status"] == "ok").sum())
            rows.append(
                (
                    k,
                    wall,
                    ok,
                    runs["train_time_s"].sum(),
                    runs["images_per_s"].median(),
                    runs["device"].iloc[0],
                    runs["backend"].iloc[0],
                )
            )
            print(f"per-device {k}: {wall:.1f} s wall, {ok}/12 ok", flush=True)
            report(rows, args)  # after every setting, so a cut-off run still leaves figures


def report(rows: list, args: argparse.Namespace) -> None:
    body = (
        f"12 cells x {args.epochs} epochs x {args.size * 5 // 7:,} training images "
        f"(synthetic, 32x32x3), batch 64, SGD; backend {rows[0][6]}, {rows[0][5]}. "
        "Wall time of the whole `regbench run` command (worker start-up, data load, "
        "compilation and evaluation included).\n\n"
        "| --per-device | wall s | ok runs | sum of fit s | median images/s per run |\n"
        "|---|---|---|---|---|\n"
        + "".join(
            f"| {k} | {w:.1f} | {ok}/12 | {fit:.1f} | {ips:,.0f} |\n"
            for k, w, ok, fit, ips, _, _ in rows
        )
        + "\nTarget: the whole grid in ≤ 60 s on one H100 (the lab: about 6 minutes on a T4)."
    )
    record(
        "5. The lab grid on one GPU",
        "KERAS_BACKEND=jax python benchmarks/bench_gpu_grid.py " + " ".join(sys.argv[1:]),
        body,
        path=args.results,
    )


if __name__ == "__main__":
    main()
