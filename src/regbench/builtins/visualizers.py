"""Built-in visualizers: feature maps, conv filters and Grad-CAM (the lab's part 2, and more).

Each visualizer has a module-level `*_figure` function that turns plain arrays into a matplotlib
Figure, so tests (and other tools) can inspect panels and colour scales without reading PNGs;
`render` computes the arrays from the model (Grad-CAM's in `builtins.gradcam`) and saves the
figures (through `builtins.drawing`). Registering them is this module's hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regbench.api import hookimpl
from regbench.builtins.drawing import (
    DIVERGING_CMAP,
    HEATMAP_CMAP,
    SEQUENTIAL_CMAP,
    agg_figure,
    color_limits,
    colorbar_extend,
    is_diverging,
    save_png,
    shape_text,
    show_image,
    square_grid,
    to_numpy,
)
from regbench.builtins.gradcam import gradcam
from regbench.errors import RegbenchError
from regbench.plugins.keras import import_keras
from regbench.plugins.visualizers import (
    DEFAULT_LAYERS,
    Visualizer,
    check_image,
    class_name,
    layer_outputs,
)

DEFAULT_DPI = 120
DEFAULT_FILTERS = 8


# ---------------------------------------------------------------- options


def _dpi(options: Mapping[str, Any]) -> int:
    dpi = options.get("dpi", DEFAULT_DPI)
    try:
        dpi = float(dpi)
    except (TypeError, ValueError):
        dpi = float("nan")
    if not 10 <= dpi <= 1200:
        raise RegbenchError(f"dpi={options.get('dpi')!r} must be a number between 10 and 1200")
    return int(dpi)


def _prefix(options: Mapping[str, Any]) -> str:
    title = str(options.get("title") or "").strip()
    return f"{title}: " if title else ""


def _whole(value: Any) -> int | None:
    """An int from an int or an int-like string (options may come from a command line)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        return int(value.strip())
    return None


def _options_int(options: Mapping[str, Any], key: str, default: int, low: int = 1) -> int:
    value = options.get(key)
    if value is None:
        return default
    number = _whole(value)
    if number is None or number < low:
        raise RegbenchError(f"{key}={value!r} must be a whole number of at least {low}")
    return number


