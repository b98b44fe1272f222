"""CIFAR-10, the lab's dataset: found on disk or in the Keras cache, read safely, cached as .npy.

The original archive (`cifar-10-python.tar.gz`) holds Python-2 pickles. Unpickling runs code
named in the file, so a tampered copy could run anything; these files are read with an
unpickler that only rebuilds numpy arrays and refuses every other global.
"""

from __future__ import annotations

import os
import pickle
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from regbench.errors import RegbenchError
from regbench.plugins.datasets import SPLIT_SCHEME, Dataset, Splits, cached_arrays, lab_split

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
BATCH_FILES = (*TRAIN_FILES, TEST_FILE)
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"

# Where Keras puts CIFAR-10 under <keras home>/datasets: Keras 3 extracts into
# cifar-10-batches-py-target/ and keeps the download as cifar-10-batches-py-target_archive;
# Keras 2 used cifar-10-batches-py/ and cifar-10-batches-py.tar.gz.
KERAS_FOLDERS = (f"cifar-10-batches-py-target/{FOLDER}", FOLDER)
KERAS_ARCHIVES = ("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz", ARCHIVE)

# Everything a failed read of a pickle or tar can raise short of a refusal (RegbenchError).
_READ_ERRORS = (
    EOFError,
    pickle.UnpicklingError,
    tarfile.TarError,
    zlib.error,
    struct.error,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    MemoryError,
)


def _reconstruct() -> Callable[..., Any]:
    import importlib

    try:
        module = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # older numpy only has numpy.core
        module = importlib.import_module("numpy.core.multiarray")
    reconstruct: Callable[..., Any] = module._reconstruct
    return reconstruct


class _Refused(Exception):
    """An allowed global called in a way plain data never needs."""


def _latin1_encode(text: object, encoding: object = "utf-8", *rest: object) -> bytes:
    """Python 3 pickles bytes (protocol < 3) as `_codecs.encode(text, "latin1")`: only that."""
    if rest or not isinstance(text, str) or str(encoding).lower() not in _LATIN1:
        raise _Refused(f"_codecs.encode with {str(encoding)[:40]!r}")
    return text.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    """Python 3 pickles b"" (protocol < 3) as `bytes()`: nothing else is allowed through."""
    if args:
        raise _Refused("bytes() with arguments")
    return b""


