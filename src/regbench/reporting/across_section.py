"""The report's "Across architectures" section: each protocol's regularizer x architecture
table, its ranking line and what the marks mean, in the terminal's words and figures
(reporting.across_text), as tables the HTML and Markdown templates lay out."""

from __future__ import annotations

from dataclasses import dataclass

from regbench.reporting.across_text import columns, marks_note, ranking_line
from regbench.reporting.tables import Table
from regbench.results.across import Summary


@dataclass
class AcrossSection:
    """One protocol's answer across architectures ('' protocol: the experiment has one)."""

    protocol: str
    table: Table
    ranking: str


def sections(summaries: list[Summary]) -> list[AcrossSection]:
    """A section per protocol; the protocol named only where there are several."""
    several = len(summaries) > 1
    found = []
    for summary in summaries:
        shown = columns(summary)
        rows = [[cell(reg) for *_, cell in shown] for reg in summary.regularizers]
        table = Table([name for name, *_ in shown], rows)
        label = summary.protocol if several else ""
        found.append(AcrossSection(label, table, ranking_line(summary)))
    return found


def note(summaries: list[Summary]) -> str:
    """What the marks and columns mean ('' with nothing to summarize)."""
    return marks_note(summaries[0].baseline) if summaries else ""
