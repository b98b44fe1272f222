"""Input pipeline: Keras's in-memory arrays against a tf.data pipeline (shuffle, batch,
prefetch) for the same model and data, alternating in one process (TensorFlow backend).

    python benchmarks/bench_pipeline.py [--repeats 3] [--epochs 2] [--size 7000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _results import record

from regbench.builtins.datasets import Synthetic
from regbench.engine.models import build_model
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import registry


def fit_seconds(keras, data, epochs: int, pipeline: str) -> float:
    model = build_model(
        registry().get("architectures", "model3"),
        registry().get("regularizers", "batchnorm"),
        {},
        data.input_shape,
        10,
        0,
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if pipeline == "tf.data":
        import tensorflow as tf

        train = (
            tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
            .shuffle(len(data.x_train), seed=0)
            .batch(64)
            .prefetch(tf.data.AUTOTUNE)
        )
        val = (
            tf.data.Dataset.from_tensor_slices((data.x_val, data.y_val))
            .batch(64)
            .prefetch(tf.data.AUTOTUNE)
        )
        start = time.perf_counter()
        model.fit(train, epochs=epochs, validation_data=val, verbose=0)
    else:
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
    args = parser.parse_args()
    keras = import_keras()
    data = Synthetic().load(0, {"size": args.size, "cache_dir": None})
    fit_seconds(keras, data, 1, "arrays")  # warm-up
    times: dict[str, list[float]] = {"arrays": [], "tf.data": []}
    for _ in range(args.repeats):
        for pipeline in times:
            times[pipeline].append(fit_seconds(keras, data, args.epochs, pipeline))
    arrays, tfdata = statistics.median(times["arrays"]), statistics.median(times["tf.data"])
    body = (
        f"model3 + batchnorm, {len(data.x_train)} images, {args.epochs} epochs, batch 64, "
        f"backend {keras.backend.backend()}; median of {args.repeats} alternating fits.\n\n"
        "| pipeline | fit s (each) | median |\n|---|---|---|\n"
        + "".join(
            f"| {name} | {', '.join(f'{t:.2f}' for t in ts)} | {statistics.median(ts):.2f} |\n"
            for name, ts in times.items()
        )
        + f"\ntf.data / arrays = {tfdata / arrays:.3f}; the faster is regbench's default "
        "(`pipeline` column of every run)."
    )
    record("Input pipeline", "python benchmarks/bench_pipeline.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
