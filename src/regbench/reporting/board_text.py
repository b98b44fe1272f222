"""The leaderboard as terminal text: one rich table per protocol (ranked cells, then the cells
that lost seeds), the provenance lines of `--wide`, the failed and skipped runs. The ranking
itself, and every figure these tables print, come from results.leaderboard's `table`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from regbench.design.pending import provenance_parts
from regbench.results import leaderboard, stats
from regbench.results.format import DIFFERENCE, fmt, mean_and_ci, missing

LOST_TITLE = "lost seeds: not ranked, no verdict"

# left out, and said so, when the whole table would not fit the terminal
COMPACT_DROPS = ("train acc", "gap", "params", "train s", "val acc / epoch")


def ranked_table(board: pd.DataFrame, label: str, baseline: str, compact: bool) -> tuple[Any, int]:
    """One protocol's ranking as a rich table, and the width it takes unwrapped."""
    from rich.markup import escape

    heading = f": {label}" if label else ""
    title = f"regbench leaderboard{heading} (ranked by validation accuracy)"
    columns: list[tuple[str, Any, dict[str, Any], Any]] = [
        ("#", "right", NUMBER, rank_text),
        *_names(board),
        ("n", "right", NUMBER, _seeds),
        ("val acc ± 95% CI", "right", NUMBER, lambda r: mean_and_ci(r.val_accuracy, r.val_ci95)),
        ("train acc", "right", NUMBER, lambda r: fmt(r.train_accuracy, ".3f")),
        ("gap", "right", NUMBER, lambda r: fmt(r.gap, "+.3f")),
        (f"vs {escape(baseline)}", "right", NUMBER, difference_text),
        ("verdict", "left", _whole_words(board, verdict_text), verdict_text),
        ("params", "right", NUMBER, lambda r: fmt(r.total_params, ",.0f")),
        ("train s", "right", NUMBER, lambda r: fmt(r.train_time_s, ".1f")),
        ("val acc / epoch", "left", {}, lambda r: r.val_curve),
    ]
    return _laid_out(board, title, columns, compact)


def lost_table(board: pd.DataFrame, label: str, baseline: str, compact: bool) -> tuple[Any, int]:
    """One protocol's cells that lost seeds, apart from its ranking: how each seed ended and
    the mean of those that finished, no rank, no comparison with `baseline` (LOST_RULE)."""
    heading = f" ({label})" if label else ""
    title = f"{LOST_TITLE}{heading}, means over the seeds that finished"
    columns: list[tuple[str, Any, dict[str, Any], Any]] = [
        *_names(board),
        ("n", "right", NUMBER, _seeds),
        ("lost seeds", "left", {}, lambda r: lost_text(r.lost_seeds)),
        ("val acc ± 95% CI", "right", NUMBER, lambda r: mean_and_ci(r.val_accuracy, r.val_ci95)),
        ("train acc", "right", NUMBER, lambda r: fmt(r.train_accuracy, ".3f")),
        ("params", "right", NUMBER, lambda r: fmt(r.total_params, ",.0f")),
        ("train s", "right", NUMBER, lambda r: fmt(r.train_time_s, ".1f")),
    ]
    return _laid_out(board, title, columns, compact)


NUMBER = {"no_wrap": True}  # a figure is never split across lines
NARROW_HEADERS = {"hyperparameters": "hyper-\nparameters"}  # a narrow table's headings


def _whole_words(board: pd.DataFrame, cell: Any) -> dict[str, Any]:
    """A wrapping column at least as wide as its longest word, so none is cut."""
    words = [len(word) for row in board.itertuples() for word in cell(row).split()]
    return {"min_width": max(words, default=1)}


def _names(board: pd.DataFrame) -> list[tuple[str, Any, dict[str, Any], Any]]:
    """The columns that name a cell, each at least as wide as its longest word."""
    from rich.markup import escape

    def whole(name: str, values: Any) -> dict[str, Any]:
        return {"no_wrap": True, "min_width": max([len(name), *(len(v) for v in values)])}

    return [
        ("arch", "left", whole("arch", board["arch"]), lambda r: escape(r.arch)),
        ("reg", "left", whole("reg", board["reg"]), lambda r: escape(r.reg)),
        # wraps between its items (and before "(tuned: ...)"), never inside a value
        ("hyperparameters", "left", _items(_value_items(board)), _hyperparameters),
    ]


