"""A shareable report of one experiment folder: one self-contained HTML file, Markdown and PNGs.

The HTML embeds every figure as a base64 data URI and carries its CSS inline, so it can be
mailed or attached as a single file and opened offline; the Markdown points at the same
figures saved as PNG files under `figures/`, for a repository or a paper. Both are one data
model (`contents`) laid out by templates (`render`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from regbench.errors import RegbenchError
from regbench.plugins.files import replaced
from regbench.reporting import contents, gallery, render
from regbench.results.across import summarize
from regbench.results.leaderboard import table
from regbench.results.reader import load, load_best, load_trials


def write_report(folder: Path, out: Path | None = None, baseline: str = "none") -> dict[str, Path]:
    """Write report.html, report.md and figures/*.png for the experiment in `folder`.

    `out` defaults to the folder itself. Each cell is compared with the `baseline`
    regularizer's cell of its architecture. Returns the paths written under the keys "html",
    "markdown" and "figures" (the folder of PNGs); the overview figures an earlier report left
    there and this one does not draw are removed. Raises RegbenchError when the folder holds
    no results.
    """
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    runs, epochs = load(folder)
    if runs.empty:
        raise RegbenchError(
            f"{folder} holds no runs yet; run `regbench run --experiment {folder}` first"
        )
    board = table(runs, epochs, baseline)
    per_run = gallery.per_run(runs, epochs)
    report = contents.build(
        contents.ReportInputs(
            folder=folder,
            runs=runs,
            epochs=epochs,
            board=board,
            trials=_tuning(load_trials, folder),
            best=_tuning(load_best, folder),
            generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            baseline=baseline,
            overview=gallery.overview(runs, epochs, board),
            per_run=per_run,
            visualizations=gallery.visualized(folder, out),
            curves_note=gallery.curves_note(runs),
            across=summarize(board, baseline),
        )
    )
    fig_dir = out / "figures"
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
        overview = [fig for group in report.overview for fig in group.figures]
        for fig in [*overview, *per_run.values()]:
            _atomic_write(out / fig.file, fig.png)
        written = {Path(fig.file).name for fig in overview}
        for old in fig_dir.glob("*.png"):
            if gallery.is_overview(old.name) and old.name not in written:
                old.unlink(missing_ok=True)
        # undecodable bytes in a folder name become "?" rather than half a file
        _atomic_write(out / "report.html", render.to_html(report).encode("utf-8", "replace"))
        _atomic_write(out / "report.md", render.to_markdown(report).encode("utf-8", "replace"))
    except OSError as exc:
        raise RegbenchError(f"cannot write the report to {out}: {exc.strerror}") from None
    return {"html": out / "report.html", "markdown": out / "report.md", "figures": fig_dir}


def _tuning(loader: Callable[[Path], pd.DataFrame], folder: Path) -> pd.DataFrame:
    """Tuning trials or best values, or an empty frame when the experiment was never tuned."""
    try:
        return loader(folder)
    except (sqlite3.Error, pd.errors.DatabaseError):
        return pd.DataFrame()


def _atomic_write(path: Path, data: bytes) -> None:
    with replaced(path) as tmp:
        tmp.write_bytes(data)
