"""CIFAR-10 loading: where it is found, that it round-trips, that bad files are refused."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_cifar import BATCHES, FOLDER, NAMES, FakeCifar, write_archive, write_fake_cifar

from regbench.builtins import cifar
from regbench.builtins.cifar import Cifar10, find_cifar, read_cifar
from regbench.errors import RegbenchError

PER_BATCH = 20


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test: an empty Keras cache and a download that fails instead of going online."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def no_network():
        raise OSError("network disabled in tests")

    monkeypatch.setattr(cifar, "download_with_keras", no_network)


@pytest.fixture
def fake(tmp_path) -> FakeCifar:
    return write_fake_cifar(tmp_path / "data", per_batch=PER_BATCH)


def load(data_dir: Path | None, seed: int = 0, cache_dir: Path | None = None):
    return Cifar10().load(seed, {"data_dir": data_dir, "cache_dir": cache_dir})


def check_matches(splits, fake: FakeCifar) -> None:
    """Every split image is one of the fake's images (pixel-exact) with its own label."""
    pool = {img.tobytes(): int(y) for img, y in zip(fake.x_train(), fake.y_train(), strict=True)}
    held = {img.tobytes(): int(y) for img, y in zip(fake.x_test(), fake.y_test(), strict=True)}
    for x, y, lookup in (
        (splits.x_train, splits.y_train, pool),
        (splits.x_val, splits.y_val, held),
        (splits.x_test, splits.y_test, held),
    ):
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
        as_bytes = np.rint(x * 255).astype(np.uint8)
        for img, label in zip(as_bytes, y, strict=True):
            assert lookup[img.tobytes()] == int(label)


def test_reads_channel_first_rows_as_nhwc(fake):
    arrays = read_cifar(find_cifar(fake.folder))
    assert arrays["x_train"].shape == (5 * PER_BATCH, 32, 32, 3)
    assert arrays["x_train"].dtype == np.uint8
    # image 5 of data_batch_2, row 1, column 2: R, G and B sit 1024 apart in the raw row
    raw = fake.data["data_batch_2"][5]
    pixel = arrays["x_train"][PER_BATCH + 5, 1, 2]
    assert list(pixel) == [raw[34], raw[1024 + 34], raw[2048 + 34]]
    np.testing.assert_array_equal(arrays["x_train"], fake.x_train())
    np.testing.assert_array_equal(arrays["y_train"], fake.y_train())
    np.testing.assert_array_equal(arrays["x_test"], fake.x_test())
    np.testing.assert_array_equal(arrays["y_test"], fake.y_test())
    assert tuple(arrays["class_names"]) == NAMES


@pytest.mark.parametrize("where", ["folder", "parent", "archive", "archive-parent"])
def test_loads_from_data_dir(fake, tmp_path, where):
    archive = write_archive(fake.folder, tmp_path / "dl" / "cifar-10-python.tar.gz")
    data_dir = {
        "folder": fake.folder,
        "parent": fake.root,
        "archive": archive,
        "archive-parent": archive.parent,
    }[where]
    before = sorted(p.name for p in archive.parent.iterdir())
    splits = load(data_dir)
    assert splits.sizes == {"n_train": 5 * PER_BATCH // 2, "n_val": PER_BATCH // 2, "n_test": 10}
    assert splits.input_shape == (32, 32, 3)
    assert splits.class_names == NAMES
    check_matches(splits, fake)
    assert sorted(p.name for p in archive.parent.iterdir()) == before  # nothing extracted


def test_python2_pickles_load(tmp_path):
    fake = write_fake_cifar(tmp_path / "py2", per_batch=PER_BATCH, style="py2")
    check_matches(load(fake.root), fake)
    arrays = read_cifar(find_cifar(fake.folder))
    np.testing.assert_array_equal(arrays["x_train"], fake.x_train())


def test_missing_meta_uses_standard_names(tmp_path):
    fake = write_fake_cifar(tmp_path, per_batch=PER_BATCH, meta=False)
    assert load(fake.folder).class_names == cifar.CLASS_NAMES


def test_the_training_half_depends_on_the_seed_the_test_split_does_not(fake):
    """Seeds draw which half of the training images train; the test batch is halved into
    validation and test once, for every seed (tests/test_splits.py checks it for more)."""
    first, again, other = load(fake.folder, 1), load(fake.folder, 1), load(fake.folder, 2)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.x_train, other.x_train)
    np.testing.assert_array_equal(first.x_val, other.x_val)
    np.testing.assert_array_equal(first.x_test, other.x_test)