def _options_flag(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


# ---------------------------------------------------------------- feature maps


def featuremap_figure(
    image: np.ndarray,
    activation: np.ndarray,
    *,
    layer_name: str,
    layer_type: str,
    position: str = "",
    title: str = "",
):
    """One layer's output for one image: channels in a square-ish grid beside the input.

    `activation` is HxWxC (feature maps, one panel per channel, axes labelled 'channel N') or
    a vector (drawn as a one-row strip, axes labelled 'vector'). All panels share one colour
    scale with one colorbar, diverging around zero where the layer can go negative. The layout
    is computed by hand: constrained layout costs a second per figure with 64 panels.
    """
    image = check_image(image)
    values = np.asarray(activation, dtype=np.float32)
    diverging = is_diverging(layer_type, values)
    vmin, vmax = color_limits(values, diverging)
    cmap = DIVERGING_CMAP if diverging else SEQUENTIAL_CMAP
    maps = values.ndim == 3 and values.shape[-1] > 0

    # Everything in inches, left to right: margin, input, gap, panels, gap, colorbar, labels.
    margin, top, bottom = 0.3, 0.85, 0.3
    side = 3.0  # the input image's longer side
    if maps:
        channels = values.shape[-1]
        rows, cols = square_grid(channels)
        height, width = values.shape[:2]
        cell = min(1.0, 8.0 / max(rows, cols))
        cell_w, cell_h = (
            (cell, cell * height / width)
            if width >= height
            else (
                cell * width / height,
                cell,
            )
        )
        gap = 0.06
        panels_w, panels_h = cols * cell_w + (cols - 1) * gap, rows * cell_h + (rows - 1) * gap
    else:
        panels_w, panels_h = 6.5, 0.9
    body_h = max(panels_h, side + 0.35)
    fig_w = margin + side + 0.45 + panels_w + 0.2 + 0.18 + 0.85
    fig_h = top + body_h + bottom + (0.45 if not maps else 0.0)
    figure = agg_figure((fig_w, fig_h), layout=None)

    def box(x: float, y: float, w: float, h: float) -> list[float]:
        """Inches from the bottom-left corner to figure fractions."""
        return [x / fig_w, y / fig_h, w / fig_w, h / fig_h]

    base = bottom + (0.45 if not maps else 0.0)
    img_h, img_w = image.shape[:2]
    in_w, in_h = (side, side * img_h / img_w) if img_w >= img_h else (side * img_w / img_h, side)
    ax_input = figure.add_axes(box(margin, base + (body_h - in_h - 0.35) / 2, in_w, in_h))
    ax_input.set_label("input")
    show_image(ax_input, image)
    ax_input.set_title(f"input {shape_text(image.shape)}", fontsize=10)

    left = margin + side + 0.45
    low = base + (body_h - panels_h) / 2
    if maps:
        panels = []
        for index in range(channels):
            row, col = divmod(index, cols)
            x = left + col * (cell_w + gap)
            y = low + (rows - 1 - row) * (cell_h + gap)
            ax = figure.add_axes(box(x, y, cell_w, cell_h), label=f"channel {index}")
            shown = ax.imshow(
                values[..., index],
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                interpolation="nearest",
                aspect="auto",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.4)
            ax.text(
                0.04,
                0.96,
                str(index),
                transform=ax.transAxes,
                fontsize=max(4.5, 6.5 * cell),
                color="white",
                ha="left",
                va="top",
                bbox={"boxstyle": "square,pad=0.15", "fc": "black", "alpha": 0.55, "lw": 0},
            )
            panels.append(ax)
        what = f"all {channels} channels"
    else:
        flat = values.reshape(-1)
        ax = figure.add_axes(box(left, low, panels_w, panels_h), label="vector")
        shown = ax.imshow(
            flat[None, :], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
        )
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
        ax.set_xlabel(f"feature index (0-{max(flat.size - 1, 0)})", fontsize=9)
        what = f"all {flat.size} features"
    bar_h = max(panels_h * 0.85, min(panels_h, 1.2)) if maps else panels_h
    bar = figure.add_axes(box(left + panels_w + 0.2, low + (panels_h - bar_h) / 2, 0.18, bar_h))
    colorbar = figure.colorbar(shown, cax=bar, extend=colorbar_extend(values, vmin, vmax))
    colorbar.ax.tick_params(labelsize=8)
    colorbar.set_label("activation", fontsize=9)
    colorbar.ax.set_label("colorbar")

    scale = (
        f"diverging scale \u00b1{vmax:.3g} centred on 0"
        if diverging
        else f"scale {vmin:.3g} to {vmax:.3g}"
    )
    place = f"layer {position}: " if position else ""
    figure.suptitle(
        f"{title}{place}{layer_name} ({layer_type}), output {shape_text(values.shape)}\n"
        f"one colour {scale} for {what} (1st-99th percentile; arrows mark clipped values)",
        fontsize=11,
        y=1 - 0.1 / fig_h,
        va="top",
    )
    return figure


def display_name(model: Any, layer: Any) -> str:
    """A layer's name as a figure shows it: its own name when the architecture gave one, or
    else (Keras's `conv2d_2`, numbered across every model the process built) its type and its
    place among the model's layers of that type: `conv2d_1` for the first Conv2D."""
    import re

    auto = re.fullmatch(r"(.+?)(?:_\d+)?", layer.name)
    snake = re.sub(r"\W+", "", type(layer).__name__)  # as Keras names a layer it is not told
    snake = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", snake)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", snake).lower()
    if auto is None or auto.group(1) != snake:
        return str(layer.name)
    same = [other for other in model.layers if type(other) is type(layer)]
    return f"{snake}_{same.index(layer) + 1}"


class FeatureMaps(Visualizer):
    """The lab's feature maps: one PNG per layer. Options: layers, title, dpi."""

    name = "featuremaps"
    aliases = ("activations",)
    description = "Outputs of the first N layers (default 4) for one image, channels in a grid"

    def render(
        self, model: Any, image: np.ndarray, out_dir: Path, options: Mapping[str, Any]
    ) -> list[Path]:
        image = check_image(image, model)
        count = _options_int(options, "layers", DEFAULT_LAYERS)
        dpi = _dpi(options)
        outputs = layer_outputs(model, image, count)
        total = len(model.layers)
        paths = []
        for index, (layer, output) in enumerate(outputs, start=1):
            shown = display_name(model, layer)
            figure = featuremap_figure(
                image,
                to_numpy(output)[0],
                layer_name=shown,
                layer_type=type(layer).__name__,
                position=f"{index}/{total}",
                title=_prefix(options),
            )
            paths.append(
                save_png(figure, Path(out_dir) / f"featuremaps_{index:02d}_{shown}.png", dpi)
            )
        return paths