def _laid_out(
    board: pd.DataFrame,
    title: str,
    columns: list[tuple[str, Any, dict[str, Any], Any]],
    compact: bool,
) -> tuple[Any, int]:
    """`board` as a rich table of `columns` (less COMPACT_DROPS when `compact`, its numbers
    without spaces), and the width it takes unwrapped."""
    from rich.markup import escape
    from rich.table import Table

    out = Table(
        title=escape(title),
        title_justify="left",
        padding=(0, 0 if compact else 1),
        show_edge=not compact,  # narrow: two more characters for the figures
    )
    if compact:
        columns = [c for c in columns if c[0] not in COMPACT_DROPS]
        columns = [(NARROW_HEADERS.get(c[0], c[0]), *c[1:]) for c in columns]
    for name, justify, options, _ in columns:
        if compact and not options.get("no_wrap") and "min_width" in options:
            # narrow: a wrapping column no wider than its longest word, which rich's own
            # shrinking does not always reach (a table a column too wide is cut at the edge)
            options = {**options, "max_width": options["min_width"]}
        out.add_column(name, justify=justify, **options)
    widths = [max(map(len, name.split("\n"))) for name, *_ in columns]
    for row in board.itertuples():
        cells = [cell(row) for *_, cell in columns]
        if compact:  # figures without their spaces: `0.215±0.064`, `0.225[0.000,0.543]`
            cells = [
                _tight(c) if options is NUMBER else c
                for c, (_, _, options, _) in zip(cells, columns, strict=True)
            ]
        lines = [max(len(line) for line in c.split("\n")) for c in cells]
        widths = [max(pair) for pair in zip(widths, lines, strict=True)]
        out.add_row(*cells)
    # unwrapped: each column's widest line, its padding and a border (none at the edges
    # when narrow)
    return out, sum(widths) + (len(widths) - 1 if compact else len(widths) * 3 + 1)


def _tight(text: str) -> str:
    return text.replace(" ± ", "±").replace(" [", "[").replace(", ", ",")


def lost_text(lost: Any) -> str:
    """How a cell's lost seeds ended: `seeds 1, 3 diverged; seed 4 failed`."""
    by_status: dict[str, list[str]] = {}
    for seed, status in sorted((lost or {}).items(), key=lambda item: int(item[0])):
        by_status.setdefault(str(status), []).append(str(seed))
    return "; ".join(
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} {status}"
        for status, seeds in sorted(by_status.items())
    )


def built_by(row: Any) -> list[str]:
    """A cell's architecture and regularizer with their distribution version and short hash,
    one item each (`model1 (regbench 0.2.0, b9defec0),`), a combination's components joined
    by "+"; none for runs that recorded no provenance."""
    items: list[str] = []
    for column in ("arch", "reg"):
        source, digest = getattr(row, f"{column}_source"), getattr(row, f"{column}_source_hash")
        if missing(source):
            continue
        parts = provenance_parts(getattr(row, column), source, digest)
        if items:
            items[-1] += ","
        items += [
            f"{name} ({dist}, {_short(code)})" + (" +" if i < len(parts) - 1 else "")
            for i, (name, dist, code) in enumerate(parts)
        ]
    return items


def packed(head: str, items: list[str], width: int) -> list[str]:
    """`head` and `items` as lines of at most `width` characters, broken between items only
    (a version or hash is never split); continuation lines indented."""
    if not items:
        return []
    lines, indent = [head], " " * 6
    for item in items:
        if len(lines[-1]) + 1 + len(item) > width and lines[-1].strip():
            lines.append(indent)
        lines[-1] += ("" if lines[-1] == indent else " ") + item
    return lines


def _short(digest: str) -> str:
    """A source hash cut to 8 characters; a declared version (`v2`) and a combination's
    hashes (`a+b`, not split alike) whole."""
    return digest if digest.startswith("v") or "+" in digest else digest[:8] or "?"


def print_failures(bad: pd.DataFrame, console: Any) -> None:
    """The runs that did not finish ok (results.leaderboard.failures), skipped ones apart."""
    skipped = bad[bad["status"] == "skipped"]
    bad = bad[bad["status"] != "skipped"]
    if len(bad):
        console.print(f"[bold red]{len(bad)} run(s) not ok:[/]")
        for row in bad.itertuples():
            console.print(
                f"  {row.run_id}  {row.status}: {row.error or ''}", markup=False, highlight=False
            )
    if len(skipped):
        console.print(
            f"{len(skipped)} cell(s) skipped: not applicable, or their regularizers conflict "
            "(not ranked):"
        )
        for row in skipped.itertuples():
            console.print(f"  {row.run_id}: {row.error or ''}", markup=False, highlight=False)


