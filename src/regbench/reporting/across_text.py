"""`regbench leaderboard --by reg`: the study's answer across architectures as terminal text,
one table per protocol (regularizer x architecture, pooled effect, helps/hurts, P(improvement),
seeds needed) and the ranking of all regularizers under it. Every figure comes from
results.across, as `--json` prints it."""

from __future__ import annotations

from typing import Any, Literal

from regbench.results import stats
from regbench.results.across import Regularizer, Summary
from regbench.results.format import fmt

Justify = Literal["left", "right"]

MARKS = {
    stats.BETTER: "▲",
    stats.WORSE: "▼",
    stats.SAME: "·",
    stats.UNDERPOWERED: "?",
    stats.NA: "",
}
MARKS_NOTE = (
    "▲ better, ▼ worse, · no significant difference (the leaderboard's exact sign-flip test, "
    "Holm-adjusted), ? underpowered (fewer than {fewest} shared seeds); pooled: the mean over "
    "architectures with a stratified bootstrap 95% interval; P(>{baseline}): the chance a seed "
    "of the regularizer beats a seed of {baseline} on the same architecture"
)


# left out, and said so, when the whole table would not fit the terminal
COMPACT_DROPS = ("P(>", "seeds for")


def render(summaries: list[Summary], console: Any) -> None:
    """Print each protocol's table and ranking with rich (plain text when not a TTY); a
    terminal too narrow for every column leaves P(improvement) and seeds needed out and
    says so (`--json` has them)."""
    if not summaries:
        console.print("no ranked cells yet: nothing to summarize across architectures")
        return
    for summary in summaries:
        out, width = _table(summary, compact=False)
        if width > console.width:
            out, _ = _table(summary, compact=True)
            console.print("(narrow: P(improvement) and seeds needed left out; --json has them)")
        console.print(out)
        console.print(ranking_line(summary), markup=False, highlight=False)
    console.print(marks_note(summaries[0].baseline), markup=False, highlight=False)


def marks_note(baseline: str) -> str:
    """What the table's marks and columns mean."""
    return MARKS_NOTE.format(fewest=stats.fewest_tested(), baseline=baseline)


def columns(summary: Summary) -> list[tuple[str, Justify, Any]]:
    """The table's columns (heading, justification, text of a regularizer's cell): the
    terminal's and the report's."""
    return [
        ("regularizer", "left", lambda r: r.name),
        *((arch, "right", lambda r, a=arch: effect_text(r, a)) for arch in summary.architectures),
        ("pooled (95% CI)", "right", pooled_text),
        ("helps/hurts", "right", counts_text),
        (f"P(>{summary.baseline})", "right", lambda r: interval_text(r.improvement, ".2f")),
        (f"seeds for ±{summary.detect:g}", "right", needed_text),
    ]


def _table(summary: Summary, compact: bool) -> tuple[Any, int]:
    """One protocol's table, and the width it takes unwrapped."""
    from rich.markup import escape
    from rich.table import Table

    heading = f": {summary.protocol}" if summary.protocol else ""
    title = (
        f"regbench across architectures{heading} (validation accuracy vs "
        f"{summary.baseline}, paired by seed)"
    )
    shown = [c for c in columns(summary) if not (compact and c[0].startswith(COMPACT_DROPS))]
    rows = [[cell(reg) for *_, cell in shown] for reg in summary.regularizers]
    widths = [
        max([len(name), *(len(row[i]) for row in rows)]) for i, (name, *_) in enumerate(shown)
    ]
    out = Table(title=escape(title), title_justify="left", padding=(0, 0 if compact else 1))
    for (name, justify, _), width in zip(shown, widths, strict=True):
        out.add_column(escape(name), justify=justify, no_wrap=True, min_width=width)
    for row in rows:
        out.add_row(*map(escape, row))
    return out, sum(widths) + len(widths) * (1 if compact else 3) + 1


def counts_text(reg: Regularizer) -> str:
    """Architectures it helps / hurts of those with a verdict."""
    if not reg.tested:
        return "untested"
    return f"{reg.helps}/{reg.hurts} of {reg.tested}"


def ranking_line(summary: Summary) -> str:
    """All regularizers against each other, in one paragraph."""
    r = summary.ranking
    if r.why_not:
        return f"ranking: none ({r.why_not})"
    ranks = ", ".join(f"{n} {rank:.2f}" for n, rank in sorted(r.mean_ranks.items(), key=_second))
    together = "; ".join("{" + ", ".join(g) + "}" for g in r.groups) or "none"
    return (
        f"ranking over {r.blocks} blocks (architecture x seed): Friedman chi2 = "
        f"{fmt(r.statistic, '.2f')}, p = {fmt(r.p_value, '.2g')}; mean ranks (1 = best): "
        f"{ranks}; Nemenyi critical difference {fmt(r.critical_difference, '.2f')} "
        f"(alpha = {stats.ALPHA:g}), not told apart: {together}"
    )


def effect_text(reg: Regularizer, arch: str) -> str:
    effect = reg.effects.get(arch)
    if effect is None or effect.diff is None:
        return "-"
    return f"{effect.diff:+.3f}{MARKS.get(effect.verdict, '')}"


def pooled_text(reg: Regularizer) -> str:
    pooled = reg.pooled
    if pooled is None:
        return "-"
    if pooled.low is None or pooled.high is None:
        return f"{pooled.estimate:+.3f}"
    return f"{pooled.estimate:+.3f} [{pooled.low:+.3f}, {pooled.high:+.3f}]"


def interval_text(found: Any, spec: str) -> str:
    if found is None:
        return "-"
    if found.low is None or found.high is None:
        return format(found.estimate, spec)
    return f"{found.estimate:{spec}} [{found.low:{spec}}, {found.high:{spec}}]"


def needed_text(reg: Regularizer) -> str:
    """The most seeds any of its comparisons needs ('-' where no spread was seen yet)."""
    needed = [e.seeds_needed for e in reg.effects.values() if e.seeds_needed is not None]
    return str(max(needed)) if needed else "-"


def _second(item: tuple[str, float]) -> float:
    return item[1]
