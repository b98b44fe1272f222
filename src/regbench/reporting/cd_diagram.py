"""The critical-difference diagram (Demšar 2006, as Orange and FuzzBench draw it): the mean
ranks of one protocol's treatments on one axis, with the Nemenyi critical difference and bars
joining the treatments no test tells apart, so a reader sees the ranking and its uncertainty at
once.

The axis runs from 1 (best, at the left) to k; the best half of the treatments is named on the
left, the others on the right, each on its own row so no two names meet. The caller computes the
ranks, the CD and the caption (the test, its p-value, the blocks): this module only draws them.
The figure is on the Agg canvas, never pyplot's, and matplotlib is imported inside the functions
so importing this module stays light (see `figures`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from regbench.results.grid_stats import cd_drawn, cd_groups, rank_order

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure

DPI = 100  # as `figures.DPI`
WIDTH = 7.0  # inches; wider only when long names leave the axis too little room
MIN_AXIS = 2.5  # inches of axis at least, and MIN_STEP per rank
MIN_STEP = 0.25
TITLE_SIZE, NAME_SIZE, SMALL_SIZE = 11, 10, 9  # points; nothing under 9 pt
ROW = 0.25  # inches between two names on one side
GROUP_ROW = 0.1  # inches between two rows of group bars
GROUP_WIDTH = 4.0  # points: the thick bars joining treatments the test does not tell apart
LINE_WIDTH = 0.8
GROUP_GID, CD_GID, NAME_GID = "cd-group", "cd-bar", "cd-name-line"


def cd_figure(mean_ranks: Mapping[str, float], cd: float, title: str, caption: str = "") -> Figure:
    """The diagram a paper prints: mean-rank axis (1 = best, left), each treatment's tick and
    name, the CD bar above the axis and the groups' bars below it; title and caption (the test
    and its blocks, e.g. "Friedman p = 0.003 · Nemenyi, α = 0.05") are the caller's text.

    Everything is laid out in inches from measured text, so the height grows with the names and
    nothing overlaps at 2 or 20 treatments. A CD of 0 or NaN draws no bar and no groups; a CD
    wider than the axis is drawn to the axis' end and labelled as such.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = rank_order(mean_ranks)
    groups = cd_groups(mean_ranks, cd)
    k = len(order)
    figure = Figure(figsize=(WIDTH, 3.0), dpi=DPI)
    renderer = FigureCanvasAgg(figure).get_renderer()

    def width(text: str, size: float) -> float:
        return _text_width(renderer, text, size)

    n_left = (k + 1) // 2  # the best half, named on the left
    # the left side's best is on top, the right side's worst, so no two lines cross
    sides = (order[:n_left], order[n_left:][::-1])
    rank_texts = {name: f"{rank:.2f}" for name, rank in order}
    rank_w = max(width(t, SMALL_SIZE) for t in rank_texts.values())
    stub, gap, pad = 0.15, 0.08, 0.1
    # each side as wide as its longest name, the axis what is left
    margins = [
        pad + max(width(name, NAME_SIZE) for name, _ in side) + gap + rank_w + 0.05 + stub
        for side in sides
    ]
    fig_w = max(WIDTH, sum(margins) + max(MIN_AXIS, MIN_STEP * (k - 1)))
    left, right = margins[0], fig_w - margins[1]

    def x(rank: float) -> float:
        return left + (rank - 1) / (k - 1) * (right - left)

    # a row's two lines meeting at one tick (a tie across the sides) would read as one line: the
    # right side goes half a row lower then
    tied = any(x(b[1]) - x(a[1]) < 0.1 for a, b in zip(*sides, strict=False))
    shifts = (0.0, 0.5 if tied else 0.0)

    # vertical layout, in inches down from the top
    title_lines = _wrap(title, fig_w - 2 * pad, TITLE_SIZE, width)
    caption_lines = _wrap(caption, fig_w - 2 * pad, SMALL_SIZE, width)
    t = 0.1
    title_t = t
    t += 0.22 * len(title_lines) + (0.1 if title_lines else 0.0)
    axis_label = "mean rank (1 = best)"
    label_w = width(axis_label, SMALL_SIZE)
    cd_t = label_t = None
    cd_text = ""
    cd_end = left
    if cd_drawn(cd):
        beyond = cd > k - 1
        cd_end = right if beyond else x(1 + cd)
        cd_text = f"CD = {cd:.2f}" + (" (wider than the axis)" if beyond else "")
        cd_t = t + 0.26
        cd_right = max(cd_end, (left + cd_end) / 2 + width(cd_text, SMALL_SIZE) / 2)
        if cd_right + 0.25 < right - label_w:  # room for the axis label on the CD's row
            label_t = cd_t - 0.04
        t += 0.34
    if label_t is None:
        label_t = t + 0.18
        t += 0.24
    axis_t = t + 0.25
    rows = _bar_rows(groups, dict(order), x)
    n_rows = max(rows, default=-1) + 1
    first_t = axis_t + (0.12 + GROUP_ROW * (n_rows - 1) + 0.2 if n_rows else 0.22)
    last_t = first_t + ROW * max(
        len(side) - 1 + shift for side, shift in zip(sides, shifts, strict=True)
    )
    t = last_t + 0.15
    caption_t = t + 0.12
    t += 0.12 + 0.19 * len(caption_lines) + 0.05 if caption_lines else 0.0
    fig_h = t + 0.1
    figure.set_size_inches(fig_w, fig_h)

    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0.0, fig_w)
    ax.set_ylim(0.0, fig_h)
    ax.set_axis_off()

    def y(down: float) -> float:
        return fig_h - down

    def text(xi: float, down: float, s: str, size: float, **kwargs: Any) -> None:
        ax.text(xi, y(down), s, fontsize=size, parse_math=False, **kwargs)

    if title_lines:
        text(fig_w / 2, title_t, "\n".join(title_lines), TITLE_SIZE, ha="center", va="top")
    if cd_t is not None:
        _segment(ax, (left, cd_end), (y(cd_t), y(cd_t)), 1.5, gid=CD_GID)
        for end in (left, cd_end):
            _segment(ax, (end, end), (y(cd_t - 0.05), y(cd_t + 0.05)), 1.0)
        text((left + cd_end) / 2, cd_t - 0.04, cd_text, SMALL_SIZE, ha="center", va="bottom")
    text(right, label_t, axis_label, SMALL_SIZE, ha="right", va="bottom")
    _axis(ax, left, right, y(axis_t), k, x)

    for i, group in enumerate(groups):
        bar_y = y(axis_t + 0.12 + GROUP_ROW * rows[i])
        lo, hi = x(dict(order)[group[0]]) - 0.05, x(dict(order)[group[-1]]) + 0.05
        _segment(ax, (lo, hi), (bar_y, bar_y), GROUP_WIDTH, gid=GROUP_GID)

    for side, names in enumerate(sides):
        for row, (name, rank) in enumerate(names):
            row_t = first_t + ROW * (row + shifts[side])
            row_y = y(row_t)
            end = left - stub if side == 0 else right + stub
            ax.plot(
                [x(rank), x(rank), end],
                [y(axis_t), row_y, row_y],
                color="black",
                linewidth=LINE_WIDTH,
                solid_joinstyle="miter",
                gid=NAME_GID,
            )
            sign, ha = (-1, "right") if side == 0 else (1, "left")
            rank_x = end + sign * 0.05
            name_x = rank_x + sign * (rank_w + gap)
            text(rank_x, row_t, rank_texts[name], SMALL_SIZE, ha=ha, va="center", color="0.35")
            text(name_x, row_t, name, NAME_SIZE, ha=ha, va="center")
    if caption_lines:
        caption_text = "\n".join(caption_lines)
        text(fig_w / 2, caption_t, caption_text, SMALL_SIZE, ha="center", va="top", color="0.25")
    return figure


