"""The visualizer plugin kind: draw what a trained model does with one image.

A visualizer gets the model, one image already at the model's input size and an output folder,
and writes PNG files. Keras and matplotlib are imported only inside functions, so listing
plugins never pays for TensorFlow.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regbench.errors import RegbenchError
from regbench.plugins.files import IMAGE_LIMIT, check_regular
from regbench.plugins.keras import import_keras

DEFAULT_LAYERS = 4


class Visualizer:
    """A way of drawing a model's view of one image.

    `render` receives `image` as one HxWxC float32 array in [0, 1] at the model's input size;
    `options` may hold `layers` (int, default 4), `class_names` (sequence of str), `label`
    (the image's class index, or None), `title` (a prefix for figure titles) and `dpi`.
    It returns the PNG paths it wrote, creating `out_dir` if needed.
    """

    name: str = ""
    description: str = ""

    def render(
        self, model: Any, image: np.ndarray, out_dir: Path, options: Mapping[str, Any]
    ) -> list[Path]:
        """Draw `image` as seen by `model` into `out_dir`; return the files written."""
        raise NotImplementedError


def check_image(image: np.ndarray, model: Any | None = None) -> np.ndarray:
    """The image as float32 HxWxC, refused with one clear line if it cannot feed `model`."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise RegbenchError(f"a visualizer needs one HxWxC image; got shape {array.shape}")
    if model is not None:
        expected = tuple(model.input_shape[-3:])
        if tuple(array.shape) != expected:
            raise RegbenchError(
                f"image is {'x'.join(map(str, array.shape))} but the model takes "
                f"{'x'.join(map(str, expected))}; load it with load_image(path, input_shape)"
            )
    return array


def load_image(path: str | Path, input_shape: Sequence[int]) -> np.ndarray:
    """Read any image Pillow knows, as float32 HxWxC in [0, 1] at the model's input size.

    Transparent pixels are laid on white, the photo is turned upright by its EXIF tag, the
    colours become RGB or grayscale as the input's channel count needs, and the picture is
    stretched (not cropped) to HxW, as the lab's resize did.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    height, width, channels = (int(d) for d in tuple(input_shape)[-3:])
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise RegbenchError(f"cannot feed an image to a model with {channels} input channels")
    path = Path(path)
    check_regular(path, "image", IMAGE_LIMIT, "give an image file")
    try:
        with warnings.catch_warnings():  # a picture past Pillow's pixel limit is refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                picture = ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RegbenchError(
            f"image {path}: too many pixels to open safely ({exc}); use a smaller picture"
        ) from None
    except FileNotFoundError:
        raise RegbenchError(f"image {path}: no such file") from None
    except IsADirectoryError:
        raise RegbenchError(f"image {path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise RegbenchError(f"image {path}: not an image format Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's "broken file"s
        raise RegbenchError(f"image {path}: cannot be read ({exc})") from None

    if channels != 4 and ("A" in picture.getbands() or "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        picture = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture.alpha_composite(rgba)
    picture = picture.convert(modes[channels])
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    return np.clip(array, 0.0, 1.0)


def layer_outputs(model: Any, image: np.ndarray, count: int | None = None) -> list[tuple[Any, Any]]:
    """(layer, output) for the first `count` layers (all if None), in inference mode.

    The layers are called one by one rather than through `model.input`, which a Keras 3
    Sequential model does not always have; this works on every backend. Outputs keep the
    batch axis of one.
    """
    keras = import_keras()
    x = keras.ops.convert_to_tensor(check_image(image)[None])
    if not isinstance(model, keras.Sequential):  # a graph (skips, branches): run it whole
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        layers = layers[: None if count is None else max(int(count), 0)]
        probe = keras.Model(model.inputs, [layer.output for layer in layers])
        outputs = probe(x, training=False)
        return list(zip(layers, outputs if isinstance(outputs, list) else [outputs], strict=True))
    results = []
    for layer in model.layers[: None if count is None else max(int(count), 0)]:
        x = layer(x, training=False)
        results.append((layer, x))
    return results


def class_name(index: int, names: Sequence[str] | None) -> str:
    """A class's name when the dataset gave names, else 'class N'."""
    if names is not None and 0 <= index < len(names):
        return str(names[index])
    return f"class {index}"
