"""Each extra does what it says: counts, losses, layers and callbacks checked one by one."""

from __future__ import annotations

import numpy as np
import pytest
from regbench.engine.models import build_model, count_params
from regbench.plugins.keras import import_keras
from regbench.plugins.points import BRANCH, Point
from regbench.plugins.regularizer import OptimizerSpec

from regbench_extras.architectures import VGG_MINI
from regbench_extras.regularizers import (
    L1,
    L1L2,
    Augment,
    EarlyStopping,
    GaussianNoise,
    LabelSmoothing,
    SpatialDropout,
    WeightDecay,
)

keras = import_keras()
MAPS, VECTOR = Point("maps", "maps"), Point("vector", "vector")


def _layer_types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def _vgg_mini_params(height: int, width: int, channels: int, classes: int) -> int:
    """By hand: a 3x3 conv has 9*in*out weights + out biases; 'same' padding keeps the size."""
    conv = 9 * channels * 32 + 32 + 9 * 32 * 32 + 32 + 9 * 32 * 64 + 64 + 9 * 64 * 64 + 64
    flat = (height // 4) * (width // 4) * 64
    return conv + flat * 128 + 128 + 128 * classes + classes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shape", "classes"), [((32, 32, 3), 10), ((28, 28, 1), 10), ((17, 9, 3), 2)]
)
def test_vgg_mini_parameter_count(shape, classes) -> None:
    model = build_model(VGG_MINI, L1(), input_shape=shape, classes=classes)
    expected = _vgg_mini_params(*shape, classes)
    assert count_params(model) == {
        "total_params": expected,
        "trainable_params": expected,
        "non_trainable_params": 0,
    }


def test_vgg_mini_default_count_matches_its_description() -> None:
    assert _vgg_mini_params(32, 32, 3, 10) == 591_274
    assert "591,274" in VGG_MINI.description
    assert [p.kind for p in VGG_MINI.points] == ["maps", "maps", "vector"]


def test_spatial_dropout_only_at_maps_and_drops_whole_channels() -> None:
    reg = SpatialDropout()
    assert reg.layers_at(VECTOR, {"rate": 0.5}) == []
    model = build_model(VGG_MINI, reg, {"rate": 0.5})
    assert _layer_types(model).count("SpatialDropout2D") == 2
    (layer,) = reg.layers_at(MAPS, {"rate": 0.5})
    out = keras.ops.convert_to_numpy(layer(np.ones((4, 5, 5, 16), "float32"), training=True))
    per_channel = out.reshape(4, 25, 16)
    assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))  # a channel is kept or not
    assert 0 < np.count_nonzero(per_channel[:, 0, :] == 0) < 64


def test_gaussian_noise_at_every_point_in_training_only() -> None:
    reg = GaussianNoise()
    assert _layer_types(build_model(VGG_MINI, reg)).count("GaussianNoise") == 3
    (layer,) = reg.layers_at(VECTOR, {"stddev": 0.5})
    x = np.zeros((64, 256), "float32")
    assert np.array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    noisy = keras.ops.convert_to_numpy(layer(x, training=True))
    assert noisy.std() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("reg", [L1(), L1L2()], ids=lambda r: r.name)
def test_kernel_penalties_add_one_loss_per_kernel(reg) -> None:
    params = reg.resolve({})
    model = build_model(VGG_MINI, reg, params, seed=0)
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 6 == len(model.losses)  # four convs, Dense 128, the classifier
    l1 = params.get("l1", params.get("strength"))
    l2 = params.get("l2", 0.0)
    for kernel, loss in zip(kernels, model.losses, strict=True):
        w = keras.ops.convert_to_numpy(kernel)
        expected = l1 * np.abs(w).sum() + l2 * np.square(w).sum()
        assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_label_smoothing_loss() -> None:
    plain = keras.losses.SparseCategoricalCrossentropy()
    y = np.array([0, 2])
    confident = np.array([[0.98, 0.01, 0.01], [0.01, 0.01, 0.98]], "float32")
    smoothed = LabelSmoothing().loss({"smoothing": 0.1}, plain)
    targets = np.full((2, 3), 0.1 / 3)
    targets[[0, 1], [0, 2]] += 0.9
    by_hand = np.mean(-(targets * np.log(confident)).sum(axis=-1))
    assert float(smoothed(y, confident)) == pytest.approx(by_hand, rel=1e-5)
    assert float(smoothed(y, confident)) > 10 * float(plain(y, confident))  # overconfidence costs
    unsmoothed = LabelSmoothing().loss({"smoothing": 0.0}, plain)
    assert float(unsmoothed(y, confident)) == pytest.approx(float(plain(y, confident)), rel=1e-5)
    restored = type(smoothed).from_config(smoothed.get_config())
    assert restored.smoothing == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_sets_the_optimizer(name: str) -> None:
    spec = WeightDecay().optimizer({"decay": 1e-3}, OptimizerSpec(name, {"learning_rate": 0.05}))
    assert spec == OptimizerSpec(name, {"learning_rate": 0.05, "weight_decay": 1e-3})
    optimizer = keras.optimizers.get({"class_name": spec.name, "config": dict(spec.kwargs)})
    assert optimizer.weight_decay == pytest.approx(1e-3)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


