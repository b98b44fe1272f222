"""The plain-Keras baseline a user would write: CIFAR-10 read with Keras's own batch loader from
the extracted archive, the lab's 25,000-image split, model3 + batchnorm (the Keras Sequential of
its layer table), SGD, batch 64, then a test evaluation. Run as its own process (the CLI
benchmark times it against `regbench run`).

    python benchmarks/plain_cifar.py FOLDER [--epochs 1] [--arch model3] [--reg batchnorm]

FOLDER holds cifar-10-batches-py/ (extracted from cifar-10-python.tar.gz).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--arch", default="model3")
    parser.add_argument("--reg", default="batchnorm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras.src.datasets.cifar import load_batch  # what keras.datasets.cifar10 uses

    start = time.perf_counter()
    base = os.path.join(args.folder, "cifar-10-batches-py")
    parts = [load_batch(os.path.join(base, f"data_batch_{i}")) for i in range(1, 6)]
    x_pool = np.concatenate([p[0] for p in parts]).transpose(0, 2, 3, 1)
    y_pool = np.concatenate([p[1] for p in parts])
    x_held, y_held = load_batch(os.path.join(base, "test_batch"))
    x_held, y_held = x_held.transpose(0, 2, 3, 1), np.asarray(y_held)
    rng = np.random.default_rng(args.seed)
    train = rng.permutation(len(x_pool))[: len(x_pool) // 2]
    held = rng.permutation(len(x_held))
    val, test = held[: len(held) // 2], held[len(held) // 2 :]
    x_train, y_train = x_pool[train].astype("float32") / 255, y_pool[train]
    x_val, y_val = x_held[val].astype("float32") / 255, y_held[val]
    x_test, y_test = x_held[test].astype("float32") / 255, y_held[test]
    # the same Keras Sequential regbench trains (its layer table), built with defaults
    from regbench.engine.models import build_model
    from regbench.plugins.manager import registry

    model = build_model(
        registry().get("architectures", args.arch),
        registry().get("regularizers", args.reg),
        seed=args.seed,
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print(
        f"plain keras {args.arch}+{args.reg}: test accuracy {accuracy:.4f} "
        f"({time.perf_counter() - start:.1f} s after imports)"
    )


if __name__ == "__main__":
    main()