@pytest.mark.parametrize(
    "layout",
    [
        "cifar-10-batches-py-target/cifar-10-batches-py",  # Keras 3
        "cifar-10-batches-py",  # Keras 2
        "cifar-10-batches-py-target_archive",  # Keras 3's downloaded tarball
        "cifar-10-batches-py.tar.gz",  # Keras 2's
        "cifar-10-python.tar.gz",
    ],
)
def test_finds_keras_cache(tmp_path, layout):
    datasets = tmp_path / "keras-home" / "datasets"
    if layout.endswith(FOLDER):
        fake = write_fake_cifar((datasets / layout).parent, per_batch=PER_BATCH)
    else:
        fake = write_fake_cifar(tmp_path / "elsewhere", per_batch=PER_BATCH)
        write_archive(fake.folder, datasets / layout)
    check_matches(load(None), fake)


def test_keras_cache_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME")
    fake = write_fake_cifar(tmp_path / "home" / ".keras" / "datasets", per_batch=PER_BATCH)
    check_matches(load(None), fake)


def test_incomplete_keras_folder_is_skipped_for_archive(tmp_path):
    datasets = tmp_path / "keras-home" / "datasets"
    fake = write_fake_cifar(datasets, per_batch=PER_BATCH)
    write_archive(fake.folder, datasets / "cifar-10-batches-py-target_archive")
    (fake.folder / "test_batch").unlink()  # an interrupted extraction
    check_matches(load(None), fake)


class Payload:
    """Runs a command when unpickled by an unrestricted loader."""

    def __init__(self, how: str, marker: Path):
        self.how, self.marker = how, marker

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch {self.marker}",)
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("how", ["os.system", "open"])
@pytest.mark.parametrize("inside", ["folder", "archive"])
def test_tampered_pickle_is_refused_without_running(fake, tmp_path, how, inside):
    marker = tmp_path / "pwned"
    record = {b"data": Payload(how, marker), b"labels": [0] * PER_BATCH}
    (fake.folder / "data_batch_3").write_bytes(pickle.dumps(record, protocol=2))
    target = fake.folder
    if inside == "archive":
        target = write_archive(fake.folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(RegbenchError, match="not a plain data pickle.*refusing") as error:
        load(target)
    assert "data_batch_3" in str(error.value)
    assert not marker.exists()


def test_pickle_that_builds_other_bytes_is_refused(fake):
    # the one helper Python 3 protocol-2 pickles need is allowed for latin-1 text only
    evil = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    (fake.folder / "test_batch").write_bytes(evil)
    with pytest.raises(RegbenchError, match="test_batch is not a plain data pickle.*zlib"):
        load(fake.folder)


def test_truncated_file(fake):
    batch = fake.folder / "data_batch_4"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(RegbenchError, match=r"data_batch_4 is truncated.*download") as error:
        load(fake.folder)
    assert "\n" not in str(error.value)


def test_truncated_archive(fake, tmp_path):
    archive = write_archive(fake.folder, tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(RegbenchError, match=r"cifar-10-python\.tar\.gz.*download"):
        load(archive)


def test_not_an_archive(tmp_path):
    file = tmp_path / "cifar-10-python.tar.gz"
    file.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(RegbenchError, match="cifar-10-python.tar.gz"):
        load(file)


@pytest.mark.parametrize(
    "record",
    [
        [1, 2, 3],
        {b"labels": [0] * PER_BATCH},
        {b"data": np.zeros((PER_BATCH, 3072), np.float32), b"labels": [0] * PER_BATCH},
        {b"data": np.zeros((PER_BATCH, 1024), np.uint8), b"labels": [0] * PER_BATCH},
        {b"data": np.zeros((PER_BATCH, 3072), np.uint8), b"labels": [0] * (PER_BATCH - 1)},
        {b"data": np.zeros((PER_BATCH, 3072), np.uint8), b"labels": [10] * PER_BATCH},
        {b"data": np.zeros((PER_BATCH, 3072), np.uint8), b"labels": [b"cat"] * PER_BATCH},
    ],
    ids=["list", "no-data", "float", "columns", "count", "range", "text-labels"],
)
def test_wrong_structure(fake, record):
    (fake.folder / "data_batch_1").write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(RegbenchError, match="data_batch_1 is corrupt or not a CIFAR-10 batch"):
        load(fake.folder)


def test_wrong_meta(fake):
    (fake.folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}, protocol=2))
    with pytest.raises(RegbenchError, match="batches.meta is corrupt"):
        load(fake.folder)


