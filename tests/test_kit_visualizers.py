"""The visualizer kit: the built-in visualizers pass `check_visualizer`, broken ones fail."""

from __future__ import annotations

import pytest
from PIL import Image

from regbench.api import Visualizer, import_keras
from regbench.builtins.architectures import MODEL1
from regbench.plugins.manager import build_registry
from regbench.testing import check_visualizer

FAST = {"architectures": [MODEL1], "input_shapes": [(16, 16, 3)]}


def _save(image, path) -> None:
    grey = (image.mean(axis=-1) * 255).astype("uint8")
    Image.fromarray(grey).save(path, format="PNG")


class Plain(Visualizer):
    """Writes the image itself: the least a visualizer can do right."""

    name = "plain"
    description = "the input image"

    def render(self, model, image, out_dir, options):
        out_dir.mkdir(parents=True, exist_ok=True)
        _save(image, out_dir / "plain.png")
        return [out_dir / "plain.png"]


class Outside(Plain):
    name = "outside"

    def render(self, model, image, out_dir, options):
        path = out_dir.parent / "outside.png"
        _save(image, path)
        return [path]


class Nothing(Plain):
    name = "nothing"

    def render(self, model, image, out_dir, options):
        out_dir.mkdir(parents=True, exist_ok=True)
        return []


class NotPng(Plain):
    name = "notpng"

    def render(self, model, image, out_dir, options):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "figure.png"
        path.write_text("not an image")
        return [path]


class Jpeg(Plain):
    name = "jpeg"

    def render(self, model, image, out_dir, options):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "figure.png"
        Image.fromarray((image * 255).astype("uint8")).save(path, format="JPEG")
        return [path]


class Missing(Plain):
    name = "missing"

    def render(self, model, image, out_dir, options):
        return [out_dir / "never-written.png"]


class Mover(Plain):
    name = "mover"

    def render(self, model, image, out_dir, options):
        kernel = model.trainable_variables[0]
        kernel.assign(import_keras().ops.zeros_like(kernel))
        return super().render(model, image, out_dir, options)


class Once(Plain):
    name = "once"

    def render(self, model, image, out_dir, options):
        if out_dir.exists():
            raise FileExistsError(out_dir)
        return super().render(model, image, out_dir, options)


def test_a_plain_visualizer_passes() -> None:
    check_visualizer(Plain(), **FAST)


@pytest.mark.parametrize(
    ("mutant", "message"),
    [
        (Outside(), "outside the output folder"),
        (Nothing(), "returned no paths"),
        (NotPng(), "not an image Pillow reads"),
        (Jpeg(), "is JPEG, not a PNG"),
        (Missing(), "does not exist"),
        (Mover(), "changed the model's weights"),
        (Once(), "render fails .*FileExistsError"),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_broken_visualizers_are_caught(mutant: Visualizer, message: str) -> None:
    with pytest.raises(AssertionError, match=f"visualizer {mutant.name} on model1.*{message}"):
        check_visualizer(mutant, **FAST)


def test_a_grey_non_square_input_is_checked() -> None:
    class ColourOnly(Plain):
        name = "colouronly"

        def render(self, model, image, out_dir, options):
            assert image.shape[-1] == 3, "colour images only"
            return super().render(model, image, out_dir, options)

    check_visualizer(ColourOnly(), **FAST)
    with pytest.raises(AssertionError, match=r"colouronly on model1 \(20x12x1\).*colour images"):
        check_visualizer(ColourOnly(), [MODEL1])


def test_not_a_visualizer_is_refused() -> None:
    with pytest.raises(AssertionError, match="does not subclass Visualizer"):
        check_visualizer(object(), **FAST)  # type: ignore[arg-type]


@pytest.mark.slow  # every installed architecture at two shapes: 15-50 s each
@pytest.mark.parametrize("name", ["featuremaps", "filters", "gradcam"])
def test_builtin_visualizers_pass(name: str) -> None:
    check_visualizer(build_registry().get("visualizers", name))
