"""Built-in datasets: CIFAR-10 (the lab's), scikit-learn's digits (offline), synthetic images."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from regbench.api import hookimpl
from regbench.errors import RegbenchError
from regbench.plugins.datasets import Dataset, Splits, cached_arrays, flag_option, lab_split


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int = 1) -> int:
    value = options.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RegbenchError(f"dataset option {key}={value!r} is not a whole number") from None
    if number < low:
        raise RegbenchError(f"dataset option {key}={value!r} must be at least {low}")
    return number


# bytes per image value while synthetic images are made (float64 noise, float32 copies)
SYNTHETIC_BYTES_PER_VALUE = 32


def available_memory() -> int | None:
    """Bytes this machine can still give a process (Linux's MemAvailable, within a cgroup v2
    limit); None where that cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            found = [line.split()[1] for line in meminfo if line.startswith("MemAvailable:")]
        free = int(found[0]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = int((cgroup / "memory.max").read_text())
        return min(free, limit - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):  # no cgroup v2 limit ("max", or none at all)
        return free


def check_fits(nbytes: float, what: str, remedy: str) -> None:
    """Refuse, before allocating, what cannot fit in the memory available: a too large array
    is otherwise a traceback, or the out-of-memory killer's silent SIGKILL."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise RegbenchError(
            f"{what} needs about {_size(nbytes)} of memory; {_size(free)} is available; {remedy}"
        )


def _size(nbytes: float) -> str:
    units = ("bytes", "KB", "MB", "GB", "TB", "PB", "EB")
    power = min(int(math.log10(max(nbytes, 1)) // 3), len(units) - 1)
    return f"{nbytes / 1000**power:.1f} {units[power]}"


def _five_one_one(x: np.ndarray, y: np.ndarray, seed: int, names: tuple[str, ...]) -> Splits:
    """Split one pool 5/1/1 (train/val/test) with a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = len(x) * 5 // 7
    pool, held = order[:n_train], order[n_train:]
    return lab_split(x[pool], y[pool], x[held], y[held], seed, names, keep=1.0)


class Digits(Dataset):
    name = "digits"
    description = "scikit-learn's bundled 8x8 digits (1,797 images, no network), 32x32x3 by default"
    option_names = ("native",)

    def load(self, seed: int, options: Mapping[str, Any]) -> Splits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images / 16.0).astype(np.float32)[..., None]  # 8x8x1 in [0, 1]
        if not flag_option(options, "native"):
            images = np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)  # 32x32, nearest
            images = np.repeat(images, 3, axis=3)  # 3 channels, as the lab's models expect
        names = tuple(str(n) for n in bunch.target_names)
        return _five_one_one(images, bunch.target.astype(np.int64), seed, names)


class Synthetic(Dataset):
    name = "synthetic"
    description = (
        "Generated class-prototype images of any shape and class count (tests, benchmarks)"
    )
    option_names = ("size", "height", "width", "channels", "classes", "noise")

    def load(self, seed: int, options: Mapping[str, Any]) -> Splits:
        size = _int_option(options, "size", 1400, low=7)
        shape = (
            _int_option(options, "height", 32),
            _int_option(options, "width", 32),
            _int_option(options, "channels", 3),
        )
        classes = _int_option(options, "classes", 10, low=2)
        try:
            noise = float(options.get("noise", 0.25))
        except (TypeError, ValueError):
            noise = -1.0
        if not 0.0 <= noise <= 10.0:
            raise RegbenchError(f"dataset option noise={options.get('noise')!r} must be in [0, 10]")
        check_fits(
            (size * math.prod(shape) + classes * math.prod(shape)) * SYNTHETIC_BYTES_PER_VALUE,
            f"synthetic images of {size} x {shape[0]}x{shape[1]}x{shape[2]}",
            "choose a smaller size, height, width or channels (--dataset-option)",
        )
        key = {
            "name": "synthetic",
            "size": size,
            "shape": shape,
            "classes": classes,
            "noise": noise,
        }

        def produce() -> dict[str, np.ndarray]:
            rng = np.random.default_rng(0)  # the data itself is fixed; the seed drives the split
            prototypes = rng.random((classes, *shape), dtype=np.float32)
            labels = rng.integers(0, classes, size)
            jitter = rng.normal(0.0, noise, (size, *shape)).astype(np.float32)
            images = np.clip(prototypes[labels] + jitter, 0.0, 1.0)
            return {"x": images.astype(np.float32), "y": labels.astype(np.int64)}

        arrays = cached_arrays(options.get("cache_dir"), key, produce)
        names = tuple(f"class{i}" for i in range(classes))
        return _five_one_one(arrays["x"], arrays["y"], seed, names)


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    from regbench.builtins.cifar import Cifar10

    for dataset in (Cifar10(), Digits(), Synthetic()):
        register(dataset)
