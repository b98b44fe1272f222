"""The visualizer kit: `check_visualizer` renders one image on small models of each
architecture and checks what `regbench visualize` relies on: PNG paths inside the output
folder, nothing else touched, and a second call as good as the first."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regbench.api import Architecture, RegbenchError, Visualizer, import_keras
from regbench.engine.models import build_model
from regbench.plugins.building import check_input
from regbench.plugins.manager import build_registry
from regbench.testing.probes import Baseline, InputShape, images, require

SHAPES: tuple[InputShape, ...] = ((16, 16, 3), (20, 12, 1))  # colour; grey and not square
CLASSES = 3


def kit_options(classes: int = CLASSES) -> dict[str, Any]:
    """The options `regbench visualize` may pass, small so the check stays fast."""
    names = [f"class {i}" for i in range(classes)]
    return {"layers": 2, "class_names": names, "label": 0, "title": "kit"}


def _fits(architecture: Architecture, input_shape: InputShape) -> bool:
    try:
        check_input(architecture, input_shape)
    except RegbenchError:
        return False
    return True


def _weights(model: Any) -> list[np.ndarray]:
    ops = import_keras().ops
    return [np.array(ops.convert_to_numpy(v)) for v in model.weights]


def _check_png(path: Path, out_dir: Path, label: str) -> None:
    """One returned path: an existing PNG inside `out_dir` that Pillow can read."""
    from PIL import Image, UnidentifiedImageError

    resolved = path.resolve()
    require(
        resolved.is_relative_to(out_dir.resolve()),
        f"{label}: returned {path}, outside the output folder {out_dir}",
    )
    require(resolved.is_file(), f"{label}: returned {path}, which does not exist")
    try:
        with Image.open(resolved) as picture:
            kind = picture.format
            picture.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise AssertionError(f"{label}: {path.name} is not an image Pillow reads ({exc})") from exc
    require(kind == "PNG", f"{label}: {path.name} is {kind}, not a PNG")


def _render(
    visualizer: Visualizer,
    model: Any,
    image: np.ndarray,
    out_dir: Path,
    options: Mapping[str, Any],
    label: str,
) -> list[Path]:
    """One call, its result checked: a non-empty list of PNG paths inside `out_dir`."""
    try:
        result = visualizer.render(model, image.copy(), out_dir, dict(options))
    except Exception as exc:  # the author needs the cause whatever it is
        raise AssertionError(f"{label}: render fails ({type(exc).__name__}: {exc})") from exc
    require(isinstance(result, list), f"{label}: render returned {type(result).__name__}")
    require(bool(result), f"{label}: render returned no paths")
    require(
        all(isinstance(p, str | Path) for p in result),
        f"{label}: render returned {result!r}, not paths",
    )
    paths = [Path(p) for p in result]
    for path in paths:
        _check_png(path, out_dir, label)
    return paths


def check_render(
    visualizer: Visualizer,
    architecture: Architecture,
    input_shape: InputShape,
    *,
    classes: int = CLASSES,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Two renders of one random image on an untrained model of `architecture`: each gives
    readable PNGs inside a folder it creates, and neither moves the model's weights."""
    name = visualizer.name or type(visualizer).__name__
    label = f"visualizer {name} on {architecture.name} ({'x'.join(map(str, input_shape))})"
    model = build_model(architecture, Baseline(), {}, input_shape, classes, seed=0)
    image = images(1, input_shape)[0]
    before = _weights(model)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp) / "out"
        for call in ("first", "second"):
            _render(visualizer, model, image, out_dir, options or kit_options(classes), label)
            require(
                all(np.array_equal(a, b) for a, b in zip(before, _weights(model), strict=True)),
                f"{label}: the {call} render changed the model's weights",
            )


def check_visualizer(
    visualizer: Visualizer,
    architectures: Sequence[Architecture] | None = None,
    *,
    input_shapes: Sequence[InputShape] = SHAPES,
    classes: int = CLASSES,
    options: Mapping[str, Any] | None = None,
) -> None:
    """`check_render` on every architecture given (default: all installed) at each input
    shape it takes: a colour one and a grey, non-square one."""
    require(isinstance(visualizer, Visualizer), f"{visualizer!r} does not subclass Visualizer")
    registered = build_registry().entries["architectures"].values()
    archs = [e.obj for e in registered] if architectures is None else list(architectures)
    checked = 0
    for shape in input_shapes:
        for architecture in (a for a in archs if _fits(a, shape)):
            check_render(visualizer, architecture, shape, classes=classes, options=options)
            checked += 1
    require(checked > 0, f"{visualizer.name}: no architecture takes any of {list(input_shapes)}")
