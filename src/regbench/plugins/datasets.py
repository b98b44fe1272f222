"""What a dataset plugin returns, the lab's 5/1/1 split, and the on-disk array cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from regbench.errors import RegbenchError
from regbench.plugins.files import expanded

log = logging.getLogger("regbench")


@dataclass(frozen=True)
class Splits:
    """Train/validation/test arrays: images float32 NHWC in [0, 1], labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        height, width, channels = (int(d) for d in self.x_train.shape[1:])
        return height, width, channels

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.x_train), "n_val": len(self.x_val), "n_test": len(self.x_test)}


UNNAMED_SPLIT = "unnamed"  # a dataset that names no split scheme, and runs from before schemes


class Dataset:
    """A dataset plugin: `load` returns the splits for one seed.

    `options` holds `data_dir` and `cache_dir` (Path or None) and plugin-specific keys
    given on the command line as `--dataset-option key=value`.

    The test split must be the same images for every seed, none of them in any seed's
    training or validation data: seeds vary the train/validation split and the
    initialisation only (`lab_split` and `pool_split` do this).
    """

    name: str = ""
    description: str = ""
    option_names: tuple[str, ...] = ()
    # The name of how `load` splits the data, part of every run's identity: give a new name
    # when the split changes, so runs of the old split are not taken for runs of the new.
    split_scheme: str = UNNAMED_SPLIT

    def load(self, seed: int, options: Mapping[str, Any]) -> Splits:
        raise NotImplementedError

    def canonical_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """`options` (command-line strings or TOML values) in the one spelling a run's
        identity records: each parsed to its type, those equal to their default left out
        (`native=false` and no option are one experiment), sorted by name; raises
        RegbenchError for a value the dataset refuses. `load` must accept what this returns.
        The default keeps the values as given (sorted): a plugin with typed options
        overrides it."""
        return {key: options[key] for key in sorted(options)}

    def input_shape(self, options: Mapping[str, Any]) -> tuple[int, int, int]:
        """The images' (height, width, channels); raises RegbenchError when the data is
        missing or unreadable. A grid asks once before any run starts, so that bad data fails
        with one line. The default loads seed 0's splits; a dataset that can answer without
        preparing every image overrides it."""
        return self.load(0, options).input_shape


TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def parse_flag(value: Any, label: str) -> bool:
    """A boolean setting or option, strictly: a bool or one of the yes/no words (`maybe` is
    refused, never read as false)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise RegbenchError(f"{label} must be true or false; got {value!r}")


def flag_option(options: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """A dataset's boolean option (`--dataset-option native=true`), refused unless it is one."""
    return parse_flag(options.get(key, default), f"dataset option {key}")


def check_options(dataset: Dataset, options: Mapping[str, Any]) -> None:
    """Refuse options the dataset does not know, listing the ones it does."""
    unknown = sorted(set(options) - set(dataset.option_names) - {"data_dir", "cache_dir"})
    if unknown:
        valid = ", ".join(dataset.option_names) or "none"
        raise RegbenchError(
            f"dataset {dataset.name!r} has no option {unknown[0]!r} (its options: {valid})"
        )


SPLIT_SEED = 0  # the one seed that draws every test split: the same test images for all seeds
SPLIT_SCHEME = "fixed-test"  # the scheme of `lab_split` and `pool_split` (Dataset.split_scheme)


