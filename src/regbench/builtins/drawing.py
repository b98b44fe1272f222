"""Figure plumbing the built-in visualizers share: Agg figures saved as PNG, colour scales
that say what they clip, the input image as a panel, and tensors as arrays to draw.

matplotlib is used through `Figure` and the Agg canvas only (no pyplot, no interactive
backend, no global figure state), and imported only when a figure is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from regbench.plugins.keras import import_keras

SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"  # red positive, blue negative, white zero
HEATMAP_CMAP = "inferno"
PERCENTILES = (1.0, 99.0)


def agg_figure(
    figsize: tuple[float, float], layout: Literal["constrained", "tight"] | None = "constrained"
) -> Any:
    """A Figure on the Agg canvas: never touches pyplot or an interactive backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, facecolor="white")
    return path


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor or variable as float32 numpy, on any backend."""
    keras = import_keras()
    if keras.backend.backend() == "tensorflow" and hasattr(tensor, "numpy"):
        # keras.ops.convert_to_numpy goes through np.array(), which makes NumPy 2 warn about
        # TensorFlow's __array__ on every call; .numpy() is the same copy without the noise.
        return np.asarray(tensor.numpy(), dtype=np.float32)
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float32)


def is_diverging(layer_type: str, values: np.ndarray) -> bool:
    """Whether a layer's output needs a colour map centred on zero.

    Normalization layers are centred by design even when, untrained, they happen to output only
    non-negative values; any other layer is diverging as soon as it outputs a negative value.
    """
    return "Normalization" in layer_type or bool(np.size(values) and np.min(values) < 0)


def color_limits(values: np.ndarray, diverging: bool) -> tuple[float, float]:
    """Robust (1st-99th percentile) colour limits for all of a layer's values; symmetric if
    diverging. Outliers beyond them saturate, and the colorbar's arrows say so."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (-1.0, 1.0) if diverging else (0.0, 1.0)
    low, high = np.percentile(finite, PERCENTILES)
    if diverging:
        limit = max(abs(low), abs(high)) or float(np.max(np.abs(finite))) or 1.0
        return -float(limit), float(limit)
    if high <= low:
        high = max(float(np.max(finite)), low + max(abs(low) * 1e-3, 1e-6))
    return float(low), float(high)


def colorbar_extend(values: np.ndarray, vmin: float, vmax: float) -> str:
    """The colorbar arrows that honestly mark values clipped by the colour limits."""
    below = bool(np.size(values) and np.nanmin(values) < vmin)
    above = bool(np.size(values) and np.nanmax(values) > vmax)
    return {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
        (below, above), "both"
    )


def square_grid(count: int) -> tuple[int, int]:
    """Rows and columns of a square-ish grid: 64 -> 8x8, 32 -> 6x6, 10 -> 3x4."""
    cols = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    return rows, cols


def show_image(ax, image: np.ndarray) -> None:
    """The input as the model sees it: RGB(A) in colour, anything else as its gray mean."""
    if image.shape[-1] in (3, 4):
        ax.imshow(np.clip(image[..., :3], 0.0, 1.0), interpolation="nearest")
    else:
        gray = image.mean(axis=-1)
        ax.imshow(gray, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def shape_text(shape: Sequence[int]) -> str:
    return "\u00d7".join(str(int(d)) for d in shape)
