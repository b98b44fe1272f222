"""Benchmark 3: memory. Resident memory after each of 12 consecutive runs in one process: the
worker's own loop (DataCache + trainer + clear_session) next to a hand-written plain-Keras loop
that frees its models the same way, each in a fresh process.

    python benchmarks/bench_memory.py [--arch model2] [--reg batchnorm] [--epochs 1] [--runs 12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import psutil
from _results import record

from regbench.engine.executor import MAX_MEMORY_GROWTH


def regbench_loop(args: argparse.Namespace) -> list[float]:
    from regbench.design.plan import Protocol, RunSpec
    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process

    samples: list[float] = []

    def on_result(result) -> None:
        assert result.row["status"] == "ok", result.row.get("error")
        samples.append(psutil.Process().memory_info().rss / 2**20)

    spec = RunSpec(
        arch=args.arch,
        reg=args.reg,
        params={},
        seed=0,
        protocol=Protocol(dataset="digits", epochs=args.epochs),
    )
    run_in_process([spec] * args.runs, ExecutorOptions(), Hooks(on_result=on_result))
    return samples


def executor_loop(args: argparse.Namespace) -> list[float]:
    """The same runs through the local executor (1 worker, default options): the RSS of the
    worker process that trained each run, read right after its result arrived."""
    from regbench.design.plan import Protocol, RunSpec
    from regbench.engine.executor import ExecutorOptions, Hooks, run_with_workers

    samples: list[float] = []

    def on_result(result) -> None:
        assert result.row["status"] == "ok", result.row.get("error")
        (worker,) = [
            c
            for c in psutil.Process().children()
            if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in c.cmdline()[-1]
        ]
        samples.append(worker.memory_info().rss / 2**20)

    specs = [
        RunSpec(
            arch=args.arch,
            reg=args.reg,
            params={},
            seed=0,
            protocol=Protocol(dataset="digits", epochs=args.epochs),
        )
    ] * args.runs
    run_with_workers(specs, ExecutorOptions(devices=[], workers=1), Hooks(on_result=on_result))
    return samples


def plain_loop(args: argparse.Namespace) -> list[float]:
    """The same model and data trained by hand, freed with clear_session + gc each time."""
    import gc

    from regbench.builtins.datasets import Digits
    from regbench.engine.models import build_model
    from regbench.plugins.keras import import_keras
    from regbench.plugins.manager import registry

    keras = import_keras()
    data = Digits().load(0, {})
    samples = []
    for _ in range(args.runs):
        model = build_model(
            registry().get("architectures", args.arch),
            registry().get("regularizers", args.reg),
            {},
            data.input_shape,
            10,
        )
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=64,
            epochs=args.epochs,
            validation_data=(data.x_val, data.y_val),
            verbose=0,
        )
        model.evaluate(data.x_test, data.y_test, verbose=0)
        del model
        keras.backend.clear_session()
        gc.collect()
        samples.append(psutil.Process().memory_info().rss / 2**20)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="model2")
    parser.add_argument("--reg", default="batchnorm")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument(
        "--child", choices=("regbench", "plain", "executor"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        loop = {"regbench": regbench_loop, "plain": plain_loop, "executor": executor_loop}[
            args.child
        ]
        print(json.dumps(loop(args)))
        return
    flags = [
        f"--arch={args.arch}",
        f"--reg={args.reg}",
        f"--epochs={args.epochs}",
        f"--runs={args.runs}",
    ]
    series = {}
    for child in ("regbench", "plain", "executor"):
        out = subprocess.run(
            [sys.executable, __file__, *flags, f"--child={child}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        series[child] = json.loads(out.strip().splitlines()[-1])
    ours, plain, pool = series["regbench"], series["plain"], series["executor"]

    def growth(values: list[float]) -> float:
        return (values[-1] - values[0]) / values[0] * 100

    body = (
        f"{args.runs} consecutive runs of {args.arch} + {args.reg}, digits, "
        f"{args.epochs} epoch(s) each, one process each column; RSS after each run.\n\n"
        "| run | regbench worker loop MiB | plain Keras loop MiB | local executor worker MiB |\n"
        "|---|---|---|---|\n"
        + "".join(
            f"| {i + 1} | {a:.0f} | {b:.0f} | {c:.0f} |\n"
            for i, (a, b, c) in enumerate(zip(ours, plain, pool, strict=True))
        )
        + "\nThe local executor's worker (defaults: it is replaced once its memory grew "
        f"{MAX_MEMORY_GROWTH:.0%} past its size after its first run): run 1 to run {args.runs} "
        f"**{growth(pool):+.1f}%**, largest {max(pool) / pool[0] * 100 - 100:+.1f}% "
        "(target ≤ 10%).\n"
        f"\nWithout recycling, run 1 to run {args.runs}: regbench loop {growth(ours):+.1f}%, "
        f"plain Keras {growth(plain):+.1f}%. From run 3 on: regbench "
        f"{(ours[-1] - ours[2]) / ours[2] * 100:+.1f}%, plain Keras "
        f"{(plain[-1] - plain[2]) / plain[2] * 100:+.1f}%. The creep is TensorFlow's (the plain "
        "loop shows it too), hence the recycling."
    )
    record(
        "3. Memory across consecutive runs",
        "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:]),
        body,
    )


if __name__ == "__main__":
    main()
