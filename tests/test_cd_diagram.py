"""The critical-difference diagram: its groups are the maximal runs a Nemenyi test cannot
separate (hand cases and a property), and its figure, read back from the drawn artists, names
every treatment once, draws one bar per group, and keeps every text apart and on the page."""

from __future__ import annotations

import io
import itertools
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from regbench.reporting.cd_diagram import CD_GID, GROUP_GID, NAME_GID, cd_figure
from regbench.results.grid_stats import cd_groups

HAND = {"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2}
TITLE = "digits · 10 epochs · sgd"
CAPTION = "Friedman p = 0.003 · Nemenyi, α = 0.05 · 12 blocks (architecture × seed)"
NAMES = [
    "none",
    "l2",
    "dropout (rate=0.3)",
    "batchnorm",
    "l2 · dropout",
    "mixup (α=0.2)",
    "cutout",
    "label smoothing",
    "weight decay 1e-4",
    "stochastic depth",
    "shake-shake",
    "$5 (not math)",
]


def ranks_of(k: int) -> dict[str, float]:
    """k treatments, the first at rank 1 and the last at rank k exactly, the rest spread so
    some groups overlap and some do not."""
    steps = [0.0, 0.3, 0.35, 1.4, 1.5, 2.9, 3.6, 3.7, 5.0, 5.2, 6.4, 7.0]
    top = steps[k - 1]
    return {NAMES[i]: 1 + steps[i] / top * (k - 1) for i in range(k)}


# ---------------------------------------------------------------- groups


@pytest.mark.parametrize(
    ("ranks", "cd", "expected"),
    [
        (HAND, 1.0, [("a", "b"), ("c", "d")]),
        (HAND, 2.5, [("a", "b", "c", "d")]),  # 3.2 - 1.0 = 2.2 < 2.5
        (HAND, 2.0, [("a", "b"), ("b", "c", "d")]),  # c - a = 2.0 is not < 2.0
        (HAND, 0.3, [("c", "d")]),
        (HAND, 0.1, []),
        ({"d": 3.2, "b": 1.5, "c": 3.0, "a": 1.0}, 1.0, [("a", "b"), ("c", "d")]),  # rank order
        ({"a": 1.0, "b": 2.0}, 1.0, []),  # a difference of exactly the CD is a difference
        ({"a": 1.0, "b": 2.0}, 1.01, [("a", "b")]),
        ({"x": 2.0, "y": 2.0, "z": 2.0}, 0.5, [("x", "y", "z")]),  # all tied: one group
        (HAND, 10.0, [("a", "b", "c", "d")]),  # wider than the axis
        (HAND, math.inf, [("a", "b", "c", "d")]),
        (HAND, 0.0, []),
        ({"x": 2.0, "y": 2.0, "z": 2.0}, 0.0, []),  # no test, no groups, even for ties
        (HAND, math.nan, []),
    ],
)
def test_groups_by_hand(ranks, cd, expected):
    assert cd_groups(ranks, cd) == expected


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        ({}, "2 treatments or more, got 0"),
        ({"a": 1.0}, "2 treatments or more, got 1"),
        ({"a": 0.5, "b": 2.0}, r"lies in \[1, 2\]"),
        ({"a": 1.0, "b": 2.5}, r"'b' is 2.5"),
        ({"a": 1.0, "b": math.nan}, r"'b' is nan"),
    ],
)
def test_refuses_what_is_no_ranking(ranks, message):
    with pytest.raises(ValueError, match=message):
        cd_groups(ranks, 1.0)
    with pytest.raises(ValueError, match=message):
        cd_figure(ranks, 1.0, TITLE)


def test_refuses_a_negative_cd():
    with pytest.raises(ValueError, match="never negative"):
        cd_groups(HAND, -0.5)
    with pytest.raises(ValueError, match="never negative"):
        cd_figure(HAND, -0.5, TITLE)


def test_a_rounding_error_at_the_bounds_is_the_bound():
    assert cd_groups({"a": 1 - 1e-12, "b": 2 + 1e-12}, 1.5) == [("a", "b")]


@st.composite
def rankings(draw):
    k = draw(st.integers(2, 12))
    # ranks drawn on a coarse grid too, so ties and differences of exactly the CD come up
    rank = st.one_of(
        st.floats(1.0, float(k)),
        st.integers(2, 2 * k).map(lambda half: half / 2),
    )
    ranks = {f"t{i}": draw(rank) for i in range(k)}
    cd = draw(st.one_of(st.floats(0.0, float(k)), st.sampled_from([0.5, 1.0, 1.5, math.nan])))
    return ranks, cd


@settings(max_examples=200)
@given(rankings())
def test_groups_are_the_maximal_runs_within_the_cd(case):
    ranks, cd = case
    order = sorted(ranks, key=ranks.__getitem__)  # stable: ties keep the mapping's order
    r = [ranks[name] for name in order]
    groups = cd_groups(ranks, cd)
    spans = []
    for group in groups:
        assert len(group) >= 2
        i = order.index(group[0])
        j = i + len(group) - 1
        assert list(group) == order[i : j + 1]  # consecutive, best first
        assert all(abs(ranks[p] - ranks[q]) < cd for p, q in itertools.combinations(group, 2))
        if j + 1 < len(r):  # the next treatment breaks it
            assert r[j + 1] - r[i] >= cd
        if i > 0:  # and so does the previous one
            assert r[j] - r[i - 1] >= cd
        spans.append((i, j))
    for (i, j), (m, n) in itertools.permutations(spans, 2):
        assert not (m <= i and j <= n), "a group inside another"
    # and nothing is missed: two treatments within the CD share a group
    for i, j in itertools.combinations(range(len(r)), 2):
        if r[j] - r[i] < cd:
            assert any(m <= i and j <= n for m, n in spans)


