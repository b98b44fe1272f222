"""A shareable report of one experiment folder: one self-contained HTML file, Markdown and PNGs.

The HTML embeds every figure as a base64 data URI and carries its CSS inline, so it can be
mailed or attached as a single file and opened offline; the Markdown points at the same
figures saved as PNG files under `figures/`, for a repository or a paper. Both follow the
lab's report: the leaderboard, then the lab's Tables 1-3 (time, accuracy plot and model
summary per run), the final-stage run, and what it was measured on.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.errors import RegbenchError
from regbench.reporting import figures
from regbench.results import stats
from regbench.results.leaderboard import _params_label, failures, table
from regbench.results.reader import load, load_best, load_trials

ENVIRONMENT = {
    "python_version": "Python",
    "tf_version": "TensorFlow",
    "keras_version": "Keras",
    "regbench_version": "regbench",
    "backend": "Keras backend",
    "device": "device",
    "host": "host",
    "git_revision": "git revision",
}
PROTOCOL = {
    "dataset": "dataset",
    "epochs": "epochs",
    "batch_size": "batch size",
    "optimizer": "optimizer",
    "learning_rate": "learning rate",
}
MISSING = "–"
VISUALIZE_DIR = ("figures", "visualize")  # where `regbench visualize` writes, per run id
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, column) => {
  th.title = "click to sort";
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const down = th.dataset.order !== "desc";
    th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.order);
    th.dataset.order = down ? "desc" : "asc";
    const key = row => {
      const text = row.cells[column].textContent.trim();
      const number = parseFloat(text.replace(/,/g, ""));
      return Number.isNaN(number) ? text : number;
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
      const order = x < y ? -1 : x > y ? 1 : 0;
      return down ? -order : order;
    });
    rows.forEach(row => body.appendChild(row));
  });
});
"""
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.summary { font-size: 0.8em; margin: 0; } table.summary td, table.summary th { border: 0;
       padding: 0.1em 0.5em; } table.summary tr.total td { border-top: 1px solid #999; }
.muted { color: #666; font-size: 0.85em; } .warn { color: #a40000; }
code { background: #f5f5f5; padding: 0 0.2em; }
img { max-width: 100%; height: auto; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
"""


class _Raw(str):
    """A table cell that is already HTML (an image, a nested table): inserted unescaped."""


@dataclass
class _Figure:
    """One rendered figure: the PNG bytes serve both the data URI and the file."""

    name: str
    caption: str
    png: bytes

    @property
    def file(self) -> str:
        return f"figures/{self.name}.png"

    def img(self) -> _Raw:
        data = base64.b64encode(self.png).decode("ascii")
        alt = html.escape(self.caption)
        return _Raw(f'<img src="data:image/png;base64,{data}" alt="{alt}">')

    def markdown(self) -> str:
        return f"![{_md_text(self.caption)}]({self.file})"


@dataclass
class _Context:
    """Everything both renderers need, computed once."""

    folder: Path
    runs: pd.DataFrame
    epochs: pd.DataFrame
    board: pd.DataFrame
    trials: pd.DataFrame
    best: pd.DataFrame
    generated: str
    baseline: str = "none"
    out: Path = Path()
    overview: dict[str, _Figure] = field(default_factory=dict)
    per_run: dict[str, _Figure] = field(default_factory=dict)
    visualized: dict[str, list[Path]] = field(default_factory=dict)


def write_report(folder: Path, out: Path | None = None, baseline: str = "none") -> dict[str, Path]:
    """Write report.html, report.md and figures/*.png for the experiment in `folder`.

    `out` defaults to the folder itself. Each cell is compared with the `baseline`
    regularizer's cell of its architecture. Returns the paths written under the keys "html",
    "markdown" and "figures" (the folder of PNGs). Raises RegbenchError when the folder holds
    no results.
    """
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    runs, epochs = load(folder)
    if runs.empty:
        raise RegbenchError(f"{folder} holds no runs yet; run `regbench run --out {folder}` first")
    ctx = _Context(
        folder=folder,
        runs=runs,
        epochs=epochs,
        board=table(runs, epochs, baseline),
        trials=_trials(folder),
        best=_best_values(folder),
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        baseline=baseline,
        out=out,
        visualized=visualized_figures(folder),
    )
    _render_figures(ctx)
    fig_dir = out / "figures"
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
        for fig in [*ctx.overview.values(), *ctx.per_run.values()]:
            _atomic_write(out / fig.file, fig.png)
        # undecodable bytes in a folder name become "?" rather than half a file
        _atomic_write(out / "report.html", _html(ctx).encode("utf-8", errors="replace"))
        _atomic_write(out / "report.md", _markdown(ctx).encode("utf-8", errors="replace"))
    except OSError as exc:
        raise RegbenchError(f"cannot write the report to {out}: {exc.strerror}") from None
    return {"html": out / "report.html", "markdown": out / "report.md", "figures": fig_dir}


def _atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename: a reader sees the old file or the new
    one, never a half-written one; a failed write leaves no temporary behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- data


def _trials(folder: Path) -> pd.DataFrame:
    """The tuning trials, or an empty frame when the experiment was never tuned."""
    try:
        return load_trials(folder)
    except (sqlite3.Error, pd.errors.DatabaseError):
        return pd.DataFrame()


def _best_values(folder: Path) -> pd.DataFrame:
    """Best tuned values per cell, or an empty frame when the experiment was never tuned."""
    try:
        best = load_best(folder)
    except (sqlite3.Error, pd.errors.DatabaseError):
        return pd.DataFrame()
    best["values"] = best["values"].map(_params_label)
    return best


def _grid_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Grid-stage runs in the lab's order: architecture, regularizer, hyperparameters, seed."""
    grid = runs[runs["stage"].fillna("grid") == "grid"]
    archs, regs = figures.cell_order(runs)
    return grid.assign(
        _a=grid["arch"].map({a: i for i, a in enumerate(archs)}),
        _r=grid["reg"].map({r: i for i, r in enumerate(regs)}),
        _p=grid["params"].map(_params_label),
    ).sort_values(["_a", "_r", "_p", "seed", "run_id"])


def visualized_figures(folder: Path) -> dict[str, list[Path]]:
    """The PNGs `regbench visualize` left in the folder, per run id (its subfolder)."""
    root = folder.joinpath(*VISUALIZE_DIR)
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob("*/**/*.png")):
        found.setdefault(path.relative_to(root).parts[0], []).append(path)
    return found


def _final_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["stage"] == "final"]


def _has_epochs(epochs: pd.DataFrame, run_id: str) -> bool:
    return bool((epochs["run_id"] == run_id).any())


def _render_figures(ctx: _Context) -> None:
    """Render every figure to PNG bytes once: the HTML embeds them, the files reuse them."""
    runs, epochs = ctx.runs, ctx.epochs
    grid = _grid_runs(runs)
    if len(grid):
        for name, caption, figure in (
            (
                "grid",
                "Mean train and validation accuracy per epoch per cell "
                "(rows: architectures, columns: regularizers; band: range across seeds)",
                figures.grid_figure(runs, epochs),
            ),
            (
                "ci_bars",
                "Mean validation accuracy per cell: one dot per seed, 95% confidence interval "
                "of the mean where a cell has two seeds or more",
                figures.ci_bar_figure(ctx.board),
            ),
            (
                "accuracy_vs_time",
                "Validation accuracy against training time, one marker per run",
                figures.accuracy_vs_time_figure(runs),
            ),
        ):
            ctx.overview[name] = _Figure(name, caption, figures.png_bytes(figure))
    every = pd.concat([_drawn(grid), _final_runs(runs)])
    # the runs of one architecture share their y axes, so their curves compare at a glance
    limits = {
        arch: figures.shared_limits(epochs, list(group["run_id"]))
        for arch, group in every.groupby("arch")
    }
    for run in every.itertuples():
        if not _has_epochs(epochs, run.run_id):
            continue
        title = _run_title(run)
        ylims = limits[run.arch]
        if run.stage == "final":
            title = f"final: {title}"
            caption = f"{title}: train accuracy and loss per epoch"
            figure = figures.final_figure(epochs, run.run_id, run.test_accuracy, title, ylims)
        else:
            caption = f"{title}: accuracy and loss per epoch"
            figure = figures.accuracy_figure(epochs, run.run_id, title, ylims)
        ctx.per_run[run.run_id] = _Figure(
            _file_name(run.run_id), caption, figures.png_bytes(figure)
        )


MAX_RUN_FIGURES = 48  # per-run curves drawn at most; every run's epochs stay in epochs.csv


def _drawn(grid: pd.DataFrame) -> pd.DataFrame:
    """The grid runs that get a curve figure: all of them up to MAX_RUN_FIGURES, none beyond,
    so a report of a 1,000-run sweep stays within seconds (the grid figure shows every cell's
    mean and spread across seeds; epochs.csv holds every epoch)."""
    return grid if len(grid) <= MAX_RUN_FIGURES else grid.iloc[:0]


def _curves_note(runs: pd.DataFrame) -> str:
    """Why a large grid's runs have no curve figure of their own ('' when they do)."""
    count = len(_grid_runs(runs))
    if count <= MAX_RUN_FIGURES:
        return ""
    return (
        f"Per-run curves are drawn for grids of up to {MAX_RUN_FIGURES} runs; this one has "
        f"{count:,}. The grid figure shows each cell's mean and spread across seeds, and "
        "epochs.csv holds every run's epochs."
    )


# ---------------------------------------------------------------- table contents


def _leaderboard_rows(board: pd.DataFrame, baseline: str) -> tuple[list[str], list[list[str]]]:
    headers = [
        "#",
        "arch",
        "reg",
        "hyperparameters",
        "val acc ± 95% CI",
        "seeds",
        f"vs {baseline} (paired, ± 95% CI)",
        "verdict (Holm-adjusted p)",
        "train acc (clean)",
        "gap",
        "test acc (not used for ranking)",
        "params",
        "train time (s)",
    ]
    rows = []
    for r in board.itertuples():
        val = _num(r.val_accuracy, ".3f")
        if not _missing(r.val_ci95):  # one seed has no interval
            val += f" ± {_num(r.val_ci95, '.3f')}"
        hp = (r.params or MISSING) + (f" [tuned: {r.tuned}]" if r.tuned else "")
        rows.append(
            [
                str(r.rank),
                r.arch,
                r.reg,
                hp,
                val,
                str(r.seeds),
                _paired(r),
                _verdict(r),
                _num(r.train_accuracy, ".3f"),
                _num(r.gap, "+.3f"),
                _num(r.test_accuracy, ".3f"),
                _num(r.total_params, ",.0f"),
                _num(r.train_time_s, ".1f"),
            ]
        )
    return headers, rows


def _paired(r: Any) -> str:
    if r.verdict == stats.BASELINE or _missing(r.diff):
        return MISSING
    text = _num(r.diff, "+.3f")
    if not _missing(r.diff_ci95):
        text += f" ± {_num(r.diff_ci95, '.3f')}"
    return f"{text} (n={r.n_paired})"


def _verdict(r: Any) -> str:
    if r.verdict == stats.NA and r.n_paired == 1:
        return "n/a (n=1)"
    return str(r.verdict) + ("" if _missing(r.p_holm) else f" (p={r.p_holm:.2g})")


def _failure_rows(runs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    bad = failures(runs)
    return ["run", "arch", "reg", "seed", "status", "error"], [
        [r.run_id, r.arch, r.reg, _num(r.seed, ".0f"), _value(r.status), _value(r.error)]
        for r in bad.itertuples()
    ]


def _final_rows(runs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = [
        "run",
        "arch",
        "reg",
        "hyperparameters",
        "seed",
        "epochs",
        "train images",
        "status",
        "train acc",
        "test acc",
        "train time (min)",
    ]
    return headers, [
        [
            r.run_id,
            r.arch,
            r.reg,
            _params_label(r.params) or MISSING,
            _num(r.seed, ".0f"),
            _num(r.epochs_run, ".0f"),
            _num(r.n_train, ",.0f"),
            _value(r.status),
            _num(r.train_accuracy, ".4f"),
            _num(r.test_accuracy, ".4f"),
            _num(_minutes(r.train_time_s), ".2f"),
        ]
        for r in _final_runs(runs).itertuples()
    ]


def _trial_rows(trials: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    hp = [c for c in trials.columns if c.startswith("hp.")]
    headers = [
        "trial",
        "arch",
        "reg",
        "status",
        "score",
        *[c[3:] for c in hp],
        "train time (s)",
        "error",
    ]
    ordered = trials.sort_values(["arch", "reg", "score"], ascending=[True, True, False])
    return headers, [
        [
            str(r["trial_id"]),
            str(r["arch"]),
            str(r["reg"]),
            _value(r["status"]),
            _num(r["score"], ".4f"),
            *[_value(r[c]) for c in hp],
            _num(r["train_time_s"], ".1f"),
            _value(r["error"]),
        ]
        for _, r in ordered.iterrows()
    ]


def _best_rows(best: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    return ["arch", "reg", "best values", "score"], [
        [r.arch, r.reg, r.values or MISSING, _num(r.score, ".4f")] for r in best.itertuples()
    ]


def _distinct_rows(runs: pd.DataFrame, columns: dict[str, str]) -> list[list[str]]:
    """One row per column: its distinct values across runs (several mean a mixed experiment)."""
    rows = []
    for column, label in columns.items():
        values = sorted({_value(v) for v in runs[column] if _value(v) != MISSING})
        rows.append([label, ", ".join(values) or MISSING])
    return rows


def _summary_rows(summary: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """The lab's model summary: layer rows, then the Total/Trainable/Non-trainable lines."""
    layers = [
        [
            f"{layer.get('name', '')} ({layer.get('type', '')})",
            _shape(layer.get("output_shape")),
            _num(layer.get("params"), ",.0f"),
        ]
        for layer in summary.get("layers", [])
    ]
    totals = [
        f"Total params: {_num(summary.get('total_params'), ',.0f')}",
        f"Trainable params: {_num(summary.get('trainable_params'), ',.0f')}",
        f"Non-trainable params: {_num(summary.get('non_trainable_params'), ',.0f')}",
    ]
    return layers, totals


# ---------------------------------------------------------------- HTML


def _html(ctx: _Context) -> str:
    runs = ctx.runs
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>regbench report: {_esc(ctx.folder.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>regbench report: {_esc(ctx.folder.name)}</h1>",
        f"<p>{'<br>'.join(_esc(line) for line in _header_lines(ctx))}</p>",
        '<h2 id="leaderboard">Leaderboard</h2>',
        "<p>Cells ranked by mean validation accuracy across seeds. Test accuracy is shown for "
        "reference only and is <strong>not used for ranking</strong>.</p>",
        f"<p>{_esc(_verdict_note(ctx.baseline))} Click a column heading to sort.</p>",
        _html_table(*_leaderboard_rows(ctx.board, ctx.baseline), css_class="sortable")
        if len(ctx.board)
        else "<p>No successful grid runs to rank.</p>",
        '<h2 id="figures">Figures</h2>',
        *(
            f"<figure>{fig.img()}<figcaption>{_esc(fig.caption)}</figcaption></figure>"
            for fig in ctx.overview.values()
        ),
        '<h2 id="tables">Per-run results (the lab\'s Tables 1–3)</h2>',
        *([f"<p>{_esc(note)}</p>"] if (note := _curves_note(runs)) else []),
        *_html_lab_tables(ctx),
        '<h2 id="final">Final-stage runs</h2>',
        *_html_final(ctx),
        '<h2 id="visualize">Visualizations</h2>',
        *_html_visualized(ctx),
        '<h2 id="failed">Failed runs</h2>',
        _html_table(*_failure_rows(runs))
        if (runs["status"] != "ok").any()
        else "<p>All runs finished ok.</p>",
        '<h2 id="tuning">Tuning</h2>',
        *_html_tuning(ctx),
        '<h2 id="environment">Environment</h2>',
        "<p>Distinct values across all runs; more than one value means the runs were measured "
        "on different setups.</p>",
        _html_table(["", "value(s)"], _distinct_rows(runs, ENVIRONMENT)),
        f"<script>{SORT_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _html_lab_tables(ctx: _Context) -> list[str]:
    grid = _grid_runs(ctx.runs)
    if grid.empty:
        return ["<p>No grid-stage runs.</p>"]
    parts = []
    archs, _ = figures.cell_order(grid)
    for number, arch in enumerate(archs, start=1):
        rows = []
        for run in grid[grid["arch"] == arch].itertuples():
            time = (
                f"{_num(_minutes(run.train_time_s), '.2f')} min"
                f'<div class="muted">total {_num(_minutes(run.total_time_s), ".2f")} min</div>'
            )
            plot = [
                f"<strong>{_esc(_run_title(run))}</strong>",
                f'<div class="muted"><code>{_esc(run.run_id)}</code> · '
                f"val acc {_num(run.val_accuracy, '.3f')} · "
                f"train acc {_num(run.train_accuracy, '.3f')} · "
                f"test acc {_num(run.test_accuracy, '.3f')} (not used for ranking)</div>",
            ]
            if run.status != "ok":
                plot.append(f'<div class="warn">{_esc(run.status)}: {_esc(run.error or "")}</div>')
            fig = ctx.per_run.get(run.run_id)
            plot.append(fig.img() if fig else '<div class="muted">no epochs recorded</div>')
            rows.append([_Raw(time), _Raw("".join(plot)), _Raw(_html_summary(run.summary))])
        parts += [
            f"<h3>Table {number}: {_esc(arch)}</h3>",
            _html_table(["Time", "Accuracy plot", "Model"], rows),
        ]
    return parts


def _html_summary(text: Any) -> str:
    summary = _summary(text)
    if summary is None:
        return '<span class="muted">no model summary recorded</span>'
    layers, totals = _summary_rows(summary)
    body = "".join(f"<tr>{''.join(f'<td>{_esc(c)}</td>' for c in row)}</tr>" for row in layers)
    foot = (
        '<tr class="total">'
        + "</tr><tr>".join(f'<td colspan="3">{_esc(line)}</td>' for line in totals)
        + "</tr>"
    )
    return (
        '<table class="summary"><tr><th>Layer (type)</th><th>Output Shape</th><th>Param #</th>'
        f"</tr>{body}{foot}</table>"
    )


def _html_final(ctx: _Context) -> list[str]:
    final = _final_runs(ctx.runs)
    if final.empty:
        return [
            "<p>No final-stage runs (retrain the best cell on train+validation and "
            "evaluate once on test).</p>"
        ]
    parts = [_html_table(*_final_rows(ctx.runs))]
    for run in final.itertuples():
        fig = ctx.per_run.get(run.run_id)
        if fig:
            parts.append(
                f"<figure>{fig.img()}<figcaption>{_esc(fig.caption)}; test accuracy "
                f"{_num(run.test_accuracy, '.4f')}</figcaption></figure>"
            )
    return parts


def _html_visualized(ctx: _Context) -> list[str]:
    if not ctx.visualized:
        return [
            "<p>No visualizations in this experiment folder (<code>regbench visualize</code> "
            "draws feature maps, filters and Grad-CAM of a trained run).</p>"
        ]
    parts = []
    for run_id, paths in ctx.visualized.items():
        parts.append(f"<h3><code>{_esc(run_id)}</code></h3>")
        for path in paths:
            caption = f"{run_id}: {path.parent.name} / {path.stem}"
            figure = _Figure(path.stem, caption, path.read_bytes())
            parts.append(f"<figure>{figure.img()}<figcaption>{_esc(caption)}</figcaption></figure>")
    return parts


def _verdict_note(baseline: str) -> str:
    return (
        f"Each cell is compared with the {baseline} cell of its architecture on the seeds both "
        "trained: the mean paired difference in validation accuracy with its 95% t interval, "
        "and a paired t-test whose p-value is Holm-adjusted across all comparisons of the "
        "experiment (better or worse at p < 0.05). One shared seed gives no interval and no test."
    )


def _html_tuning(ctx: _Context) -> list[str]:
    if ctx.trials.empty and ctx.best.empty:
        return ["<p>No tuning results in this experiment.</p>"]
    parts = []
    if len(ctx.best):
        parts += ["<h3>Best values per cell</h3>", _html_table(*_best_rows(ctx.best))]
    if len(ctx.trials):
        parts += ["<h3>Trials</h3>", _html_table(*_trial_rows(ctx.trials))]
    return parts


def _html_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], css_class: str | None = None
) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _esc(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    opening = f'<table class="{css_class}">' if css_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------- Markdown


def _markdown(ctx: _Context) -> str:
    runs = ctx.runs
    lines = [f"# regbench report: {_md_text(ctx.folder.name)}", ""]
    lines += [f"{_md_text(line)}  " for line in _header_lines(ctx)] + [""]
    lines += [
        "## Leaderboard",
        "",
        "Cells ranked by mean validation accuracy across seeds. Test accuracy is shown for "
        "reference only and is **not used for ranking**.",
        "",
        _md_text(_verdict_note(ctx.baseline)),
        "",
    ]
    lines += (
        _md_table(*_leaderboard_rows(ctx.board, ctx.baseline))
        if len(ctx.board)
        else ["No successful grid runs to rank."]
    ) + [""]
    lines += ["## Figures", ""]
    for fig in ctx.overview.values():
        lines += [fig.markdown(), "", f"*{_md_text(fig.caption)}*", ""]
    lines += ["## Per-run results (the lab's Tables 1–3)", ""]
    if note := _curves_note(runs):
        lines += [_md_text(note), ""]
    lines += _md_lab_tables(ctx)
    lines += ["## Final-stage runs", ""]
    final = _final_runs(runs)
    if final.empty:
        lines += ["No final-stage runs.", ""]
    else:
        lines += [*_md_table(*_final_rows(runs)), ""]
        lines += [ctx.per_run[r].markdown() + "\n" for r in final["run_id"] if r in ctx.per_run]
    lines += ["## Visualizations", ""]
    if not ctx.visualized:
        lines += ["No visualizations in this experiment folder.", ""]
    for run_id, paths in ctx.visualized.items():
        lines += [f"### `{run_id}`", ""]
        for path in paths:
            link = Path(os.path.relpath(path, ctx.out)).as_posix()
            lines += [f"![{_md_text(f'{path.parent.name} / {path.stem}')}]({link})", ""]
    lines += ["## Failed runs", ""]
    lines += (
        _md_table(*_failure_rows(runs))
        if (runs["status"] != "ok").any()
        else ["All runs finished ok."]
    ) + [""]
    lines += ["## Tuning", ""]
    if ctx.trials.empty and ctx.best.empty:
        lines += ["No tuning results in this experiment.", ""]
    if len(ctx.best):
        lines += ["### Best values per cell", "", *_md_table(*_best_rows(ctx.best)), ""]
    if len(ctx.trials):
        lines += ["### Trials", "", *_md_table(*_trial_rows(ctx.trials)), ""]
    lines += [
        "## Environment",
        "",
        *_md_table(["", "value(s)"], _distinct_rows(runs, ENVIRONMENT)),
        "",
    ]
    return "\n".join(lines)


def _md_lab_tables(ctx: _Context) -> list[str]:
    grid = _grid_runs(ctx.runs)
    if grid.empty:
        return ["No grid-stage runs.", ""]
    lines: list[str] = []
    archs, _ = figures.cell_order(grid)
    for number, arch in enumerate(archs, start=1):
        mine = grid[grid["arch"] == arch]
        rows = []
        for run in mine.itertuples():
            fig = ctx.per_run.get(run.run_id)
            status = "" if run.status == "ok" else f" ({run.status}: {run.error or ''})"
            rows.append(
                [
                    f"`{run.run_id}`",
                    _run_title(run) + status,
                    f"{_num(_minutes(run.train_time_s), '.2f')} min",
                    _num(run.val_accuracy, ".3f"),
                    _MdRaw(fig.markdown()) if fig else "no epochs recorded",
                    " / ".join(
                        _num(getattr(run, c), ",.0f")
                        for c in ("total_params", "trainable_params", "non_trainable_params")
                    ),
                ]
            )
        lines += [f"### Table {number}: {_md_text(arch)}", ""]
        lines += _md_table(
            [
                "run",
                "model",
                "time",
                "val acc",
                "accuracy plot",
                "params (total / trainable / non-trainable)",
            ],
            rows,
        )
        lines += ["", f"#### Model summaries: {_md_text(arch)}", ""]
        # One summary per model variant: seeds of a cell share it, cells never do.
        variant = [mine["reg"], mine["params"].map(_params_label), mine["summary"].fillna("")]
        for (_, _, text), group in mine.groupby(variant, sort=False):
            summary = _summary(text)
            names = ", ".join(f"`{r}`" for r in group["run_id"])
            lines += [f"{_md_text(_run_title(group.iloc[0], seed=False))} ({names}):", ""]
            if summary is None:
                lines += ["no model summary recorded", ""]
                continue
            layers, totals = _summary_rows(summary)
            lines += [*_md_table(["Layer (type)", "Output Shape", "Param #"], layers), ""]
            lines += [f"{_md_text(t)}  " for t in totals] + [""]
    return lines


class _MdRaw(str):
    """A Markdown cell that is already Markdown (an image link): not escaped."""


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text if isinstance(text, _MdRaw) else _md_text(text).replace("|", "\\|")

    out = ["| " + " | ".join(cell(h) or " " for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def _md_text(text: str) -> str:
    """Text safe inside Markdown: one line, no raw HTML."""
    return html.escape(" ".join(str(text).split()), quote=False)


# ---------------------------------------------------------------- formatting


def _header_lines(ctx: _Context) -> list[str]:
    runs = ctx.runs
    ok = int((runs["status"] == "ok").sum())
    started = runs["started_at"].dropna()
    span = f", started {started.min()} to {started.max()}" if len(started) else ""
    protocol = "; ".join(
        f"{label}: {values}"
        for label, values in _distinct_rows(runs, PROTOCOL)
        if values != MISSING
    )
    return [
        f"Experiment folder: {ctx.folder.resolve()}",
        f"Report generated: {ctx.generated}",
        f"Runs: {len(runs)} ({ok} ok, {len(runs) - ok} not ok){span}",
        f"Protocol: {protocol or MISSING}",
    ]


def _run_title(run: Any, seed: bool = True) -> str:
    """Like the lab's 'model 1 with no regularization', plus hyperparameters and seed."""
    reg = "no regularization" if run.reg == "none" else run.reg
    label = _params_label(run.params)
    text = f"{run.arch} with {reg}" + (f" ({label})" if label else "")
    return text + (f", seed {_value(run.seed)}" if seed else "")


def _summary(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        summary = json.loads(text)
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def _shape(shape: Any) -> str:
    if not isinstance(shape, list | tuple):
        return MISSING
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _minutes(seconds: Any) -> float | None:
    return None if _missing(seconds) else float(seconds) / 60


def _num(value: Any, spec: str) -> str:
    """`value` in `spec`; a value that rounds to zero never shows as "-0"."""
    if _missing(value):
        return MISSING
    text = format(float(value), spec)
    return format(0.0, spec) if float(text.replace(",", "")) == 0 else text


def _value(value: Any) -> str:
    if _missing(value) or value == "":
        return MISSING
    return f"{value:g}" if isinstance(value, float) else str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _esc(text: Any) -> str:
    return html.escape(str(text))


def _file_name(run_id: str) -> str:
    """A run id as a safe file name (ids are plain, but a store may hold anything)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id).lstrip(".") or "run"
