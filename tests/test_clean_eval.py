"""Clean-data training accuracy: a fixed subset of the training images, in inference mode."""

from __future__ import annotations

import numpy as np

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
