"""Benchmark 1: harness overhead. The same model, data and epochs trained by regbench's trainer
and by a hand-written plain-Keras loop, alternating in one process; the ratio of fit times.

    python benchmarks/bench_overhead.py [--repeats 3] [--epochs 2] [--size 7000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _results import record

from regbench.builtins.datasets import Synthetic
from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.engine.trainer import train_run
from regbench.plugins.keras import import_keras


def plain_keras(keras, data, epochs: int, seed: int) -> float:
    """The lab's model3 + batch norm written by hand, as a notebook would; returns fit seconds."""
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=data.input_shape),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(100, activation="relu"),
            layers.BatchNormalization(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=64,
        epochs=epochs,
        validation_data=(data.x_val, data.y_val),
        verbose=0,
    )
    elapsed = time.perf_counter() - start
    keras.backend.clear_session()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=7000)
    parser.add_argument("--jit-compile", default="auto")
    args = parser.parse_args()
    keras = import_keras()
    data = Synthetic().load(0, {"size": args.size, "cache_dir": None})
    spec = RunSpec(
        arch="model3",
        reg="batchnorm",
        params={},
        seed=0,
        protocol=Protocol(dataset="synthetic", epochs=args.epochs),
        execution=Execution(jit_compile=args.jit_compile),
    )
    plain_keras(keras, data, 1, 0)  # warm-up: first graph builds are slower for both
    ratios, ours, theirs = [], [], []
    for _ in range(args.repeats):
        row = train_run(spec, lambda: data, None).row
        assert row["status"] == "ok", row.get("error")
        mine, hand = row["train_time_s"], plain_keras(keras, data, args.epochs, 0)
        ours.append(mine)
        theirs.append(hand)
        ratios.append(mine / hand)
    body = (
        f"model3 + batchnorm, {len(data.x_train)} training images, {args.epochs} epochs, "
        f"batch 64, SGD, backend {keras.backend.backend()}, jit_compile={args.jit_compile}.\n\n"
        "| repeat | regbench fit s | plain Keras fit s | ratio |\n|---|---|---|---|\n"
        + "".join(
            f"| {i + 1} | {a:.2f} | {b:.2f} | {a / b:.3f} |\n"
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
        )
        + f"\nMedian ratio regbench / plain Keras: **{statistics.median(ratios):.3f}** "
        "(target ≤ 1.02)."
    )
    record(
        f"1. Harness overhead (jit_compile={args.jit_compile})",
        "python benchmarks/bench_overhead.py " + " ".join(sys.argv[1:]),
        body,
    )


if __name__ == "__main__":
    main()
