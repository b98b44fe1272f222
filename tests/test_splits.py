"""One test split per dataset: the same images for every seed, none of them in any seed's
training or validation data; seeds vary the train/validation split and the initialisation."""

from __future__ import annotations

import numpy as np
import pytest
from fake_cifar import write_fake_cifar
from hypothesis import given
from hypothesis import strategies as st

from regbench.builtins.cifar import Cifar10
from regbench.builtins.datasets import Digits, Synthetic
from regbench.plugins.datasets import lab_indices, pool_indices

SEEDS = (0, 1, 2, 7, 123)


def check_one_test_split(splits_by_seed: dict[int, tuple[set, set, set]]) -> None:
    """`splits_by_seed`: seed -> (train, validation, test) as sets of whatever names an image."""
    tests = [test for _, _, test in splits_by_seed.values()]
    assert all(test == tests[0] for test in tests), "the test split changed with the seed"
    for train, val, _ in splits_by_seed.values():
        assert not tests[0] & train and not tests[0] & val
    trains = [train for train, _, _ in splits_by_seed.values()]
    assert len({frozenset(t) for t in trains}) == len(trains), "every seed trains the same data"


@given(n=st.integers(7, 3000), seeds=st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=4))
def test_a_pool_split_5_1_1_keeps_one_test_split(n, seeds):
    parts = {seed: pool_indices(n, seed) for seed in seeds}
    for train, val, test in parts.values():
        assert sorted(np.concatenate([train, val, test])) == list(range(n))  # a partition
        assert (len(train), len(val), len(test)) == (n * 5 // 7, (n - n * 5 // 7) // 2, len(test))
    tests = {frozenset(test.tolist()) for _, _, test in parts.values()}
    assert len(tests) == 1
    (test,) = tests
    for train, val, _ in parts.values():
        assert not set(train.tolist()) & test and not set(val.tolist()) & test


@given(
    n_pool=st.integers(2, 2000),
    n_held=st.integers(2, 2000),
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=4),
)
def test_the_lab_split_halves_the_held_out_data_once(n_pool, n_held, seeds):
    parts = {seed: lab_indices(n_pool, n_held, seed) for seed in seeds}
    for train, val, test in parts.values():
        assert len(set(train.tolist())) == len(train) == round(n_pool * 0.5)
        assert sorted(np.concatenate([val, test])) == list(range(n_held))
    assert len({tuple(test) for _, _, test in parts.values()}) == 1
    assert len({tuple(val) for _, val, _ in parts.values()}) == 1  # the other half, once


def test_digits_has_one_test_split_for_every_seed():
    from sklearn.datasets import load_digits

    n = len(load_digits().target)
    check_one_test_split(
        {seed: tuple(set(part.tolist()) for part in pool_indices(n, seed)) for seed in SEEDS}
    )
    loaded = {seed: Digits().load(seed, {}) for seed in (0, 1)}
    np.testing.assert_array_equal(loaded[0].x_test, loaded[1].x_test)
    np.testing.assert_array_equal(loaded[0].y_test, loaded[1].y_test)
    assert loaded[0].sizes == {"n_train": 1283, "n_val": 257, "n_test": 257}
    assert not np.array_equal(loaded[0].x_val, loaded[1].x_val)  # the seed moves validation
    images = Digits().load(0, {"native": True})
    (_, _, test) = pool_indices(n, 0)
    np.testing.assert_array_equal(images.x_test[..., 0], load_digits().images[test] / 16.0)


def test_synthetic_has_one_test_split_for_every_seed(tmp_path):
    options = {"size": 140, "height": 4, "width": 4, "cache_dir": tmp_path}
    check_one_test_split({seed: _by_content(Synthetic().load(seed, options)) for seed in SEEDS})


def test_cifar_has_one_test_split_for_every_seed(tmp_path):
    """On the fake CIFAR-10 (random images, each one unique): the lab's split, by content."""
    fake = write_fake_cifar(tmp_path, per_batch=40)
    options = {"data_dir": fake.folder, "cache_dir": None}
    splits = {seed: Cifar10().load(seed, options) for seed in SEEDS}
    check_one_test_split({seed: _by_content(s) for seed, s in splits.items()})
    first = _by_content(splits[0])
    assert all(_by_content(s)[1] == first[1] for s in splits.values())  # the other half
    assert first[1] | first[2] == {image.tobytes() for image in fake.x_test() / np.float32(255)}


def _by_content(splits) -> tuple[set[bytes], set[bytes], set[bytes]]:
    return tuple(
        {image.tobytes() for image in images}
        for images in (splits.x_train, splits.x_val, splits.x_test)
    )


@pytest.mark.parametrize("dataset", [Cifar10(), Digits(), Synthetic()])
def test_the_built_in_split_is_named(dataset):
    assert dataset.split_scheme == "fixed-test"