def _text_width(renderer: RendererBase, text: str, size: float) -> float:
    """A one-line text's width in inches, as the renderer will draw it."""
    from matplotlib.font_manager import FontProperties

    w, _, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), False)
    return float(w) / DPI


def _wrap(text: str, room: float, size: float, measure: Callable[[str, float], float]) -> list[str]:
    """The text in lines no wider than `room` inches (a long title or caption wraps, never runs
    off the figure); a single word wider than the room stays whole."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        words = paragraph.split()
        line = ""
        for word in words:
            trial = f"{line} {word}" if line else word
            if line and measure(trial, size) > room:
                lines.append(line)
                line = word
            else:
                line = trial
        if line:
            lines.append(line)
    return lines if text.strip() else []


def _bar_rows(
    groups: list[tuple[str, ...]], ranks: Mapping[str, float], x: Callable[[float], float]
) -> list[int]:
    """The row of each group's bar: a bar goes on the first row where it meets no other, so
    groups that share a treatment are stacked and disjoint ones may share a row."""
    ends: list[float] = []  # per row, where its last bar ends
    rows: list[int] = []
    for group in groups:
        lo, hi = x(ranks[group[0]]) - 0.05, x(ranks[group[-1]]) + 0.05
        row = next((i for i, end in enumerate(ends) if end + 0.15 < lo), len(ends))
        if row == len(ends):
            ends.append(hi)
        else:
            ends[row] = hi
        rows.append(row)
    return rows


def _segment(
    ax: Axes, xs: tuple[float, float], ys: tuple[float, float], lw: float, gid: str = ""
) -> None:
    ax.plot(xs, ys, color="black", linewidth=lw, solid_capstyle="butt", gid=gid or None)


def _axis(
    ax: Axes, left: float, right: float, axis_y: float, k: int, x: Callable[[float], float]
) -> None:
    """The rank axis: a line from 1 to k, numbered ticks above it (every integer where there is
    room, else every 2nd or 5th), short ticks at the halves where there is room for them."""
    ax.plot((left, right), (axis_y, axis_y), color="black", linewidth=1.0)
    step_in = (right - left) / (k - 1)
    every = next(s for s in (1, 2, 5, 10, 20, 50, 100, 10**9) if s * step_in >= 0.24)
    for rank in range(1, k + 1):
        numbered = (rank - 1) % every == 0 or rank == k
        if numbered and rank == k and (k - 1) % every and step_in * ((k - 1) % every) < 0.24:
            numbered = False  # too close to the last numbered tick: only a tick
        height = 0.07 if numbered else 0.04
        ax.plot((x(rank), x(rank)), (axis_y, axis_y + height), color="black", linewidth=1.0)
        if numbered:
            ax.text(
                x(rank),
                axis_y + 0.09,
                str(rank),
                fontsize=SMALL_SIZE,
                ha="center",
                va="bottom",
                parse_math=False,
            )
    if every == 1 and step_in >= 0.4:
        for rank in range(1, k):
            half = x(rank + 0.5)
            ax.plot((half, half), (axis_y, axis_y + 0.035), color="black", linewidth=0.8)
