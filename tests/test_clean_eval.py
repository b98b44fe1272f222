"""Clean-data training accuracy: a fixed subset of the training images, in inference mode."""

from __future__ import annotations

import numpy as np
import pytest

from regbench.engine import clean_eval


def test_the_subset_is_fixed_and_at_most_its_size():
    x = np.arange(12000).reshape(-1, 1)
    y = np.arange(12000)
    xs, ys = clean_eval.subset(x, y)
    again, _ = clean_eval.subset(x, y)
    assert len(xs) == clean_eval.SUBSET and np.array_equal(xs, again)
    assert np.array_equal(xs[:, 0], ys)  # images keep their labels
    assert len(np.unique(ys)) == clean_eval.SUBSET and ys.min() < 1000 and ys.max() > 11000
    small, _ = clean_eval.subset(x[:300], y[:300])
    assert len(small) == 300


def test_train_metrics_are_measured_in_inference_mode():
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dropout(0.95), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = rng.integers(0, 3, 400)
    scores = clean_eval.train_metrics(model, x, y, batch_size=64)
    clean = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    assert scores["train_accuracy"] == pytest.approx(clean)
    noisy = [float(np.mean(np.argmax(model(x, training=True), axis=1) == y)) for _ in range(3)]
    assert any(abs(n - clean) > 0.01 for n in noisy)  # dropout would have changed the figure