@pytest.mark.slow
def test_early_stopping_callback_stops_after_patience() -> None:
    (callback,) = EarlyStopping().callbacks({"patience": 2})
    assert isinstance(callback, keras.callbacks.EarlyStopping)
    assert (callback.monitor, callback.patience, callback.restore_best_weights) == (
        "val_loss",
        2,
        True,
    )
    model = build_model(VGG_MINI, EarlyStopping(), input_shape=(8, 8, 3), classes=2, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x, y = np.zeros((4, 8, 8, 3), "float32"), np.zeros((4, 2), "float32")
    history = model.fit(x, y, validation_data=(x, y), epochs=10, callbacks=[callback], verbose=0)
    assert len(history.history["val_loss"]) == 3  # no improvement after the first: 1 + patience


def test_augment_changes_images_in_training_only() -> None:
    model = build_model(VGG_MINI, Augment(), {"translation": 0.2}, seed=0)
    assert _layer_types(model)[:2] == ["RandomFlip", "RandomTranslation"]
    augment = keras.Sequential(Augment().input_layers({"translation": 0.2}))
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    assert np.array_equal(keras.ops.convert_to_numpy(augment(x, training=False)), x)
    trained = keras.ops.convert_to_numpy(augment(x, training=True))
    assert trained.shape == x.shape
    assert not np.allclose(trained, x)
    assert trained.min() >= 0 and trained.max() <= 1  # reflect fill and flips keep the pixels


# ---------------------------------------------------------------- seam v2 extras

from regbench.api import RunContext  # noqa: E402
from regbench.engine.context import training_progress  # noqa: E402
from regbench.engine.models import build, count_regularized_kernels  # noqa: E402
from regbench.plugins.manager import build_registry  # noqa: E402

from regbench_extras.architectures import RESNET20  # noqa: E402
from regbench_extras.layers import DropBlock as DropBlockLayer  # noqa: E402
from regbench_extras.regularizers import (  # noqa: E402
    CutMix,
    Cutout,
    DropBlock,
    Mixup,
    StochasticDepth,
)

REGISTRY = build_registry()


@pytest.mark.slow
def test_resnet20_has_the_papers_shape_and_count() -> None:
    built = build(RESNET20, REGISTRY.get("regularizers", "l2"), {}, (32, 32, 3), 10, seed=0)
    assert count_params(built.model)["total_params"] == 274_042
    assert count_regularized_kernels(built.model) == 22  # 19 convs, 2 projections, classifier
    branches = [p for p in built.points if p.meta.get("role") == "branch"]
    assert [p.meta["block"] for p in branches] == list(range(1, 10))
    assert {p.meta["blocks"] for p in branches} == {9}
    assert built.model.output.shape == (None, 10)
    deeper = build(RESNET20, REGISTRY.get("regularizers", "none"), {}, arch_params={"width": 8})
    assert count_params(deeper.model)["total_params"] < 80_000


@pytest.mark.slow
def test_stochastic_depth_follows_the_linear_decay_rule_and_skips_plain_nets() -> None:
    from regbench.design.applicability import why_not

    model = build_model(RESNET20, StochasticDepth(), {"rate": 0.9})
    rates = [layer.rate for layer in model.layers if type(layer).__name__ == "DropPath"]
    assert rates == pytest.approx([0.9 * block / 9 for block in range(1, 10)])
    assert count_params(model) == count_params(
        build_model(RESNET20, REGISTRY.get("regularizers", "none"))
    )
    model1 = REGISTRY.get("architectures", "model1")
    assert "changes nothing on model1" in why_not(model1, StochasticDepth(), {"rate": 0.5})
    assert why_not(RESNET20, StochasticDepth(), {"rate": 0.5}) is None


def _batch(reg, params, classes=4):
    rng = np.random.default_rng(0)
    images = rng.random((6, 8, 8, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, 3, 0, 1])
    targets = np.eye(classes, dtype=np.float32)[labels]
    out = reg.batch(images, targets, params, keras.random.SeedGenerator(3), RunContext())
    return images, targets, *(np.asarray(keras.ops.convert_to_numpy(t)) for t in out)


def test_mixup_blends_images_and_targets_by_the_same_lambda() -> None:
    images, targets, mixed, soft = _batch(Mixup(), {"alpha": 0.4})
    lam = soft[0, 0]  # sample 0 (class 0) mixed with sample 5 (class 1)
    assert soft[0, 1] == pytest.approx(1 - lam) and np.allclose(soft.sum(axis=1), 1)
    assert np.allclose(mixed, lam * images + (1 - lam) * images[::-1], atol=1e-6)


def test_cutmix_mixes_targets_by_the_area_pasted() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        images = rng.random((4, 16, 12, 1), dtype=np.float32) + 2.0  # never equal to its mirror
        targets = np.eye(4, dtype=np.float32)
        pasted, soft = (
            np.asarray(t)
            for t in CutMix().batch(
                images, targets, {"alpha": 1.0}, keras.random.SeedGenerator(seed), RunContext()
            )
        )
        from_other = np.mean(pasted[0] != images[0])
        assert soft[0, 0] == pytest.approx(1 - from_other, abs=1e-6)
        assert np.allclose(pasted[0][pasted[0] != images[0]], images[3][pasted[0] != images[0]])


def test_cutout_zeroes_a_square_in_training_only() -> None:
    (layer,) = Cutout().input_layers({"size": 0.5}, RunContext())
    x = np.ones((64, 16, 16, 1), "float32")
    assert np.array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    zeros = (out == 0).reshape(64, -1).mean(axis=1)
    assert zeros.max() == pytest.approx(0.25, abs=0.01) and zeros.min() > 0  # may cross the edge


def test_dropblock_ramps_with_its_own_progress_and_adds_no_weight() -> None:
    run = RunContext(progress=training_progress(4))
    first, second = (
        DropBlock().layers_at(MAPS, {"rate": 0.3, "block_size": 3}, run)[0] for _ in range(2)
    )
    assert isinstance(first, DropBlockLayer)
    assert first.progress is not second.progress  # each layer counts the steps once
    assert first.progress.total_steps == 4
    x = np.ones((8, 16, 16, 32), "float32")
    assert np.array_equal(keras.ops.convert_to_numpy(first(x, training=True)), x)  # step 0
    shares = [np.mean(keras.ops.convert_to_numpy(first(x, training=True)) == 0) for _ in range(4)]
    assert shares == sorted(shares) and 0.2 < shares[-1] < 0.4  # ramps 1/4, 2/4, 3/4, 1
    (plain,) = DropBlock().layers_at(MAPS, {"rate": 0.3, "block_size": 3}, RunContext())
    assert plain.progress is None  # outside training: the full rate from the start
    assert count_params(build_model(VGG_MINI, DropBlock())) == count_params(
        build_model(VGG_MINI, REGISTRY.get("regularizers", "none"))
    )


@pytest.mark.slow
def test_dropblock_passes_the_kits_ramp_check_on_both_architectures() -> None:
    from regbench.testing import check_ramp

    for architecture in (VGG_MINI, RESNET20):
        check_ramp(DropBlock(), architecture, input_shape=(16, 16, 3))


def test_resnet20_merges_its_blocks_at_merge_points_sized_to_the_maps() -> None:
    built = build(RESNET20, REGISTRY.get("regularizers", "none"), {}, (32, 32, 3), 10, seed=0)
    merges = [p for p in built.points if p.meta.get("role") == "merge"]
    assert [p.meta["block"] for p in merges] == list(range(1, 10))
    assert [p.shape for p in merges[::3]] == [(32, 32, 16), (16, 16, 32), (8, 8, 64)]
    assert all(p.families == {BRANCH} and p.kind == "maps" for p in merges)
    assert [type(layer).__name__ for layer in built.model.layers].count("Add") == 9