# ---------------------------------------------------------------- filters


def _reduce_kernel(kernel: np.ndarray, channel: str | int) -> tuple[np.ndarray, str]:
    """(kh, kw, in, out) -> (kh, kw, out) by the per-input-channel mean or one input channel."""
    if channel == "mean":
        return kernel.mean(axis=2), f"mean over its {kernel.shape[2]} input channels"
    index = int(channel)
    if not 0 <= index < kernel.shape[2]:
        raise RegbenchError(
            f"kernel_channel={index} is out of range: "
            f"the layer has {kernel.shape[2]} input channels"
        )
    return kernel[:, :, index, :], f"input channel {index} of {kernel.shape[2]}"


def filters_figure(
    kernels: Sequence[tuple[str, np.ndarray]],
    *,
    count: int = DEFAULT_FILTERS,
    channel: str | int = "mean",
    shared_scale: bool = False,
    title: str = "",
):
    """The last `count` filters of each given Conv2D kernel (kh, kw, in, out), side by side.

    Each filter is drawn as its kh x kw kernel reduced over input channels (`channel`: "mean" or
    an index), on a diverging scale symmetric around zero: one scale per layer by default (a
    second conv's weights are much smaller than the first's and would vanish on the first's
    scale), or one for all with `shared_scale`. Axes are labelled 'filter <layer> <index>'.
    """
    if not kernels:
        raise RegbenchError("the model has no Conv2D layer whose filters could be drawn")
    reduced = []
    for name, kernel in kernels:
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim != 4:
            raise RegbenchError(f"{name}: expected a (kh, kw, in, out) kernel, got {kernel.shape}")
        flat, how = _reduce_kernel(kernel, channel)
        first = max(0, kernel.shape[3] - count)
        reduced.append((name, kernel.shape, flat[:, :, first:], first, how))
    if shared_scale:
        everything = np.concatenate([r[2].ravel() for r in reduced])
        limits = [float(np.max(np.abs(everything))) or 1.0] * len(reduced)
    else:
        limits = [float(np.max(np.abs(r[2]))) or 1.0 for r in reduced]

    shown_count = max(r[2].shape[-1] for r in reduced)
    cols = min(shown_count, 4)
    rows = math.ceil(shown_count / cols)
    figure = agg_figure((max(6.0, 0.4 + len(reduced) * (cols * 1.0 + 0.45)), rows * 1.0 + 2.1))
    blocks = figure.subfigures(1, len(reduced), wspace=0.04, squeeze=False)[0]
    for block, (name, shape, flat, first, how), limit in zip(blocks, reduced, limits, strict=True):
        axes = block.subplots(
            rows, cols, squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.2}
        )
        panels = []
        for index, ax in enumerate(axes.flat):
            if index >= flat.shape[-1]:
                ax.remove()
                continue
            shown = ax.imshow(
                flat[:, :, index],
                cmap=DIVERGING_CMAP,
                vmin=-limit,
                vmax=limit,
                interpolation="nearest",
            )
            ax.set_label(f"filter {name} {first + index}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"#{first + index}", fontsize=8, pad=2)
            panels.append(ax)
        kh, kw, cin, cout = shape
        block.suptitle(
            f"{name}: {kh}\u00d7{kw} kernels, {cin}\u2192{cout} channels\n"
            f"filters {first}-{cout - 1}, each the {how}",
            fontsize=9.5,
        )
        colorbar = block.colorbar(shown, ax=panels, orientation="horizontal", shrink=0.9, aspect=25)
        colorbar.ax.tick_params(labelsize=7.5)
        colorbar.set_label("weight (0 = white)", fontsize=8.5)
        colorbar.ax.set_label("colorbar")
    scale = "one scale for all layers" if shared_scale else "one scale per layer"
    if len(reduced) == 1:
        which = f"Filters of the only Conv2D layer (the last {count})"
    else:
        which = f"Filters of the first two Conv2D layers (the last {count} of each)"
    figure.suptitle(
        f"{title}{which}\nred positive, blue negative, white 0; {scale}, symmetric around 0",
        fontsize=10.5,
    )
    return figure


class Filters(Visualizer):
    """The lab's filter figure: one PNG. Options: filters (how many, default 8),
    kernel_channel ('mean' or an input channel index), shared_scale, title, dpi."""

    name = "filters"
    aliases = ("kernels",)
    description = "The last eight kernels of the first Conv2D layer beside those of the second"

    def render(
        self, model: Any, image: np.ndarray, out_dir: Path, options: Mapping[str, Any]
    ) -> list[Path]:
        keras = import_keras()
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][:2]
        channel: str | int | None = options.get("kernel_channel", "mean")
        if channel != "mean":
            channel = _whole(channel)
            if channel is None:
                raise RegbenchError(
                    f"kernel_channel={options['kernel_channel']!r} must be 'mean' or an index"
                )
        figure = filters_figure(
            [(display_name(model, layer), to_numpy(layer.kernel)) for layer in convs],
            count=_options_int(options, "filters", DEFAULT_FILTERS),
            channel=channel,
            shared_scale=_options_flag(options, "shared_scale"),
            title=_prefix(options),
        )
        return [save_png(figure, Path(out_dir) / "filters.png", _dpi(options))]


