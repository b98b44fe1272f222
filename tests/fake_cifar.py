"""A small fake CIFAR-10 in the real archive's format, so tests never download 170 MB.

The real `cifar-10-batches-py/` files are protocol-2 pickles written by Python 2's cPickle:
dicts with byte-string keys, `data` a uint8 (N, 3072) array (1024 R, 1024 G, 1024 B per
row), `labels` a list of ints. `style="py2"` writes byte-for-byte that opcode layout (byte
strings as BINSTRING, `numpy.core.multiarray._reconstruct`); `style="py3"` writes what
Python 3's `pickle.dumps(..., protocol=2)` makes of the same dict (bytes via
`_codecs.encode`).
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-py"
BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class FakeCifar:
    """What was written: the folder and, per batch file, the raw data rows and labels."""

    folder: Path
    data: dict[str, np.ndarray]
    labels: dict[str, list[int]]
    class_names: tuple[str, ...]

    @property
    def root(self) -> Path:
        return self.folder.parent

    def x_train(self) -> np.ndarray:
        return np.concatenate([nhwc_by_hand(self.data[b]) for b in BATCHES[:5]])

    def y_train(self) -> np.ndarray:
        return np.concatenate([self.labels[b] for b in BATCHES[:5]]).astype(np.int64)

    def x_test(self) -> np.ndarray:
        return nhwc_by_hand(self.data["test_batch"])

    def y_test(self) -> np.ndarray:
        return np.asarray(self.labels["test_batch"], dtype=np.int64)


def nhwc_by_hand(rows: np.ndarray) -> np.ndarray:
    """The documented layout spelled out pixel by pixel (independent of reshape/transpose)."""
    out = np.empty((len(rows), 32, 32, 3), dtype=np.uint8)
    for channel in range(3):
        for r in range(32):
            out[:, r, :, channel] = rows[:, channel * 1024 + r * 32 : channel * 1024 + r * 32 + 32]
    return out


def _py2_string(value: bytes) -> bytes:
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(value)) + value  # BINSTRING


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _py2_value(value: object) -> bytes:
    if isinstance(value, bool):
        return b"\x88" if value else b"\x89"
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, bytes):
        return _py2_string(value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = b"".join(_py2_value(k) + _py2_value(v) for k, v in value.items())
        return b"}(" + items + b"u"
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        shape = b"(" + b"".join(_py2_int(d) for d in value.shape) + b"t"
        dtype = (
            b"cnumpy\ndtype\n" + _py2_string(b"u1") + b"K\x00K\x01\x87R"
            b"(K\x03" + _py2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        )
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
            + _py2_string(b"b")
            + b"\x87R(K\x01"
            + shape
            + dtype
            + b"\x89"
            + _py2_string(np.ascontiguousarray(value).tobytes())
            + b"tb"
        )
    raise TypeError(f"no Python-2 pickle for {type(value).__name__}")


def py2_pickle(record: dict) -> bytes:
    """`record` pickled as Python 2's cPickle.dump(record, f, 2) wrote it (no memo opcodes)."""
    return b"\x80\x02" + _py2_value(record) + b"."


def dump(record: object, style: str = "py3") -> bytes:
    if style == "py2":
        return py2_pickle(record)  # type: ignore[arg-type]
    return pickle.dumps(record, protocol=2)


def write_fake_cifar(
    root: Path,
    per_batch: int = 20,
    seed: int = 0,
    style: str = "py3",
    meta: bool = True,
    signal: float = 0.0,
) -> FakeCifar:
    """Write root/cifar-10-batches-py/ with data_batch_1..5, test_batch (and batches.meta).

    `signal` > 0 blends each image with its class's fixed random pattern (that share of it),
    so a model can learn the labels; 0 gives pure noise."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(seed + 1).integers(0, 256, (10, 3072)).astype(np.float32)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fake = FakeCifar(folder, {}, {}, NAMES if meta else ())
    for number, name in enumerate(BATCHES):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        classes = rng.integers(0, 10, per_batch)
        if signal:
            data = (signal * patterns[classes] + (1 - signal) * data).astype(np.uint8)
        labels = [int(v) for v in classes]
        label = b"training batch %d of 5" % (number + 1) if number < 5 else b"testing batch 1 of 1"
        record = {
            b"batch_label": label,
            b"labels": labels,
            b"data": data,
            b"filenames": [b"image_%05d.png" % (number * per_batch + i) for i in range(per_batch)],
        }
        (folder / name).write_bytes(dump(record, style))
        fake.data[name], fake.labels[name] = data, labels
    if meta:
        record = {
            b"num_cases_per_batch": per_batch,
            b"label_names": [n.encode() for n in NAMES],
            b"num_vis": 3072,
        }
        (folder / "batches.meta").write_bytes(dump(record, style))
    return fake


def write_archive(folder: Path, archive: Path) -> Path:
    """Pack `folder` as the real tar.gz is packed: members cifar-10-batches-py/<file>."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER, recursive=False)
        readme = b"<html>CIFAR-10</html>"
        info = tarfile.TarInfo(f"{FOLDER}/readme.html")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=f"{FOLDER}/{file.name}")
    return archive
