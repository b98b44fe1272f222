"""The visualizer plugin kind: feature maps, filters and Grad-CAM figures, and load_image."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from regbench.builtins.drawing import DIVERGING_CMAP, SEQUENTIAL_CMAP
from regbench.builtins.gradcam import gradcam
from regbench.builtins.visualizers import featuremap_figure, filters_figure, gradcam_figure
from regbench.engine.models import build_model
from regbench.errors import RegbenchError
from regbench.plugins.manager import build_registry
from regbench.plugins.visualizers import Visualizer, layer_outputs, load_image

ARCHITECTURES = ("model1", "model2", "model3")
REGULARIZERS = ("none", "l2", "dropout", "batchnorm")
VISUALIZERS = ("featuremaps", "filters", "gradcam")
FAST = {"dpi": 30}  # small PNGs: the tests check content, not looks
CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@cache
def registry():
    return build_registry()


@cache
def model(architecture: str, regularizer: str):
    """Untrained, seeded models, built once per module (building takes ~0.3 s)."""
    reg = registry()
    return build_model(
        reg.get("architectures", architecture), reg.get("regularizers", regularizer), seed=0
    )


def random_image(seed: int = 0, shape: tuple[int, int, int] = (32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def panels(figure, prefix: str) -> list:
    return [ax for ax in figure.axes if ax.get_label().startswith(prefix)]


def colorbars(figure) -> list:
    return [ax for ax in figure.axes if ax.get_label() == "colorbar"]


def assert_non_blank(path: Path) -> None:
    assert path.is_file() and path.suffix == ".png"
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 10, f"{path.name} looks blank"


# ---------------------------------------------------------------- registry and imports


def test_builtins_are_registered_visualizers():
    for name in VISUALIZERS:
        visualizer = registry().get("visualizers", name)
        assert isinstance(visualizer, Visualizer)
        assert visualizer.name == name and visualizer.description
    assert registry().get("visualizers", "grad-cam").name == "gradcam"


def test_importing_visualizers_loads_neither_keras_nor_matplotlib():
    code = (
        "import sys, regbench.plugins.visualizers, regbench.builtins.visualizers\n"
        "import regbench.builtins.drawing, regbench.builtins.gradcam\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- feature maps


def test_featuremap_figure_has_one_panel_per_channel_on_one_scale():
    activation = np.maximum(random_image(1, (30, 30, 64)) - 0.3, 0)  # ReLU-like
    figure = featuremap_figure(random_image(), activation, layer_name="conv2d", layer_type="Conv2D")
    channels = panels(figure, "channel ")
    assert len(channels) == 64
    assert len(panels(figure, "input")) == 1
    images = [ax.get_images()[0] for ax in channels]
    limits = {image.get_clim() for image in images}
    assert len(limits) == 1
    assert {image.get_cmap().name for image in images} == {SEQUENTIAL_CMAP}
    (bar,) = colorbars(figure)
    vmin, vmax = limits.pop()
    assert vmin == pytest.approx(0.0) and 0 < vmax <= activation.max()
    # The colorbar shows exactly the panels' scale.
    assert bar.get_ylim() == pytest.approx((vmin, vmax))
    # 64 channels make an 8x8 grid: 8 distinct column and row positions.
    assert len({round(ax.get_position().x0, 4) for ax in channels}) == 8
    assert len({round(ax.get_position().y0, 4) for ax in channels}) == 8
    assert "conv2d" in figure.get_suptitle() and "Conv2D" in figure.get_suptitle()


def test_batchnorm_output_uses_a_diverging_map_with_symmetric_limits_even_if_positive():
    activation = random_image(2, (13, 13, 64))  # untrained batch norm: all non-negative
    figure = featuremap_figure(
        random_image(), activation, layer_name="bn", layer_type="BatchNormalization"
    )
    images = [ax.get_images()[0] for ax in panels(figure, "channel ")]
    assert {image.get_cmap().name for image in images} == {DIVERGING_CMAP}
    (vmin, vmax), *rest = {image.get_clim() for image in images}
    assert not rest and vmin == pytest.approx(-vmax) and vmax > 0


def test_any_layer_with_negative_output_is_diverging():
    activation = random_image(3, (15, 15, 10)) - 0.5
    figure = featuremap_figure(random_image(), activation, layer_name="x", layer_type="Conv2D")
    channels = panels(figure, "channel ")
    assert len(channels) == 10
    vmin, vmax = channels[0].get_images()[0].get_clim()
    assert vmin == pytest.approx(-vmax)
    assert channels[0].get_images()[0].get_cmap().name == DIVERGING_CMAP


def test_vector_outputs_are_drawn_as_one_strip():
    figure = featuremap_figure(
        random_image(), random_image(4, (100,)), layer_name="dense", layer_type="Dense"
    )
    assert len(panels(figure, "vector")) == 1 and not panels(figure, "channel ")


def test_layer_outputs_of_model3_batchnorm_are_conv_pool_conv_batchnorm():
    outputs = layer_outputs(model("model3", "batchnorm"), random_image(), 4)
    assert [type(layer).__name__ for layer, _ in outputs] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "BatchNormalization",
    ]
    assert [tuple(out.shape) for _, out in outputs] == [
        (1, 30, 30, 64),
        (1, 15, 15, 64),
        (1, 13, 13, 64),
        (1, 13, 13, 64),
    ]


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_featuremaps_render_writes_one_png_per_layer(tmp_path):
    visualizer = registry().get("visualizers", "featuremaps")
    paths = visualizer.render(model("model3", "batchnorm"), random_image(), tmp_path / "new", FAST)
    # Keras numbers layer names per session (conv2d, conv2d_1, ...), so match the stems only.
    stems = ("conv2d", "max_pooling2d", "conv2d", "batch_normalization")
    assert len(paths) == 4
    for index, (path, stem) in enumerate(zip(paths, stems, strict=True), start=1):
        assert path.name.startswith(f"featuremaps_{index:02d}_{stem}")
    for path in paths:
        assert_non_blank(path)
    # Options may come from a command line as strings.
    options = {"layers": "2", "dpi": "30"}
    two = visualizer.render(model("model1", "none"), random_image(), tmp_path, options)
    assert len(two) == 2


def test_featuremaps_refuses_bad_options_and_images(tmp_path):
    visualizer = registry().get("visualizers", "featuremaps")
    with pytest.raises(RegbenchError, match="layers"):
        visualizer.render(model("model1", "none"), random_image(), tmp_path, {"layers": 0})
    with pytest.raises(RegbenchError, match="32x32x3"):
        visualizer.render(model("model1", "none"), random_image(0, (28, 28, 3)), tmp_path, {})


# ---------------------------------------------------------------- filters


def test_filters_figure_shows_the_last_eight_of_each_layer_on_symmetric_scales():
    rng = np.random.default_rng(5)
    first = rng.normal(0, 0.1, (3, 3, 3, 64))
    second = rng.normal(0, 0.01, (3, 3, 64, 64))
    figure = filters_figure([("conv2d", first), ("conv2d_1", second)])
    shown = panels(figure, "filter ")
    assert len(shown) == 16
    assert [ax.get_label() for ax in shown[:8]] == [f"filter conv2d {i}" for i in range(56, 64)]
    assert len(colorbars(figure)) == 2
    for layer in ("conv2d ", "conv2d_1 "):
        limits = {ax.get_images()[0].get_clim() for ax in shown if layer in ax.get_label()}
        ((vmin, vmax),) = limits
        assert vmin == pytest.approx(-vmax) and vmax > 0
    image = shown[0].get_images()[0]
    assert np.allclose(image.get_array(), first[:, :, :, 56].mean(axis=2))
    assert "mean over its 3 input channels" in figure.subfigs[0].get_suptitle()
    assert "mean over its 64 input channels" in figure.subfigs[1].get_suptitle()


def test_filters_figure_shared_scale_and_single_channel():
    rng = np.random.default_rng(6)
    kernels = [("a", rng.normal(0, 0.1, (3, 3, 3, 16))), ("b", rng.normal(0, 0.01, (3, 3, 16, 4)))]
    figure = filters_figure(kernels, channel=0, shared_scale=True)
    shown = panels(figure, "filter ")
    assert len(shown) == 8 + 4
    assert len({ax.get_images()[0].get_clim() for ax in shown}) == 1
    assert np.allclose(shown[-1].get_images()[0].get_array(), kernels[1][1][:, :, 0, 3])
    with pytest.raises(RegbenchError, match="input channels"):
        filters_figure(kernels, channel=5)
    with pytest.raises(RegbenchError, match="no Conv2D"):
        filters_figure([])


@pytest.mark.slow
def test_filters_render_with_one_or_two_conv_layers(tmp_path):
    visualizer = registry().get("visualizers", "filters")
    (two,) = visualizer.render(model("model3", "none"), random_image(), tmp_path / "two", FAST)
    (one,) = visualizer.render(model("model2", "none"), random_image(), tmp_path / "one", FAST)
    assert_non_blank(two)
    assert_non_blank(one)
    assert Image.open(two).size[0] > Image.open(one).size[0]


# ---------------------------------------------------------------- Grad-CAM


def test_gradcam_heatmap_is_normalised_at_the_image_size():
    result = gradcam(model("model3", "batchnorm"), random_image(7))
    heatmap = result["heatmap"]
    assert heatmap.shape == (32, 32)
    assert heatmap.min() >= 0 and (heatmap.max() == pytest.approx(1.0) or not heatmap.any())
    assert result["coarse"].shape == (13, 13)
    assert result["layer"].startswith("conv2d")
    assert result["probs"].shape == (10,) and result["probs"].sum() == pytest.approx(1, abs=1e-4)
    assert result["target"] == result["predicted"] == int(np.argmax(result["probs"]))
    other = (result["predicted"] + 1) % 10
    assert gradcam(model("model3", "batchnorm"), random_image(7), other)["target"] == other


@pytest.mark.parametrize("target", [0, 3, 9])
def test_gradcam_matches_a_reference_computed_in_one_tape(target):
    """Same map as the textbook recipe: d logit / d last-conv maps, averaged, weighted, ReLU."""
    import tensorflow as tf

    network = model("model1", "dropout")
    image = random_image(9)
    result = gradcam(network, image, target)
    with tf.GradientTape() as tape:
        x = tf.constant(image[None])
        for layer in network.layers[:-1]:
            x = layer(x, training=False)
            if layer.name == result["layer"]:
                maps = x
                tape.watch(maps)
        last = network.layers[-1]
        logit = (tf.matmul(x, last.kernel) + last.bias)[0, target]
    weights = tf.reduce_mean(tape.gradient(logit, maps), axis=(1, 2))
    expected = tf.nn.relu(tf.reduce_sum(maps * weights[:, None, None, :], axis=-1))[0]
    assert np.allclose(result["coarse"], expected.numpy(), atol=1e-6)
    assert np.allclose(tf.nn.softmax(tf.matmul(x, last.kernel) + last.bias)[0], result["probs"])


@pytest.mark.slow
def test_grayscale_non_square_models_render(tmp_path):
    reg = registry()
    network = build_model(
        reg.get("architectures", "model3"),
        reg.get("regularizers", "batchnorm"),
        input_shape=(20, 40, 1),
        classes=4,
        seed=0,
    )
    image = random_image(10, (20, 40, 1))
    options = {**FAST, "layers": 1, "class_names": ("a", "b", "c", "d")}
    for name in VISUALIZERS:
        (path,) = reg.get("visualizers", name).render(network, image, tmp_path, options)
        assert_non_blank(path)


def test_gradcam_figure_and_render(tmp_path):
    probs = np.full(10, 0.05)
    probs[7] = 0.55
    figure = gradcam_figure(
        random_image(),
        random_image(8, (32, 32, 1))[..., 0],
        layer_name="conv2d_1",
        layer_shape=(13, 13),
        probs=probs,
        predicted=7,
        target=3,
        class_names=CIFAR,
    )
    assert [ax.get_label() for ax in figure.axes[:3]] == ["input", "heatmap", "overlay"]
    assert "horse" in figure.get_suptitle() and "55.0%" in figure.get_suptitle()
    assert "cat" in figure.get_suptitle()
    visualizer = registry().get("visualizers", "gradcam")
    options = {**FAST, "class_names": CIFAR, "label": 7, "title": "model1+l2"}
    (path,) = visualizer.render(model("model1", "l2"), random_image(), tmp_path, options)
    assert_non_blank(path)
    with pytest.raises(RegbenchError, match="out of range"):
        visualizer.render(model("model1", "l2"), random_image(), tmp_path, {"label": 10})
    with pytest.raises(RegbenchError, match="class index"):
        visualizer.render(model("model1", "l2"), random_image(), tmp_path, {"label": "horse"})


# ---------------------------------------------------------------- every model, every visualizer


@pytest.mark.slow  # ~3 s an example; the fixed tests above cover each visualizer fast
@settings(max_examples=12, deadline=None)
@given(
    architecture=st.sampled_from(ARCHITECTURES),
    regularizer=st.sampled_from(REGULARIZERS),
    seed=st.integers(0, 2**16),
    layers=st.integers(1, 2),  # each 64-panel figure costs ~0.5 s; the fixed tests draw 4
    label=st.none() | st.integers(0, 9),
)
def test_every_visualizer_renders_every_builtin_model(
    architecture, regularizer, seed, layers, label
):
    network = model(architecture, regularizer)
    options = {**FAST, "layers": layers, "label": label, "class_names": CIFAR}
    with tempfile.TemporaryDirectory() as folder:
        for name in VISUALIZERS:
            paths = (
                registry()
                .get("visualizers", name)
                .render(network, random_image(seed), Path(folder) / name, options)
            )
            assert paths and all(path.is_file() and path.stat().st_size > 0 for path in paths)
            if name == "featuremaps":
                assert len(paths) == layers


# ---------------------------------------------------------------- load_image


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_load_image_reads_and_resizes(tmp_path, suffix):
    pixels = np.zeros((60, 80, 3), dtype=np.uint8)
    pixels[:, :40] = (255, 0, 0)  # left half red, right half black
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(pixels).save(path)
    image = load_image(path, (32, 32, 3))
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image[16, 4, 0] > 0.9 and image[16, 28, 0] < 0.1
    gray = load_image(path, (28, 28, 1))
    assert gray.shape == (28, 28, 1)


def test_load_image_lays_transparency_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(path)
    assert load_image(path, (32, 32, 3)) == pytest.approx(np.ones((32, 32, 3)))


def test_load_image_refuses_missing_and_unreadable_files(tmp_path):
    with pytest.raises(RegbenchError, match="no such file"):
        load_image(tmp_path / "missing.png", (32, 32, 3))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a picture")
    with pytest.raises(RegbenchError, match="not an image"):
        load_image(junk, (32, 32, 3))
    truncated = tmp_path / "truncated.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(RegbenchError) as info:
        load_image(truncated, (32, 32, 3))
    assert "\n" not in str(info.value)


def test_layers_are_named_by_their_place_not_keras_global_counters():
    """The third model a process builds names its first convolution `conv2d_2`: figures say
    `conv2d_1`, its place among the model's Conv2D layers; a name the architecture chose
    stays."""
    from regbench.builtins.visualizers import display_name
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    for _ in range(3):
        model = keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.Conv2D(2, 3),
                keras.layers.Conv2D(2, 3),
                keras.layers.BatchNormalization(),
                keras.layers.Conv2D(2, 3, name="stem"),
            ]
        )
    names = [display_name(model, layer) for layer in model.layers]
    assert names == ["conv2d_1", "conv2d_2", "batch_normalization_1", "stem"]


def test_gradcam_names_the_true_class_beside_the_predicted_one():
    import numpy as np

    from regbench.builtins.visualizers import gradcam_figure

    figure = gradcam_figure(
        np.zeros((8, 8, 3)),
        np.zeros((8, 8)),
        layer_name="conv2d_1",
        layer_shape=(4, 4),
        probs=np.array([0.2, 0.8]),
        predicted=1,
        target=1,
        class_names=["cat", "dog"],
        true=0,
    )
    title = figure._suptitle.get_text()
    assert "true 'cat' · predicted 'dog' with p = 80.0% (wrong)" in title