# ---------------------------------------------------------------- Grad-CAM


def gradcam_figure(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    layer_name: str,
    layer_shape: Sequence[int],
    probs: np.ndarray,
    predicted: int,
    target: int,
    class_names: Sequence[str] | None = None,
    title: str = "",
    true: int | None = None,
):
    """Input, Grad-CAM heatmap and overlay in a row (axes labelled input/heatmap/overlay);
    the title names the true class where it is known (`true`), the predicted one, and the
    class explained when it is another."""
    image = check_image(image)
    aspect = min(1.6, max(0.35, image.shape[0] / image.shape[1]))
    figure = agg_figure((11.0, 1.2 + 3.1 * aspect))
    axes = figure.subplots(1, 3)
    for ax, label in zip(axes, ("input", "heatmap", "overlay"), strict=True):
        ax.set_label(label)
    show_image(axes[0], image)
    axes[0].set_title(f"input {shape_text(image.shape)}", fontsize=10)
    shown = axes[1].imshow(heatmap, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, interpolation="bilinear")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    empty = not np.any(heatmap > 0)
    axes[1].set_title(
        "heatmap (no positive evidence)" if empty else f"heatmap from {shape_text(layer_shape)}",
        fontsize=10,
    )
    gray = image.mean(axis=-1)
    axes[2].imshow(gray, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes[2].imshow(
        heatmap, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, alpha=0.55, interpolation="bilinear"
    )
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title("overlay on the input (gray)", fontsize=10)
    colorbar = figure.colorbar(shown, ax=list(axes), shrink=0.8, aspect=25)
    colorbar.set_label("relative importance", fontsize=9)
    colorbar.ax.tick_params(labelsize=8)
    colorbar.ax.set_label("colorbar")

    name = class_name(predicted, class_names)
    line = f"predicted '{name}' with p = {float(probs[predicted]):.1%}"
    if target != predicted:
        line = (
            f"explaining '{class_name(target, class_names)}' "
            f"(p = {float(probs[target]):.1%}); {line}"
        )
    if true is not None:
        verdict = "right" if true == predicted else "wrong"
        line = f"true '{class_name(true, class_names)}' · {line} ({verdict})"
    figure.suptitle(f"{title}Grad-CAM on {layer_name}\n{line}", fontsize=11)
    return figure


class GradCam(Visualizer):
    """Where the last conv layer sees evidence for a class: one PNG. Options: label (the class
    to explain; default the predicted one), true_label (the image's class, named in the
    title), class_names, title, dpi."""

    name = "gradcam"
    aliases = ("grad-cam",)
    description = "Grad-CAM heatmap of the predicted (or given) class over the image"

    def render(
        self, model: Any, image: np.ndarray, out_dir: Path, options: Mapping[str, Any]
    ) -> list[Path]:
        label = options.get("label")
        if label is not None:
            label = _whole(label)
            if label is None:
                raise RegbenchError(f"label={options['label']!r} must be a class index")
        result = gradcam(model, image, label)
        figure = gradcam_figure(
            check_image(image),
            result["heatmap"],
            layer_name=display_name(model, model.get_layer(result["layer"])),
            layer_shape=result["coarse"].shape,
            probs=result["probs"],
            predicted=result["predicted"],
            target=result["target"],
            class_names=options.get("class_names"),
            title=_prefix(options),
            true=_whole(options.get("true_label")),
        )
        return [save_png(figure, Path(out_dir) / "gradcam.png", _dpi(options))]


@hookimpl
def register_visualizers(register: Callable[[Any], None]) -> None:
    for visualizer in (FeatureMaps(), Filters(), GradCam()):
        register(visualizer)