def _hyperparameters(row: Any) -> str:
    from rich.markup import escape

    return escape(row.params + (f" (tuned: {row.tuned})" if row.tuned else "") or "-")


def rank_text(row: Any) -> str:
    """`2`, `2=` when tied, `!` for a cell not ranked (it lost seeds)."""
    if missing(row.rank):
        return "!"
    return f"{row.rank}=" if row.tied else str(row.rank)


def _seeds(row: Any) -> str:
    """Seeds that finished of those planned, marked "!" when some failed or diverged."""
    return f"{row.seeds}/{row.planned}" + ("!" if row.failed else "")


def difference_text(row: Any) -> str:
    """The mean paired difference from the baseline, with its interval where n > 1."""
    if row.verdict == stats.BASELINE:
        return "-"
    if missing(row.diff):
        return "n/a"
    text = mean_and_ci(row.diff, row.diff_ci95, "+", DIFFERENCE)
    return text if row.n_paired == row.seeds else f"{text} (n={int(row.n_paired)})"


def verdict_text(row: Any) -> str:
    """The verdict with its Holm-adjusted p; an n/a says why."""
    from rich.markup import escape

    if row.verdict in stats.UNTESTED:
        return escape(row.why_na or row.verdict)
    if row.verdict == stats.BASELINE or missing(row.p_holm):
        return str(row.verdict)
    short = {stats.SAME: "n.s."}.get(row.verdict, row.verdict)
    return f"{short} p={row.p_holm:.2g}"


def _items(items: list[str]) -> dict[str, Any]:
    """A column as wide as its longest item at least, wrapping between items."""
    return {"min_width": max([len("parameters"), *(len(i) for i in items)])}


def _value_items(board: pd.DataFrame) -> list[str]:
    """Each `name=value` of the board's hyperparameters: the column is at least as wide as the
    longest, so a value is never split (the column wraps between items only)."""
    return [item for label in board["params"] for item in str(label).split(", ")]


def render(
    runs: pd.DataFrame,
    epochs: pd.DataFrame,
    console: Any,
    baseline: str = "none",
    wide: bool = False,
) -> None:
    """Print the leaderboard, one table per protocol, and the failed runs with rich (plain
    text when not a TTY).

    Names, numbers and run ids are never cut or split: where the whole table would not fit the
    terminal, COMPACT_DROPS are left out (a line says which) and the numbers drop their
    spaces. `wide` adds, under its table, each cell's provenance (every plugin object's
    distribution version and short hash, or declared version) and its run ids, one whole id a
    line (what `visualize --run` takes), so no column is squeezed for them.
    """
    board = leaderboard.table(runs, epochs, baseline)
    for label, group in board.groupby("protocol", sort=False):
        ranked, lost = group[group["ranked"]], group[~group["ranked"]]
        for part, builder in ((ranked, ranked_table), (lost, lost_table)):
            if part.empty:
                continue
            out, width = builder(part, str(label), baseline, compact=False)
            if width > console.width:
                dropped = [c.header for c in out.columns if c.header in COMPACT_DROPS]
                out, _ = builder(part, str(label), baseline, compact=True)
                console.print(f"(narrow: {', '.join(map(str, dropped))} left out)")
            console.print(out)
        if wide:
            for row in (*ranked.itertuples(), *lost.itertuples()):
                rank = f"  {rank_text(row)}"
                for line in packed(f"{rank} built by", built_by(row), console.width):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
                for run_id in row.run_ids:
                    console.print(f"{rank} {run_id}", markup=False, highlight=False, soft_wrap=True)
    if board["tied"].any():
        console.print(leaderboard.TIE_NOTE, markup=False, highlight=False)
    if (board["failed"] > 0).any():
        console.print(leaderboard.LOST_NOTE, markup=False, highlight=False)
    if (board["verdict"] == stats.UNDERPOWERED).any():
        m = int((pd.to_numeric(board["n_paired"], errors="coerce") >= 2).sum())
        note = leaderboard.UNDERPOWERED_NOTE.format(
            fewest=stats.fewest_tested(), alpha=stats.ALPHA, m=m, holm=stats.fewest_tested(m)
        )
        console.print(note, markup=False, highlight=False)
    if board.attrs.get("superseded"):
        note = leaderboard.SUPERSEDED_NOTE.format(n=board.attrs["superseded"])
        console.print(note, markup=False, highlight=False)
    print_failures(leaderboard.failures(runs), console)