_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1"}
_RECONSTRUCT = _reconstruct()
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class DataUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only; any other global is refused, never imported."""

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _refusal(self.where, f"{module}.{name}"[:120]) from None


def _refusal(where: str, asked: str) -> RegbenchError:
    return RegbenchError(
        f"cifar-10 file {where} is not a plain data pickle (it asks for {asked}); "
        "refusing to load it"
    )


def unpickle(stream: IO[bytes], where: str) -> Any:
    """One CIFAR-10 pickle, read with `DataUnpickler`; unreadable files name themselves."""
    try:
        return DataUnpickler(stream, where).load()
    except _Refused as refused:
        raise _refusal(where, str(refused)) from None
    except _READ_ERRORS as error:
        raise _unreadable(where, error) from None


def _unreadable(where: str, error: BaseException) -> RegbenchError:
    reason = " ".join(str(error).split())[:160] or type(error).__name__
    return RegbenchError(
        f"cifar-10 file {where} is truncated or unreadable ({reason}); "
        f"delete it and download CIFAR-10 again ({HOME_PAGE})"
    )


def _corrupt(where: str, detail: str) -> RegbenchError:
    return RegbenchError(
        f"cifar-10 file {where} is corrupt or not a CIFAR-10 batch ({detail}); "
        f"download CIFAR-10 again ({HOME_PAGE})"
    )


def _field(record: dict[Any, Any], key: str) -> Any:
    for candidate in (key.encode(), key):
        if candidate in record:
            return record[candidate]
    return None


def parse_batch(record: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels int64 from one unpickled batch, checked first
    so a wrong file fails here with its name rather than later with a shape error."""
    if not isinstance(record, dict):
        raise _corrupt(where, f"a {type(record).__name__}, not a dict")
    data, labels = _field(record, "data"), _field(record, "labels")
    if not isinstance(data, np.ndarray):
        raise _corrupt(where, "no data array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) == 0:
        raise _corrupt(where, f"data is {data.dtype} {data.shape}, not uint8 (N, 3072)")
    if not isinstance(labels, list | np.ndarray):
        raise _corrupt(where, "no list of labels")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(data) or y.dtype.kind not in "iu":
        raise _corrupt(where, f"{len(data)} images but labels {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() > 9:
        raise _corrupt(where, f"labels outside 0..9 ({y.min()}..{y.max()})")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int64)


def parse_meta(record: object, where: str) -> tuple[str, ...]:
    """The ten class names from batches.meta."""
    names = _field(record, "label_names") if isinstance(record, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise _corrupt(where, "no list of 10 label_names")
    try:
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except UnicodeDecodeError:
        raise _corrupt(where, "label_names are not text") from None


@dataclass(frozen=True)
class CifarSource:
    """Where the batches are: an extracted folder, or the tar archive (read in place)."""

    path: Path
    is_archive: bool

    def cache_key(self) -> dict[str, Any]:
        """Identifies this copy (path, sizes, mtimes) so an edited copy is parsed again."""
        if self.is_archive:
            files = [self.path]
        else:
            files = [self.path / n for n in (*BATCH_FILES, META_FILE) if (self.path / n).exists()]
        stats = []
        for file in files:
            stat = file.stat()
            stats.append([file.name, stat.st_size, stat.st_mtime_ns])
        return {"name": "cifar10", "format": 1, "source": str(self.path.resolve()), "files": stats}

    def members(self) -> Iterator[tuple[str, str, IO[bytes]]]:
        """(file name, where for messages, stream) for each CIFAR-10 file in the source."""
        wanted = {*BATCH_FILES, META_FILE}
        if not self.is_archive:
            for name in sorted(wanted):
                file = self.path / name
                if file.is_file():
                    where = str(file)
                    try:
                        handle = file.open("rb")
                    except OSError as error:
                        raise _unreadable(where, error) from None
                    with handle:
                        yield name, where, handle
            return
        try:
            # Stream mode: members are read in order straight from the gzip, nothing is
            # extracted to disk (so no path in the archive can write anywhere).
            with tarfile.open(self.path, "r|*") as archive:
                for member in archive:
                    name = member.name.rsplit("/", 1)[-1]
                    if name not in wanted or not member.isfile():
                        continue
                    wanted.discard(name)
                    stream = archive.extractfile(member)
                    if stream is not None:
                        yield name, f"{self.path}:{member.name}", stream
        except _READ_ERRORS as error:
            raise _unreadable(str(self.path), error) from None


def read_cifar(source: CifarSource) -> dict[str, np.ndarray]:
    """All batches of one copy as uint8 NHWC arrays (what the cache stores)."""
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: tuple[str, ...] = CLASS_NAMES
    for name, where, stream in source.members():
        record = unpickle(stream, where)
        if name == META_FILE:
            names = parse_meta(record, where)
        else:
            batches[name] = parse_batch(record, where)
    missing = [n for n in BATCH_FILES if n not in batches]
    if missing:
        raise RegbenchError(
            f"CIFAR-10 at {source.path} is incomplete (no {', '.join(missing)}); "
            f"download it again ({HOME_PAGE})"
        )
    return {
        "x_train": np.concatenate([batches[n][0] for n in TRAIN_FILES]),
        "y_train": np.concatenate([batches[n][1] for n in TRAIN_FILES]),
        "x_test": np.ascontiguousarray(batches[TEST_FILE][0]),
        "y_test": batches[TEST_FILE][1],
        "class_names": np.array(names, dtype=str),
    }


def keras_datasets_dir() -> Path:
    """Keras's download cache: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME")
    return (Path(home) if home else Path.home() / ".keras") / "datasets"


def _folder(path: Path, complete: bool) -> Path | None:
    present = [(path / n).is_file() for n in BATCH_FILES]
    return path if (all(present) if complete else any(present)) else None


def source_in(path: Path, complete: bool = False) -> CifarSource | None:
    """The CIFAR-10 copy at `path`: the batches folder, a folder holding it (or the archive),
    or the archive file itself. `complete` skips folders missing a batch."""
    if path.is_file():
        return CifarSource(path, is_archive=True)
    if not path.is_dir():
        return None
    for folder in (path, *(path / f for f in KERAS_FOLDERS)):
        if _folder(folder, complete):
            return CifarSource(folder, is_archive=False)
    for archive in (ARCHIVE, *KERAS_ARCHIVES):
        if (path / archive).is_file():
            return CifarSource(path / archive, is_archive=True)
    return None


def find_cifar(data_dir: Path | None) -> CifarSource | None:
    """The copy to read: --data-dir if given (and it must hold CIFAR-10), else Keras's cache."""
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.exists():
            raise RegbenchError(f"--data-dir {data_dir} does not exist")
        source = source_in(data_dir)
        if source is None:
            raise RegbenchError(
                f"--data-dir {data_dir} holds no CIFAR-10: give the {FOLDER} folder "
                f"(data_batch_1..5, test_batch), a folder containing it, or {ARCHIVE}"
            )
        return source
    datasets = keras_datasets_dir()
    if not datasets.is_dir():
        return None
    return source_in(datasets, complete=True)


def download_with_keras() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Have Keras download CIFAR-10 into its cache (the only step that needs the network)."""
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return x_train, y_train, x_test, y_test


def _offline_error(error: BaseException) -> RegbenchError:
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return RegbenchError(
        f"CIFAR-10 is not on this machine and the download failed ({reason}); "
        f"pass --data-dir PATH to the {FOLDER} folder or {ARCHIVE} (from {HOME_PAGE}), "
        f"put it in the Keras cache {keras_datasets_dir()}, or go online so Keras can download it"
    )


def _nhwc(images: np.ndarray) -> np.ndarray:
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[3] != 3:
        images = images.transpose(0, 2, 3, 1)  # Keras configured channels_first
    return np.ascontiguousarray(images, dtype=np.uint8)


def load_arrays(data_dir: Path | None, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """CIFAR-10 as uint8 arrays from the first place that has it, downloading as a last resort;
    parsed copies are cached so later runs skip the pickles."""
    source = find_cifar(data_dir)
    if source is None:
        try:
            x_train, y_train, x_test, y_test = download_with_keras()
        except Exception as error:  # offline, no Keras, bad download: all mean "get it yourself"
            raise _offline_error(error) from None
        source = find_cifar(None)
        if source is None:  # Keras kept it elsewhere (e.g. /tmp/.keras): use what it returned
            return {
                "x_train": _nhwc(x_train),
                "y_train": np.asarray(y_train, dtype=np.int64).reshape(-1),
                "x_test": _nhwc(x_test),
                "y_test": np.asarray(y_test, dtype=np.int64).reshape(-1),
                "class_names": np.array(CLASS_NAMES, dtype=str),
            }
    return cached_arrays(cache_dir, source.cache_key(), lambda: read_cifar(source))


class Cifar10(Dataset):
    name = "cifar10"
    description = "CIFAR-10 32x32 colour images, 10 classes (the lab's: half of train, test halved)"
    option_names = ()
    split_scheme = SPLIT_SCHEME

    def load(self, seed: int, options: Mapping[str, Any]) -> Splits:
        arrays = self._arrays(options)
        names = tuple(str(n) for n in arrays["class_names"])
        return lab_split(
            arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], seed, names
        )

    def input_shape(self, options: Mapping[str, Any]) -> tuple[int, int, int]:
        """Found, parsed (or read from the cache) and checked, without scaling 60,000 images."""
        height, width, channels = self._arrays(options)["x_train"].shape[1:]
        return int(height), int(width), int(channels)

    def _arrays(self, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        data_dir = options.get("data_dir")
        cache_dir = options.get("cache_dir")
        return load_arrays(
            Path(data_dir) if data_dir is not None else None,
            Path(cache_dir) if cache_dir is not None else None,
        )