def lab_indices(
    n_pool: int, n_held: int, seed: int, keep: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indices of the lab's split: a seeded random `keep` share of
    the pool (indices into it) for training; the held-out data (indices into it) halved into
    validation and test once, the same way for every seed."""
    train = np.random.default_rng(seed).permutation(n_pool)[: int(round(n_pool * keep))]
    held = np.random.default_rng(SPLIT_SEED).permutation(n_held)
    return train, held[: n_held // 2], held[n_held // 2 :]


def pool_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indices of one pool split 5/1/1: the test seventh drawn once,
    the same for every seed; the rest split into training and validation by the seed."""
    n_train = n * 5 // 7
    n_test = n - n_train - (n - n_train) // 2
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    test, rest = order[:n_test], order[n_test:]
    rest = rest[np.random.default_rng(seed).permutation(len(rest))]
    return rest[:n_train], rest[n_train:], test


def lab_split(
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_held: np.ndarray,
    y_held: np.ndarray,
    seed: int,
    class_names: tuple[str, ...],
    keep: float = 0.5,
) -> Splits:
    """The lab's split (`lab_indices`): a seeded `keep` share of the pool for training,
    held-out data halved into validation and test. uint8 images are scaled to [0, 1]."""
    train, val, test = lab_indices(len(x_pool), len(x_held), seed, keep)
    return _splits((x_pool[train], y_pool[train]), (x_held, y_held), val, test, class_names)


def pool_split(x: np.ndarray, y: np.ndarray, seed: int, class_names: tuple[str, ...]) -> Splits:
    """One pool split 5/1/1 (`pool_indices`). uint8 images are scaled to [0, 1]."""
    train, val, test = pool_indices(len(x), seed)
    return _splits((x[train], y[train]), (x, y), val, test, class_names)


def _splits(
    train: tuple[np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray],
    val: np.ndarray,
    test: np.ndarray,
    class_names: tuple[str, ...],
) -> Splits:
    (x_train, y_train), (x_held, y_held) = train, held
    return Splits(
        to_unit(x_train),
        y_train.astype(np.int64),
        to_unit(x_held[val]),
        y_held[val].astype(np.int64),
        to_unit(x_held[test]),
        y_held[test].astype(np.int64),
        class_names,
    )


def to_unit(images: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1] (uint8 divided by 255; floats passed through)."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32, copy=False)


def default_cache_dir() -> Path:
    """$REGBENCH_CACHE, or ~/.cache/regbench; an empty $REGBENCH_CACHE is refused (it would
    cache into whatever folder the command runs in)."""
    chosen = os.environ.get("REGBENCH_CACHE")
    if chosen is None:
        return Path.home() / ".cache" / "regbench"
    if not chosen.strip():
        raise RegbenchError("REGBENCH_CACHE is set but empty; unset it or name a folder")
    return expanded(chosen, "REGBENCH_CACHE")


def cached_arrays(
    cache_dir: Path | None,
    key: Mapping[str, Any],
    produce: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Arrays from the cache folder for `key`, or `produce()`d and written there atomically."""
    if cache_dir is None:
        return produce()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    folder = Path(cache_dir) / f"{key.get('name', 'data')}-{digest[:16]}"
    if (folder / "done").exists():
        try:
            return _read_cache(folder)
        except (OSError, ValueError, EOFError) as exc:
            log.warning(
                "regbench: the dataset cache %s is damaged (%s); discarded and rebuilt",
                folder,
                " ".join(str(exc).split())[:200],
            )
            _discard(folder)
    arrays = produce()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
        for name, array in arrays.items():
            np.save(staging / f"{name}.npy", array, allow_pickle=False)
        done = {
            "key": key,
            "arrays": sorted(arrays),
            "shapes": {name: [list(a.shape), a.dtype.str] for name, a in arrays.items()},
        }
        (staging / "done").write_text(json.dumps(done, sort_keys=True, default=str))
        try:
            staging.rename(folder)
        except OSError:  # another process cached it first
            for p in staging.iterdir():
                p.unlink()
            staging.rmdir()
    except OSError:
        pass  # an unwritable cache only costs speed
    return arrays


def _read_cache(folder: Path) -> dict[str, np.ndarray]:
    """The cached arrays; raises ValueError when one is missing, truncated or not plain
    numbers (object arrays would need unpickling, which is never done)."""
    done = json.loads((folder / "done").read_text())
    # mapped, not read: a check of the data touches only the headers
    arrays = {p.stem: np.load(p, allow_pickle=False, mmap_mode="r") for p in folder.glob("*.npy")}
    expected = done.get("arrays") if isinstance(done, dict) else None
    if isinstance(expected, list) and sorted(arrays) != sorted(expected):
        missing = sorted(set(expected) - set(arrays))
        raise ValueError(f"missing {', '.join(missing) or 'arrays'}")
    shapes = done.get("shapes") if isinstance(done, dict) else None
    for name, array in arrays.items():
        if array.dtype.kind not in "biufU":  # numbers, and text such as class names
            raise ValueError(f"{name}.npy holds {array.dtype} values")
        if isinstance(shapes, dict) and shapes.get(name) != [list(array.shape), array.dtype.str]:
            raise ValueError(f"{name}.npy is {array.shape} {array.dtype}, not what was cached")
    for part in ("", "_train", "_val", "_test"):  # images and labels (a cache from before
        x, y = arrays.get(f"x{part}"), arrays.get(f"y{part}")  # shapes were recorded too)
        if x is not None and y is not None and (x.ndim != 4 or y.ndim != 1 or len(x) != len(y)):
            raise ValueError(f"x{part}.npy {x.shape} does not match y{part}.npy {y.shape}")
    return arrays


def _discard(folder: Path) -> None:
    """Move a damaged cache entry out of the way, then delete it (best effort)."""
    import shutil

    trash = folder.with_name(f".discarded-{folder.name}-{os.getpid()}")
    try:
        folder.rename(trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)
