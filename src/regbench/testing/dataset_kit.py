"""The dataset kit: `check_dataset`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from regbench.api import Dataset, Splits
from regbench.testing.backend_neutral import check_backend_neutral
from regbench.testing.probes import require


def _check_split(splits: Splits, name: str, where: str) -> None:
    """One split's images and labels: types, shapes, ranges."""
    x, y = getattr(splits, f"x_{name}"), getattr(splits, f"y_{name}")
    require(x.dtype == np.float32, f"{where}: images are {x.dtype}, not float32")
    require(
        x.ndim == 4 and x.shape[1:] == splits.x_train.shape[1:],
        f"{where}: images {x.shape}, not N x {splits.input_shape}",
    )
    require(len(x) == len(y) and len(x) > 0, f"{where}: {len(x)} images, {len(y)} labels")
    require(bool(x.min() >= 0.0 and x.max() <= 1.0), f"{where}: pixels outside [0, 1]")
    require(y.dtype == np.int64, f"{where}: labels are {y.dtype}, not int64")
    require(
        bool(y.min() >= 0 and y.max() < splits.classes),
        f"{where}: labels outside 0..{splits.classes - 1}",
    )


def check_dataset(
    dataset: Dataset, options: Mapping[str, Any] | None = None, seeds: Sequence[int] = (0, 1)
) -> None:
    """A dataset that passes loads splits of float32 NHWC images in [0, 1] and int64 labels in
    range, all splits of one image shape, at least two classes each seen in training, and the
    same splits again for the same seed."""
    label = dataset.name or type(dataset).__name__
    require(bool(dataset.name), f"{label}: no name")
    require(bool(dataset.description), f"{label}: no description for the list")
    check_backend_neutral(dataset)
    full = {"data_dir": None, "cache_dir": None, **dict(options or {})}
    for seed in seeds:
        splits = dataset.load(seed, full)
        require(isinstance(splits, Splits), f"{label}: load() must return Splits")
        again = dataset.load(seed, full)
        require(
            np.array_equal(splits.x_train, again.x_train)
            and np.array_equal(splits.y_test, again.y_test),
            f"{label}: seed {seed} gives different splits on a second load",
        )
        require(splits.classes >= 2, f"{label}: {splits.classes} class name(s)")
        for name in ("train", "val", "test"):
            _check_split(splits, name, f"{label} {name} (seed {seed})")
        seen = np.unique(splits.y_train)
        require(len(seen) == splits.classes, f"{label}: training split lacks some classes")