# ---------------------------------------------------------------- figure


def drawn(figure: Figure):
    """The figure drawn once, with its texts and their boxes in pixels."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text()]
    return texts, {id(t): t.get_window_extent(renderer) for t in texts}, renderer


def lines_with(figure: Figure, gid: str) -> list[Line2D]:
    return [line for line in figure.findobj(Line2D) if line.get_gid() == gid]


@pytest.mark.parametrize("k", [2, 5, 12])
def test_figure_names_every_treatment_once_and_nothing_overlaps(k):
    ranks = ranks_of(k)
    figure = cd_figure(ranks, 0.87, TITLE, CAPTION)
    assert isinstance(figure.canvas, FigureCanvasAgg)
    texts, boxes, renderer = drawn(figure)
    strings = [t.get_text() for t in texts]
    for name in ranks:
        assert strings.count(name) == 1, name
    assert "CD = 0.87" in strings
    assert TITLE in strings and CAPTION in strings
    assert all(t.get_fontsize() >= 9 for t in texts)

    groups = cd_groups(ranks, 0.87)
    bars = lines_with(figure, GROUP_GID)
    assert len(bars) == len(groups)
    name_lines = lines_with(figure, NAME_GID)
    assert len(name_lines) == k
    assert all(b.get_linewidth() >= 3 * n.get_linewidth() for b in bars for n in name_lines)
    assert len(lines_with(figure, CD_GID)) == 1

    for a, b in itertools.combinations(texts, 2):  # no two texts meet, names or any other
        assert not boxes[id(a)].overlaps(boxes[id(b)]), (a.get_text(), b.get_text())
    page = figure.bbox
    for t in texts:
        box = boxes[id(t)]
        assert page.x0 <= box.x0 and box.x1 <= page.x1, t.get_text()
        assert page.y0 <= box.y0 and box.y1 <= page.y1, t.get_text()
    # a name meets no line: not the axis, a group bar, the CD bar or another treatment's line
    for t in texts:
        if t.get_text() in ranks:
            for line in figure.findobj(Line2D):
                assert not boxes[id(t)].overlaps(line.get_window_extent(renderer)), t.get_text()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG") and len(buffer.getvalue()) > 1000


def test_figure_size_is_a_page_width_and_grows_with_the_names():
    heights = []
    for k in (2, 5, 12):
        width, height = cd_figure(ranks_of(k), 0.87, TITLE, CAPTION).get_size_inches()
        assert width == pytest.approx(7.0)
        heights.append(height)
    assert heights == sorted(heights) and heights[0] < heights[-1]
    assert heights[-1] == pytest.approx(1.2 + 0.25 * 6, abs=1.2)


@pytest.mark.parametrize(
    ("ranks", "cd", "n_groups", "cd_text"),
    [
        ({"x": 2.0, "y": 2.0, "z": 2.0}, 0.5, 1, "CD = 0.50"),  # all tied
        (HAND, 5.0, 1, "CD = 5.00 (wider than the axis)"),
        (HAND, 0.0, 0, None),
        (HAND, math.nan, 0, None),
        ({"a": 1.0, "b": 2.0}, 1.0, 0, "CD = 1.00"),  # ranks at 1 and k exactly
        ({"a": 1.5, "b": 1.5}, 0.9, 1, "CD = 0.90"),
    ],
)
def test_figure_edge_cases(ranks, cd, n_groups, cd_text):
    figure = cd_figure(ranks, cd, TITLE)
    texts, boxes, _ = drawn(figure)
    strings = [t.get_text() for t in texts]
    assert len(lines_with(figure, GROUP_GID)) == n_groups == len(cd_groups(ranks, cd))
    if cd_text is None:
        assert not lines_with(figure, CD_GID)
        assert not any(s.startswith("CD") for s in strings)
    else:
        assert cd_text in strings and len(lines_with(figure, CD_GID)) == 1
    for name in ranks:
        assert strings.count(name) == 1
    for a, b in itertools.combinations(texts, 2):
        assert not boxes[id(a)].overlaps(boxes[id(b)]), (a.get_text(), b.get_text())


def test_a_cd_wider_than_the_axis_stops_at_its_end():
    figure = cd_figure({"a": 1.0, "b": 2.5, "c": 3.0}, 5.0, TITLE)
    (bar,) = lines_with(figure, CD_GID)
    ticks = sorted(line.get_xdata()[0] for line in lines_with(figure, NAME_GID))
    assert (min(bar.get_xdata()), max(bar.get_xdata())) == pytest.approx((ticks[0], ticks[-1]))


def test_long_names_and_title_stay_on_the_page():
    ranks = {"a very long regularizer name (rate=0.3, decay=1e-4)" * 2: 1.0, "b": 2.0, "c": 3.0}
    title = " · ".join(["a protocol with many parts"] * 6)
    figure = cd_figure(ranks, 1.2, title, CAPTION * 2)
    texts, boxes, _ = drawn(figure)
    page = figure.bbox
    for t in texts:
        box = boxes[id(t)]
        assert page.x0 <= box.x0 and box.x1 <= page.x1, t.get_text()
        assert page.y0 <= box.y0 and box.y1 <= page.y1, t.get_text()
    for a, b in itertools.combinations(texts, 2):
        assert not boxes[id(a)].overlaps(boxes[id(b)]), (a.get_text(), b.get_text())


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, regbench.reporting.cd_diagram; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
