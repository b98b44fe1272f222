"""`regbench compare` as terminal text: one row per cell, a column per experiment (and its cells
against a baseline, when asked), then each later experiment's difference from the first. The
figures come from results.compare."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from regbench.reporting import board_text
from regbench.results import compare, stats
from regbench.results.format import DIFFERENCE, fmt, mean_and_ci
from regbench.results.leaderboard import LOST_NOTE


def render(folders: Sequence[str | Path], console: Any, baseline: str | None = None) -> None:
    """The comparison as a rich table: one row per cell (and protocol, where a folder holds
    several), one column per experiment (and its cells against `baseline`, when given),
    then the difference of each later experiment from the first; each experiment's protocol
    below."""
    from rich.markup import escape
    from rich.table import Table

    result = compare.compare(folders, baseline)
    names = list(result["experiments"])
    first = names[0]
    several = any(cell["protocol"] for cell in result["cells"])
    headers = ["arch", "reg", "hyperparameters", *(["protocol"] if several else [])]
    headers += [f"{escape(name)} val acc (n)" for name in names]
    if baseline is not None:
        headers += [f"{escape(name)} vs {escape(baseline)}" for name in names]
    headers += [f"{escape(name)} − {escape(first)}" for name in names[1:]]
    rows = []
    for cell in result["cells"]:
        row = [escape(cell["arch"]), escape(cell["reg"]), escape(cell["params"] or "-")]
        if several:
            row.append(escape(cell["protocol"]))
        row += [_figures_shown(cell["experiments"][name]) for name in names]
        if baseline is not None:
            row += [_against_baseline(cell["experiments"][name]) for name in names]
        row += [_shown(cell["differences"][name]) for name in names[1:]]
        rows.append(row)
    # lines break between words only: each column is as wide as its longest word (a number,
    # a name=value, a run's figure), and a narrow terminal loses the spaces around ±
    widths = [max(len(c) for c in column) + 3 for column in zip(headers, *rows, strict=True)]
    narrow = sum(widths) > console.width
    if narrow:
        rows = [[c.replace(" ± ", "±") for c in row] for row in rows]
    title = f"regbench compare (differences from {first})"
    out = Table(title=title, title_justify="left", padding=(0, 0 if narrow else 1))
    for index, header in enumerate(headers):
        words = [w for text in (header, *(r[index] for r in rows)) for w in text.split()]
        justify: Any = "left" if index < 3 + several else "right"
        least = max(map(len, words))  # narrow: no wider than that, so the table fits
        out.add_column(
            header, justify=justify, min_width=least, max_width=least if narrow else None
        )
    for row in rows:
        out.add_row(*row)
    console.print(out)
    if any(f and f["failed"] for cell in result["cells"] for f in cell["experiments"].values()):
        console.print(LOST_NOTE, markup=False, highlight=False)
    for name, folder in result["experiments"].items():
        protocol = result["protocols"][name]
        console.print(
            f"{name}: {folder}" + (f" ({protocol})" if protocol else ""),
            markup=False,
            highlight=False,
        )


def _figures_shown(figures: dict[str, Any] | None) -> str:
    """`0.620 ± 0.050 (3/3)`; "!" marks a cell that lost seeds (failed or diverged)."""
    if figures is None:
        return "-"
    lost = "!" if figures["failed"] else ""
    return (
        f"{mean_and_ci(figures['val_accuracy'], figures['val_ci95'])}"
        f" ({figures['seeds']}/{figures['planned']}{lost})"
    )


def _against_baseline(figures: dict[str, Any] | None) -> str:
    """A cell against the baseline inside its experiment, as the leaderboard's `vs` and
    verdict columns read."""
    if figures is None:
        return "-"
    row = SimpleNamespace(**figures["vs_baseline"], seeds=figures["seeds"])
    if row.verdict == stats.BASELINE:
        return "baseline"
    return f"{board_text.difference_text(row)} {board_text.verdict_text(row)}"


def _shown(difference: dict[str, Any] | None) -> str:
    if difference is None:
        return "-"
    if difference["diff"] is None:  # no shared seeds, or a cell lost seeds
        return difference["why_na"] or stats.NA
    text = mean_and_ci(difference["diff"], difference["diff_ci95"], "+", DIFFERENCE)
    text += f" (n={difference['n_paired']})"
    verdict = difference["verdict"]
    if verdict == stats.UNDERPOWERED:
        text += f" {difference['why_na']}"
    elif verdict != stats.NA:
        short = {stats.SAME: "n.s."}.get(verdict, verdict)
        p_holm = difference["p_holm"]  # None for n.s. where every difference is 0
        text += f" {short}" + ("" if p_holm is None else f" p={fmt(p_holm, '.2g')}")
    return text
