"""The report's data laid out by the Jinja2 templates in templates/: HTML and Markdown.

HTML is autoescaped. Markdown has no autoescape of its own, so every value a Markdown template
prints is made one line of plain text (no raw HTML) unless the template marks it `raw`: markup
the templates built themselves, whose values were escaped on the way in.
"""

from __future__ import annotations

import html
from functools import cache
from typing import Any

import jinja2

from regbench.reporting.contents import Report


class Markdown(str):
    """Text that is already Markdown: printed as it is."""


def md_text(value: Any) -> Markdown:
    """One line, no raw HTML."""
    return Markdown(html.escape(" ".join(str(value).split()), quote=False))


def md_cell(value: Any) -> Markdown:
    """Text for a table cell: a pipe would end the cell."""
    return Markdown(md_text(value).replace("|", "\\|"))


def _finalize(value: Any) -> Any:
    return value if isinstance(value, Markdown) else md_text(value)


@cache
def _environment(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("regbench.reporting", "templates"),
        autoescape=not markdown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize if markdown else None,
    )
    if not markdown:
        return env
    env.filters.update(
        raw=Markdown,
        cell=md_cell,
        head=lambda text: md_cell(text) or Markdown(" "),  # an empty heading keeps its column
        code=lambda text: Markdown(f"`{md_text(text)}`"),
        br=lambda text: Markdown(f"{md_text(text)}  "),  # a line break
    )
    return env


def to_html(report: Report) -> str:
    return _environment(False).get_template("report.html").render(report=report)


def to_markdown(report: Report) -> str:
    return _environment(True).get_template("report.md").render(report=report)
