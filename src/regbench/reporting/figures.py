"""The report's figures: learning curves per run, the grid, CI bars and accuracy against time.

Every function returns a matplotlib Figure on the Agg canvas (never pyplot, never an
interactive backend), so tests can count panels and lines and the report can turn each into
PNG bytes once. matplotlib is imported inside functions: importing regbench stays light.
"""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from regbench.errors import RegbenchError
from regbench.results.format import missing, params_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange"}
SPLIT_LABELS = {"train": "train", "val": "validation"}
SETTING_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LAB_REGS = ("none", "l2", "dropout", "batchnorm")


def png_bytes(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, rendered once so the report can both save and embed them."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def cell_order(runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Architectures in natural order, regularizers in the lab's order (others after, sorted).

    Runs are stored in start order, which the executor sets by cost; a report reads better in
    the order of the lab's tables.
    """
    archs = sorted(runs["arch"].dropna().unique(), key=_natural)
    regs = sorted(
        runs["reg"].dropna().unique(),
        key=lambda r: (LAB_REGS.index(r) if r in LAB_REGS else len(LAB_REGS), _natural(r)),
    )
    return archs, regs


Limits = dict[str, tuple[float, float]]  # metric -> y-axis range


def accuracy_figure(
    epochs: pd.DataFrame, run_id: str, title: str | None = None, ylims: Limits | None = None
) -> Figure:
    """The lab's per-run plot: train and validation accuracy per epoch, beside the loss.

    `ylims` (see `shared_limits`) puts several runs on the same scales, so that a flat curve
    does not look dramatic because its axis zoomed in."""
    return _curves_figure(epochs, run_id, title or run_id, ylims)


def shared_limits(epochs: pd.DataFrame, run_ids: list[str]) -> Limits:
    """One y range per metric covering every point of the given runs, with a small margin."""
    mine = epochs[epochs["run_id"].isin(run_ids)]
    limits = {}
    for metric, values in mine.groupby("metric")["value"]:
        values = values[values.map(math.isfinite)]
        if values.empty:
            continue
        low, high = float(values.min()), float(values.max())
        margin = max((high - low) * 0.05, 0.01)
        limits[str(metric)] = (low - margin, high + margin)
    return limits


def final_figure(
    epochs: pd.DataFrame,
    run_id: str,
    test_accuracy: float | None = None,
    title: str | None = None,
    ylims: Limits | None = None,
) -> Figure:
    """The lab's Figure 1: a final-stage run trains on train+validation, so only train curves.

    The one test evaluation goes into the title, since there is no validation curve to read.
    """
    test = "not evaluated" if missing(test_accuracy) else f"{test_accuracy:.4f}"
    return _curves_figure(epochs, run_id, f"{title or run_id}: test accuracy {test}", ylims)


def grid_figure(runs: pd.DataFrame, epochs: pd.DataFrame) -> Figure:
    """Architectures as rows, regularizers as columns: mean curves across seeds per cell.

    The shaded band is the range across seeds, so a reader sees at once whether two cells
    differ by more than the seeds do. Only ok grid-stage runs count, as in the leaderboard.
    """
    from matplotlib.lines import Line2D

    ok = _ok_grid(runs)
    archs, regs = cell_order(ok if len(ok) else runs)
    if not archs or not regs:
        raise RegbenchError("no runs to draw in the grid figure")
    ok = ok.assign(setting=ok["params"].map(params_label))
    acc = epochs[epochs["metric"] == "accuracy"].merge(
        ok[["run_id", "arch", "reg", "setting"]], on="run_id"
    )
    stats = acc.groupby(["arch", "reg", "setting", "split", "epoch"])["value"].agg(
        ["mean", "min", "max"]
    )
    width, height = max(6.5, 1.0 + 2.5 * len(regs)), 1.3 + 1.9 * len(archs)
    # fixed margins in inches (labels left, title above, legend below): a constrained layout
    # took half of this figure's drawing time in a 1,000-run report
    figure = _figure((width, height), layout=None)
    figure.subplots_adjust(
        left=0.75 / width, right=1 - 0.15 / width, bottom=0.75 / height, top=1 - 0.6 / height
    )
    axes = figure.subplots(len(archs), len(regs), sharex=True, sharey=True, squeeze=False)
    drawn = set(stats.index.droplevel("epoch"))
    for i, arch in enumerate(archs):
        for j, reg in enumerate(regs):
            ax = axes[i][j]
            ax.set_label(f"cell:{arch}:{reg}")
            cell = ok[(ok["arch"] == arch) & (ok["reg"] == reg)]
            settings = list(dict.fromkeys(cell["setting"]))
            for k, setting in enumerate(settings):
                seeds = int((cell["setting"] == setting).sum())
                for split in ("train", "val"):
                    key = (arch, reg, setting, split)
                    if key not in drawn:
                        continue
                    curve = stats.loc[key]
                    style = SETTING_STYLES[k % len(SETTING_STYLES)]
                    ax.plot(
                        curve.index,
                        curve["mean"],
                        style,
                        color=SPLIT_COLORS[split],
                        marker="o",
                        markersize=2.5,
                        linewidth=1.3,
                        label=f"{SPLIT_LABELS[split]} {setting}".strip(),
                    )
                    if seeds > 1:
                        ax.fill_between(
                            curve.index,
                            curve["min"],
                            curve["max"],
                            color=SPLIT_COLORS[split],
                            alpha=0.15,
                            linewidth=0,
                        )
            if not settings:
                _note(ax, "no ok runs")
            if len(settings) > 1:
                ax.legend(fontsize=6, loc="lower right")
            if i == 0:
                ax.set_title(reg, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{arch}\naccuracy", fontsize=9)
            if i == len(archs) - 1:
                ax.set_xlabel("epoch", fontsize=9)
            _integer_epochs(ax)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
    handles = [
        Line2D([], [], color=SPLIT_COLORS[s], marker="o", markersize=3, label=SPLIT_LABELS[s])
        for s in ("train", "val")
    ]
    figure.legend(handles=handles, loc="lower center", ncols=2, fontsize=9, frameon=False)
    figure.suptitle("Mean accuracy per epoch across seeds (band: range across seeds)", fontsize=11)
    return figure


def ci_bar_figure(board: pd.DataFrame) -> Figure:
    """Mean validation accuracy per cell, best on top (leaderboard order), every seed a dot.

    Error bars are the 95% CI of the mean and only drawn where a cell has two seeds or more:
    one seed has no interval. Bars start at zero so lengths stay honest. Accuracy lies in
    [0, 1], so the drawn bars are clipped there (two seeds give very wide Student intervals);
    the exact mean, CI and seed count are printed on the right.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = board.reset_index(drop=True)
    figure = _figure((7.5, 1.2 + 0.3 * max(len(rows), 2)))
    ax = figure.subplots()
    ax.set_label("ci")
    if rows.empty:
        _empty(ax, "no successful grid runs")
        return figure
    _, regs = cell_order(rows)
    colors = _colors(regs)
    labels = [
        f"{r.arch} · {r.reg}" + (f" ({r.params})" if r.params else "") for r in rows.itertuples()
    ]
    mean = rows["val_accuracy"]
    ci = pd.to_numeric(rows["val_ci95"], errors="coerce")  # NaN where n=1: no interval
    positions = list(range(len(rows)))[::-1]
    ax.barh(
        positions,
        mean,
        color=[colors[r] for r in rows["reg"]],
        height=0.7,
        label="_bars",
    )
    has_ci = ci.notna()
    if has_ci.any():
        where = [p for p, ok in zip(positions, has_ci, strict=True) if ok]
        m, c = mean[has_ci], ci[has_ci]
        ax.errorbar(
            m,
            where,
            xerr=[c.clip(upper=m), c.clip(upper=1 - m)],
            fmt="none",
            ecolor="black",
            elinewidth=1,
            capsize=3,
            label="95% CI",
        )
    seeds_x, seeds_y = [], []
    for position, values in zip(positions, rows["val_by_seed"], strict=True):
        points = [v for v in (values or {}).values() if v is not None]
        seeds_x += points
        seeds_y += _spread(position, len(points))
    ax.scatter(
        seeds_x,
        seeds_y,
        s=12,
        color="white",
        edgecolor="black",
        linewidth=0.7,
        zorder=3,
        label="seeds",
    )
    ax.set_yticks(positions, labels, fontsize=8)
    values = ax.secondary_yaxis("right")
    values.set_yticks(
        positions,
        [
            f"{r.val_accuracy:.3f}" + ("" if pd.isna(c) else f" ± {c:.3f}") + f" (n={r.seeds})"
            for r, c in zip(rows.itertuples(), ci, strict=True)
        ],
        fontsize=7,
    )
    values.tick_params(length=0)
    ax.set_xlim(0, 1)
    ax.set_xlabel(
        "validation accuracy (mean across seeds; dots: seeds; bars: 95% CI where n > 1)",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    seed_handle = Line2D(
        [],
        [],
        linestyle="",
        marker="o",
        markersize=4,
        markerfacecolor="white",
        markeredgecolor="black",
        label="seed",
    )
    figure.legend(
        handles=[*(Patch(color=colors[r], label=r) for r in regs), seed_handle],
        loc="outside lower center",
        ncols=len(regs) + 1,
        fontsize=8,
        frameon=False,
    )
    ax.set_title("Validation accuracy per cell (ranked)", fontsize=11)
    return figure


def accuracy_vs_time_figure(runs: pd.DataFrame) -> Figure:
    """Validation accuracy against training time, one marker per ok grid run.

    Colour is the regularizer and marker shape the architecture, so each cell is a unique pair
    and the cost of a regularizer (batch norm, dropout) shows as a shift to the right.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ok = _ok_grid(runs)
    ok = ok[ok["val_accuracy"].notna() & ok["train_time_s"].notna()]
    figure = _figure((6.5, 4.0))
    ax = figure.subplots()
    ax.set_label("scatter")
    if ok.empty:
        _empty(ax, "no successful grid runs")
        return figure
    archs, regs = cell_order(ok)
    colors = _colors(regs)
    markers = {a: MARKERS[i % len(MARKERS)] for i, a in enumerate(archs)}
    for (arch, reg), cell in ok.groupby(["arch", "reg"], sort=False):
        ax.scatter(
            cell["train_time_s"],
            cell["val_accuracy"],
            s=36,
            marker=markers[arch],
            color=colors[reg],
            edgecolor="black",
            linewidth=0.5,
            label=f"{arch} · {reg}",
            alpha=0.9,
        )
    times = ok["train_time_s"]
    if times.min() > 0 and times.max() / times.min() > 20:
        ax.set_xscale("log")
    handles = [
        Line2D([], [], linestyle="", marker=markers[a], color="gray", label=a) for a in archs
    ] + [Patch(color=colors[r], label=r) for r in regs]
    figure.legend(
        handles=handles,
        loc="outside right upper",
        fontsize=8,
        frameon=False,
        title="shape: arch\ncolour: reg",
        title_fontsize=8,
    )
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.set_title("Validation accuracy against training time (one marker per run)", fontsize=10)
    return figure


# ---------------------------------------------------------------- helpers


def _figure(
    figsize: tuple[float, float], layout: Literal["constrained", "tight"] | None = "constrained"
) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _curves_figure(
    epochs: pd.DataFrame, run_id: str, title: str, ylims: Limits | None = None
) -> Figure:
    """Accuracy and loss panels for one run, one line per split that the run recorded."""
    mine = epochs[epochs["run_id"] == run_id]
    if mine.empty:
        raise RegbenchError(f"run {run_id} recorded no epochs to plot")
    # A fixed layout: a report draws one of these per run, and constrained layout would double
    # the time of each.
    figure = _figure((6.4, 2.5), layout=None)
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.18, top=0.86, wspace=0.28)
    axes = figure.subplots(1, 2)
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.set_label(metric)
        for split in ("train", "val"):
            curve = mine[(mine["metric"] == metric) & (mine["split"] == split)].sort_values("epoch")
            if curve.empty:
                continue
            ax.plot(
                curve["epoch"],
                curve["value"],
                color=SPLIT_COLORS[split],
                marker="o",
                markersize=3,
                linewidth=1.4,
                label=SPLIT_LABELS[split],
            )
        if ylims and metric in ylims:
            ax.set_ylim(*ylims[metric])
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(metric, fontsize=9)
        ax.tick_params(labelsize=8)
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def _spread(center: float, count: int, width: float = 0.4) -> list[float]:
    """Positions for `count` dots around `center`, so seeds with equal values stay visible."""
    if count <= 1:
        return [center] * count
    return [center - width / 2 + width * i / (count - 1) for i in range(count)]


def _note(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")


def _empty(ax: Axes, message: str) -> None:
    _note(ax, message)
    ax.set_axis_off()


def _ok_grid(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs["status"] == "ok") & (runs["stage"].fillna("grid") == "grid")]


def _integer_epochs(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    low, high = ax.get_xlim()
    if high - low < 1:  # a single epoch: give the lone point whole-number neighbours
        middle = round((low + high) / 2)
        ax.set_xlim(middle - 1, middle + 1)


def _colors(names: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _natural(text: str) -> tuple:
    """'model10' after 'model9': split digits out so they compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))
