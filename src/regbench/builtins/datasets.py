"""Built-in datasets: CIFAR-10 (the lab's), scikit-learn's digits (offline), synthetic images."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from regbench.api import hookimpl
from regbench.errors import RegbenchError
from regbench.plugins.datasets import (
    SPLIT_SCHEME,
    Dataset,
    Splits,
    cached_arrays,
    flag_option,
    pool_split,
)


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


def _defaults_left_out(
    options: Mapping[str, Any], parsed: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """`options` sorted, each of `defaults`' keys given as `parsed` has it unless it is the
    default; any other key (`data_dir`, `cache_dir`) as given."""
    out = {}
    for key in sorted(options):
        if key not in defaults:
            out[key] = options[key]
        elif parsed[key] != defaults[key]:
            out[key] = parsed[key]
    return out


class Digits(Dataset):
    name = "digits"
    description = "scikit-learn's bundled 8x8 digits (1,797 images, no network), 32x32x3 by default"
    option_names = ("native",)
    split_scheme = SPLIT_SCHEME

    def canonical_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        parsed = {"native": flag_option(options, "native")}
        return _defaults_left_out(options, parsed, {"native": False})

    def load(self, seed: int, options: Mapping[str, Any]) -> Splits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images / 16.0).astype(np.float32)[..., None]  # 8x8x1 in [0, 1]
        if not flag_option(options, "native"):
            images = np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)  # 32x32, nearest
            images = np.repeat(images, 3, axis=3)  # 3 channels, as the lab's models expect
        names = tuple(str(n) for n in bunch.target_names)
        return pool_split(images, bunch.target.astype(np.int64), seed, names)


SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "size": 1400,
    "height": 32,
    "width": 32,
    "channels": 3,
    "classes": 10,
    "noise": 0.25,
}
SYNTHETIC_LOWEST = {"size": 7, "classes": 2}  # every other whole-number option: at least 1


class Synthetic(Dataset):
    name = "synthetic"
    description = (
        "Generated class-prototype images of any shape and class count (tests, benchmarks)"
    )
    option_names = tuple(SYNTHETIC_DEFAULTS)
    split_scheme = SPLIT_SCHEME

    def canonical_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        parsed = self._parsed(options)
        return _defaults_left_out(options, parsed, SYNTHETIC_DEFAULTS)

    @staticmethod
    def _parsed(options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option typed and checked, the defaults filled in."""
        parsed: dict[str, Any] = {
            key: _int_option(options, key, default, low=SYNTHETIC_LOWEST.get(key, 1))
            for key, default in SYNTHETIC_DEFAULTS.items()
            if key != "noise"
        }
        given = options.get("noise", SYNTHETIC_DEFAULTS["noise"])
        try:
            noise = float(given)
        except (TypeError, ValueError):
            noise = -1.0
        if not 0.0 <= noise <= 10.0:  # NaN included
            raise RegbenchError(f"dataset option noise={given!r} must be in [0, 10]")
        return {**parsed, "noise": noise}

    def load(self, seed: int, options: Mapping[str, Any]) -> Splits:
        parsed = self._parsed(options)
        size, classes, noise = parsed["size"], parsed["classes"], parsed["noise"]
        shape = (parsed["height"], parsed["width"], parsed["channels"])
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
        return pool_split(arrays["x"], arrays["y"], seed, names)


@hookimpl
def register_datasets(register: Callable[[Any], None]) -> None:
    from regbench.builtins.cifar import Cifar10

    for dataset in (Cifar10(), Digits(), Synthetic()):
        register(dataset)
