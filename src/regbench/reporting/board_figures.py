"""The figures of the leaderboard's cells: validation accuracy with its interval per cell, and
against training time per run. Both show the leaderboard's figures under its names, one
protocol each, named in the title (see `figures` for the shared canvas and the learning
curves)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import pandas as pd

from regbench.reporting.figures import (
    cell_order,
    empty,
    new_figure,
    ok_grid,
    protocol_title,
    titled,
)
from regbench.results.format import mean_and_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def ci_bar_figure(board: pd.DataFrame) -> Figure:
    """One protocol's ranking: mean validation accuracy per ranked cell, best on top
    (leaderboard order), every seed a dot; the protocol in the title.

    Error bars are the 95% CI of the mean and only drawn where a cell has two seeds or more:
    one seed has no interval. Bars start at zero so lengths stay honest. Accuracy lies in
    [0, 1], so the drawn bars are clipped there (two seeds give very wide Student intervals);
    the mean, CI and seed count are printed on the right as the leaderboard prints them. Cells
    that lost seeds are not ranked: they are named under the axis, not drawn. A board of
    several protocols is refused (ValueError): each is ranked apart.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    protocols = sorted(set(board["protocol"].dropna()))
    if len(protocols) > 1:
        raise ValueError(f"a board of {len(protocols)} protocols: draw each one's ranking apart")
    ranked = board["ranked"].astype(bool)
    rows, lost = board[ranked].reset_index(drop=True), board[~ranked]
    figure = new_figure((7.5, 1.4 + 0.3 * max(len(rows), 2)))
    ax = figure.subplots()
    ax.set_label("ci")
    title = titled("Validation accuracy per cell (ranked)", protocols[0] if protocols else "")
    ax.set_title(title, fontsize=11)
    unranked = [f"{_named(r)} {r.seeds}/{r.planned}" for r in lost.itertuples()]
    note = f"not ranked, lost seeds: {'; '.join(unranked)}" if unranked else ""
    if rows.empty:
        empty(ax, "no successful grid runs" if lost.empty else "no cell ranked: " + note)
        return figure
    _, regs = cell_order(rows)
    colors = _colors(regs)
    labels = [_named(r) for r in rows.itertuples()]
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
        # an interval that runs past 0 or 1 (two seeds' t interval) is cut at the axis, and
        # an arrowhead there says it was
        for bound, past, marker in ((0.0, m - c < 0, "<"), (1.0, m + c > 1, ">")):
            if past.any():
                at = [p for p, cut in zip(where, past, strict=True) if cut]
                ax.scatter(
                    [bound] * len(at),
                    at,
                    marker=marker,
                    s=30,
                    color="black",
                    zorder=4,
                    clip_on=False,
                    label="_interval cut at the axis",
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
            f"{mean_and_ci(r.val_accuracy, c)} (n={r.seeds})"
            for r, c in zip(rows.itertuples(), ci, strict=True)
        ],
        fontsize=7,
    )
    values.tick_params(length=0)
    ax.set_xlim(0, 1)
    ax.set_xlabel(
        "validation accuracy (mean across seeds; dots: seeds;\n"
        "bars: 95% CI where n > 1, an arrowhead where it runs past 0 or 1)"
        + (f"\n{note}" if note else ""),
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
    return figure


def accuracy_vs_time_figure(runs: pd.DataFrame, protocol: str | None = None) -> Figure:
    """Validation accuracy against train time (the leaderboard's `train_time_s`), one marker
    per ok grid run of one protocol (named `protocol` in the title, see `protocol_title`).

    Colour is the regularizer and marker shape the architecture, so each cell is a unique pair
    and the cost of a regularizer (batch norm, dropout) shows as a shift to the right.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    title = "Validation accuracy against train time (one marker per run)"
    title = protocol_title(title, runs, protocol)
    ok = ok_grid(runs)
    ok = ok[ok["val_accuracy"].notna() & ok["train_time_s"].notna()]
    figure = new_figure((6.5, 4.0))
    ax = figure.subplots()
    ax.set_label("scatter")
    ax.set_title(title, fontsize=10)
    if ok.empty:
        empty(ax, "no successful grid runs")
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
    ax.set_xlabel("train time (s)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    return figure


# ---------------------------------------------------------------- helpers


def _named(cell: Any) -> str:
    """A board row's cell as the figure names it: `model1 · dropout (rate=0.1)`."""
    return f"{cell.arch} · {cell.reg}" + (f" ({cell.params})" if cell.params else "")


def _spread(center: float, count: int, width: float = 0.4) -> list[float]:
    """Positions for `count` dots around `center`, so seeds with equal values stay visible."""
    if count <= 1:
        return [center] * count
    return [center - width / 2 + width * i / (count - 1) for i in range(count)]


# a regularizer's colour is its own in every figure and every report: the lab's four fixed,
# any other from its name (never from its place in one report's list)
LAB_COLORS = {"none": "#7f7f7f", "l2": "#1f77b4", "dropout": "#ff7f0e", "batchnorm": "#2ca02c"}
OTHER_COLORS = (
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
    "#393b79",
)  # tab10's and tab20's others, the lab's four left out


def reg_color(name: str) -> str:
    """The colour of regularizer `name`: the same in every report (a stable hash of the name
    for those beyond the lab's four; two of them may share one)."""
    if name in LAB_COLORS:
        return LAB_COLORS[name]
    digest = hashlib.sha256(name.encode()).digest()
    return OTHER_COLORS[int.from_bytes(digest[:4], "big") % len(OTHER_COLORS)]


def _colors(names: list[str]) -> dict[str, Any]:
    return {n: reg_color(n) for n in names}