def test_incomplete_folder(fake):
    (fake.folder / "data_batch_5").unlink()
    with pytest.raises(RegbenchError, match="incomplete.*data_batch_5"):
        load(fake.folder)


def test_missing_data_dir(tmp_path):
    with pytest.raises(RegbenchError, match="--data-dir .*does not exist"):
        load(tmp_path / "nope")


def test_data_dir_without_cifar(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(RegbenchError, match="--data-dir .*holds no CIFAR-10"):
        load(tmp_path / "other")


def test_offline_without_data_names_the_ways_out(tmp_path):
    with pytest.raises(RegbenchError) as error:
        load(None)
    message = str(error.value)
    assert "\n" not in message
    assert "--data-dir" in message
    assert str(tmp_path / "keras-home" / "datasets") in message  # the Keras cache
    assert "go online" in message
    assert "network disabled in tests" in message


def test_download_fills_keras_cache(tmp_path, monkeypatch):
    wrote = []

    def download():  # Keras leaves the extracted batches in its cache; those are read
        datasets = tmp_path / "keras-home" / "datasets" / "cifar-10-batches-py-target"
        wrote.append(write_fake_cifar(datasets, per_batch=PER_BATCH))
        empty = np.zeros((0, 32, 32, 3), np.uint8)
        return empty, np.zeros((0, 1), np.uint8), empty, np.zeros((0, 1), np.uint8)

    monkeypatch.setattr(cifar, "download_with_keras", download)
    splits = load(None)
    assert splits.sizes["n_train"] == 5 * PER_BATCH // 2
    check_matches(splits, wrote[0])


def test_download_arrays_used_when_cache_elsewhere(tmp_path, monkeypatch):
    fake = write_fake_cifar(tmp_path / "tmp-keras", per_batch=PER_BATCH)

    def download():  # Keras's channels_first output, as load_data gives it then
        return (
            fake.x_train().transpose(0, 3, 1, 2),
            fake.y_train().astype(np.uint8).reshape(-1, 1),
            fake.x_test().transpose(0, 3, 1, 2),
            fake.y_test().astype(np.uint8).reshape(-1, 1),
        )

    monkeypatch.setattr(cifar, "download_with_keras", download)
    splits = load(None)
    check_matches(splits, fake)
    assert splits.class_names == cifar.CLASS_NAMES


def test_second_load_reads_the_cache(fake, tmp_path, monkeypatch):
    calls = []
    real_read = cifar.read_cifar

    def counting(source):
        calls.append(source)
        return real_read(source)

    monkeypatch.setattr(cifar, "read_cifar", counting)
    cache = tmp_path / "cache"
    first = load(fake.folder, cache_dir=cache)
    # corrupt a batch but keep its size and mtime: only the cache can still give the data
    batch = fake.folder / "data_batch_2"
    stat = batch.stat()
    batch.write_bytes(b"\0" * stat.st_size)
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load(fake.folder, cache_dir=cache)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert second.class_names == NAMES
    assert list(cache.glob("cifar10-*/x_train.npy"))
    with pytest.raises(RegbenchError):  # without the cache the corruption shows
        load(fake.folder)


def test_changed_source_is_parsed_again(fake, tmp_path):
    cache = tmp_path / "cache"
    load(fake.folder, cache_dir=cache)
    replacement = write_fake_cifar(tmp_path / "new", per_batch=PER_BATCH, seed=7)
    for name in BATCHES:
        target = fake.folder / name
        mtime = target.stat().st_mtime_ns
        target.write_bytes((replacement.folder / name).read_bytes())
        os.utime(target, ns=(mtime + 10**9, mtime + 10**9))
    check_matches(load(fake.folder, cache_dir=cache), replacement)


def test_import_does_not_load_keras():
    code = (
        "import sys, regbench.builtins.cifar; "
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_dataset_plugin_shape():
    dataset = Cifar10()
    assert dataset.name == "cifar10" and dataset.description and dataset.option_names == ()
