"""The report's learning curves: per run, per cell (the grid) and per metric a plugin logged;
the canvas they and `board_figures` share.

A figure of several runs draws one protocol's runs (as the leaderboard labels it), and names it
in its title: runs of two protocols are never drawn in one axes, as they are never ranked in one
table; the report draws each protocol's figures apart (`gallery`), and a figure function handed
runs of several protocols refuses them.

Every figure shows what the tables show under the same name: train accuracy is the clean
end-of-training figure (`train_accuracy` in the runs table, measured at the kept epoch), marked
beside the kept epoch's validation accuracy; Keras's per-epoch running training-mode curve is
labelled as such, and a plugin's metric goes by the keys it was logged under. Every function
returns a
matplotlib Figure on the Agg canvas (never pyplot, never an interactive backend), so tests can
count panels and lines and the report can turn each into PNG bytes once. matplotlib is
imported inside functions: importing regbench stays light.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from regbench.errors import RegbenchError
from regbench.results.format import missing, params_label
from regbench.results.leaderboard import counted, protocol_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
SPLITS = ("train", "val")
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange"}
PLUGIN_COLORS = {"train": "tab:green", "val": "tab:purple"}  # never mistaken for Keras's own
SPLIT_LABELS = {"train": "train (running, training mode)", "val": "validation"}
CORE_METRICS = ("accuracy", "loss")  # every run logs these; any other metric is a plugin's
# the runs table's end-of-training figures: the kept weights' clean train and validation scores
END_COLUMNS = {
    "accuracy": {"train": "train_accuracy", "val": "val_accuracy"},
    "loss": {"train": "train_loss", "val": "val_loss"},
}
END_LABELS = {"train": "train (clean, kept weights)", "val": "validation (kept weights)"}
END_DODGE = {"train": -3.5, "val": 3.5}  # points apart, so two equal figures both show
KEPT_LABEL = "kept epoch (best weights restored)"
TEST_LABEL = "test (evaluated once, after training)"
# a hyperparameter setting's look in a sweep: its curves' line style and its end marks' shape
SETTING_STYLES = (("-", "D"), ("--", "s"), (":", "^"), ("-.", "v"), ((0, (5, 1, 1, 1)), "o"))
LAB_REGS = ("none", "l2", "dropout", "batchnorm")

Run = str | Mapping[str, Any]  # a run id, or the run's row of the runs table


def png_bytes(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, rendered once so the report can both save and embed them."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def cell_order(runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Architectures in natural order, regularizers in the lab's order (others after, sorted).

    Runs are stored in start order, which the executor sets by cost; a report reads better in
    the order of the lab's tables.
    """
    archs = sorted(runs["arch"].dropna().unique(), key=_natural)
    regs = sorted(
        runs["reg"].dropna().unique(),
        key=lambda r: (LAB_REGS.index(r) if r in LAB_REGS else len(LAB_REGS), _natural(r)),
    )
    return archs, regs


Limits = dict[str, tuple[float, float]]  # metric -> y-axis range


def split_labels(metric: str) -> dict[str, str]:
    """What each split's curve of `metric` is called. Keras's per-epoch training accuracy and
    loss are running means in training mode (dropout on, batch statistics), not the clean
    end-of-training figure the tables call train accuracy, so they say so; any other metric
    goes by the keys it was logged under."""
    if metric in CORE_METRICS:
        return dict(SPLIT_LABELS)
    return {"train": metric, "val": f"val_{metric}"}


def split_colors(metric: str) -> dict[str, str]:
    return SPLIT_COLORS if metric in CORE_METRICS else PLUGIN_COLORS


def plugin_metrics(epochs: pd.DataFrame) -> list[str]:
    """The metrics besides loss and accuracy that runs logged per epoch (a plugin's callback or
    compiled metric), sorted by name."""
    names = set(epochs["metric"].dropna().astype(str)) - set(CORE_METRICS)
    return sorted(names, key=_natural)


def accuracy_figure(
    epochs: pd.DataFrame, run: Run, title: str | None = None, ylims: Limits | None = None
) -> Figure:
    """The lab's per-run plot: accuracy and loss per epoch, then any metric a plugin logged.

    `run` is a run id, or the run's row: then the figures the tables show (clean train and
    validation accuracy and loss) are marked at the kept epoch. `ylims` (see `shared_limits`)
    puts several runs on the same scales, so that a flat curve does not look dramatic because
    its axis zoomed in."""
    row = _row(run)
    return _curves_figure(epochs, row, title or row["run_id"], ylims)


def shared_limits(epochs: pd.DataFrame, runs: pd.DataFrame) -> Limits:
    """One y range per metric covering every point of the given runs (their curves and their
    end-of-training figures), with a small margin."""
    mine = epochs[epochs["run_id"].isin(runs["run_id"])]
    ends = [
        pd.DataFrame({"metric": metric, "value": runs[column]})
        for metric, columns in END_COLUMNS.items()
        for column in columns.values()
        if column in runs
    ]
    points = pd.concat([mine[["metric", "value"]], *ends])
    limits = {}
    for metric, values in points.groupby("metric")["value"]:
        values = pd.to_numeric(values, errors="coerce").dropna()
        values = values[values.map(math.isfinite)]
        if values.empty:
            continue
        low, high = float(values.min()), float(values.max())
        margin = max((high - low) * 0.05, 0.01)
        limits[str(metric)] = (low - margin, high + margin)
    return limits


def final_figure(
    epochs: pd.DataFrame,
    run: Run,
    test_accuracy: float | None = None,
    title: str | None = None,
    ylims: Limits | None = None,
) -> Figure:
    """The lab's Figure 1: a final-stage run trains on train+validation, so only train curves.

    The one test evaluation goes into the title, and is drawn as a star after the last epoch
    on the accuracy and loss panels (its loss too, where the run recorded it), outside the
    curves' own range if need be.
    """
    row = _row(run)
    if missing(test_accuracy):
        test_accuracy = row.get("test_accuracy")
    test = "not evaluated" if missing(test_accuracy) else f"{test_accuracy:.4f}"
    tested = {"accuracy": test_accuracy, "loss": row.get("test_loss")}
    marks = {k: float(v) for k, v in tested.items() if v is not None and not missing(v)}
    return _curves_figure(
        epochs, row, f"{title or row['run_id']}: test accuracy {test}", ylims, marks
    )


def grid_figure(runs: pd.DataFrame, epochs: pd.DataFrame, protocol: str | None = None) -> Figure:
    """Architectures as rows, regularizers as columns: mean accuracy curves across seeds per
    cell, and the leaderboard's means (clean train and validation accuracy) at the kept epoch.

    The shaded band and the marks' bars are the range across seeds, so a reader sees at once
    whether two cells differ by more than the seeds do. Only ok grid-stage runs count, as in
    the leaderboard; `runs` are one protocol's, named `protocol` in the title (see
    `protocol_title`).
    """
    title = "Mean accuracy per epoch across seeds (band, bar: range across seeds)"
    return _cells_figure(runs, epochs, "accuracy", protocol_title(title, runs, protocol))


def metric_figure(
    runs: pd.DataFrame, epochs: pd.DataFrame, metric: str, protocol: str | None = None
) -> Figure:
    """The grid figure of a metric a plugin logged: its mean per epoch across seeds per cell,
    one line per key it was logged under (`name`, `val_name`); one protocol's runs."""
    title = f"{metric}: mean per epoch across seeds (band: range across seeds)"
    return _cells_figure(runs, epochs, metric, protocol_title(title, runs, protocol))


def protocol_title(title: str, runs: pd.DataFrame, protocol: str | None = None) -> str:
    """`title`, then the protocol its runs were trained under: `protocol` (the label the
    leaderboard gives it among the experiment's protocols), or the runs' own label. Runs of
    several protocols are refused (ValueError): a figure draws one protocol's ok runs."""
    labels = sorted(set(protocol_labels(ok_grid(runs)).dropna()))
    if len(labels) > 1:
        raise ValueError(
            f"these runs hold {len(labels)} protocols ({'; '.join(labels)}): draw each apart"
        )
    return titled(title, protocol if protocol is not None else (labels[0] if labels else ""))


def titled(title: str, protocol: str) -> str:
    """A figure's title with the protocol it draws on a line of its own."""
    return f"{title}\nprotocol: {protocol}" if protocol else title


def _cells_figure(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str, title: str) -> Figure:
    """Architectures as rows, regularizers as columns: `metric`'s mean curve per split and
    hyperparameter setting, and for accuracy and loss the tables' end-of-training figures."""
    from matplotlib.lines import Line2D

    ok = ok_grid(runs)
    archs, regs = cell_order(ok if len(ok) else runs)
    if not archs or not regs:
        raise RegbenchError(f"no runs to draw in the {metric} figure")
    ok = ok.assign(setting=ok["params"].map(params_label))
    curves = epochs[epochs["metric"] == metric].merge(
        ok[["run_id", "arch", "reg", "setting"]], on="run_id"
    )
    stats = curves.groupby(["arch", "reg", "setting", "split", "epoch"])["value"].agg(
        ["mean", "min", "max"]
    )
    labels = split_labels(metric)
    shown = set(stats.index.get_level_values("split"))
    handles = [
        Line2D([], [], color=split_colors(metric)[s], marker="o", markersize=3, label=labels[s])
        for s in SPLITS
        if s in shown
    ]
    ends = END_COLUMNS.get(metric, {})
    handles += [_end_handle(s) for s in SPLITS if s in ends and _measured(ok, ends[s]).any()]
    looks = {reg: _setting_looks(ok[ok["reg"] == reg]) for reg in regs}
    keyed = max((len(k) for k in looks.values() if len(k) > 1), default=0)
    key = 0.16 * math.ceil(keyed / 2)  # inches of the sweep keys above the top row
    head = 0.3 + 0.25 * title.count("\n") + key  # the title's lines and the keys
    width, height = max(6.5, 1.0 + 2.5 * len(regs)), 1.0 + head + 1.9 * len(archs)
    columns = min(len(handles), 4 if width >= 8 else 2) or 1
    legend = 0.25 * math.ceil(len(handles) / columns)
    # fixed margins in inches (labels left, title above, legend below): a constrained layout
    # took half of this figure's drawing time in a 1,000-run report
    figure = new_figure((width, height + legend), layout=None)
    figure.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.15 / width,
        bottom=(0.55 + legend) / (height + legend),
        top=1 - (0.3 + head) / (height + legend),
    )
    axes = figure.subplots(len(archs), len(regs), sharex=True, sharey=True, squeeze=False)
    drawn = set(stats.index.droplevel("epoch"))
    for i, arch in enumerate(archs):
        for j, reg in enumerate(regs):
            ax = axes[i][j]
            ax.set_label(f"cell:{arch}:{reg}")
            cell = ok[(ok["arch"] == arch) & (ok["reg"] == reg)]
            _draw_cell(ax, cell, metric, stats, drawn, looks[reg])
            if cell.empty:
                note(ax, "no ok runs")
            elif not ax.lines:
                note(ax, f"no {metric} logged")
            if i == 0:
                ax.set_title(reg, fontsize=10, pad=6 + 72 * key)
                if len(looks[reg]) > 1:
                    _sweep_key(ax, looks[reg])
            if j == 0:
                ax.set_ylabel(f"{arch}\n{metric}", fontsize=9)
            if i == len(archs) - 1:
                ax.set_xlabel("epoch", fontsize=9)
            integer_epochs(ax)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
    figure.legend(handles=handles, loc="lower center", ncols=columns, fontsize=9, frameon=False)
    figure.suptitle(title, fontsize=11)
    return figure


def _setting_looks(runs: pd.DataFrame) -> dict[str, tuple[Any, str]]:
    """Each hyperparameter setting of a column's runs and its (line style, end-mark shape),
    the same in every architecture's cell of that column."""
    settings = dict.fromkeys(runs["setting"]) if len(runs) else {}
    return {s: SETTING_STYLES[k % len(SETTING_STYLES)] for k, s in enumerate(settings)}


def _sweep_key(ax: Axes, looks: Mapping[str, tuple[Any, str]]) -> None:
    """A sweep's settings, named above the column's top cell (never over its curves)."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            color="gray",
            linestyle=style,
            marker=shape,
            markersize=5,
            markerfacecolor="white",
            markeredgecolor="black",
            label=setting or "default",
        )
        for setting, (style, shape) in looks.items()
    ]
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=min(len(handles), 2),
        fontsize=7,
        frameon=False,
        borderaxespad=0.2,
        handlelength=2.6,
    )


def _draw_cell(
    ax: Axes,
    cell: pd.DataFrame,
    metric: str,
    stats: pd.DataFrame,
    drawn: set[tuple],
    looks: Mapping[str, tuple[Any, str]],
) -> None:
    """One cell's mean curve per hyperparameter setting and split (band: range across seeds)
    and its end-of-training marks, each setting in its column's `looks`."""
    labels, colors = split_labels(metric), split_colors(metric)
    for setting, seeds in cell.groupby("setting", sort=False):
        style, shape = looks[setting]
        for split in SPLITS:
            key = (seeds["arch"].iloc[0], seeds["reg"].iloc[0], setting, split)
            if key not in drawn:
                continue
            curve = stats.loc[key]
            ax.plot(
                curve.index,
                curve["mean"],
                linestyle=style,
                color=colors[split],
                marker="o",
                markersize=2.5,
                linewidth=1.3,
                label=f"{labels[split]} {setting}".strip(),
            )
            if len(seeds) > 1:
                ax.fill_between(
                    curve.index,
                    curve["min"],
                    curve["max"],
                    color=colors[split],
                    alpha=0.15,
                    linewidth=0,
                )
        _end_marks(ax, metric, seeds, setting, shape if len(looks) > 1 else "D")


def _curves_figure(
    epochs: pd.DataFrame,
    run: Mapping[str, Any],
    title: str,
    ylims: Limits | None = None,
    tests: Mapping[str, float] | None = None,
) -> Figure:
    """One panel per metric the run logged (accuracy, loss, then plugins'), a line per split,
    the row's end-of-training figures at the kept epoch, and that epoch where it is not the
    last; `tests` (a final run's test figures, by metric) as a star after the last epoch."""
    mine = epochs[epochs["run_id"] == run["run_id"]]
    if mine.empty:
        raise RegbenchError(f"run {run['run_id']} recorded no epochs to plot")
    metrics = [*CORE_METRICS, *plugin_metrics(mine)]
    last = int(mine["epoch"].max())
    kept = _end_epoch(run, last)
    # A fixed layout in inches: a report draws one of these per run, and constrained layout
    # would double the time of each.
    width, height = 3.2 * len(metrics), 2.9
    figure = new_figure((width, height), layout=None)
    figure.subplots_adjust(
        left=0.55 / width,
        right=1 - 0.1 / width,
        bottom=0.9 / height,
        top=1 - 0.35 / height,
        wspace=0.3,
    )
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_label(metric)
        labels = split_labels(metric)
        for split in SPLITS:
            curve = mine[(mine["metric"] == metric) & (mine["split"] == split)].sort_values("epoch")
            if curve.empty:
                continue
            ax.plot(
                curve["epoch"],
                curve["value"],
                color=split_colors(metric)[split],
                marker="o",
                markersize=3,
                linewidth=1.4,
                label=labels[split],
            )
        for split, column in END_COLUMNS.get(metric, {}).items():
            if not missing(run.get(column)):
                ax.plot([kept], [run[column]], **_end_style(split, ax), label=END_LABELS[split])
        if kept < last:
            ax.axvline(kept, color="gray", linestyle=":", linewidth=1, label=KEPT_LABEL)
        if ylims and metric in ylims:
            ax.set_ylim(*ylims[metric])
        if tests and metric in tests:
            _test_mark(ax, last, tests[metric])
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(metric, fontsize=9)
        ax.tick_params(labelsize=8)
        integer_epochs(ax)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(
        handles.values(),
        handles.keys(),
        loc="lower center",
        ncols=min(len(handles), 2 * len(metrics) - 1),
        fontsize=7,
        frameon=False,
    )
    figure.suptitle(title, fontsize=10)
    return figure


def _test_mark(ax: Axes, epoch: int, value: float) -> None:
    """The one test evaluation, a star after the last epoch, the axis widened to hold it."""
    ax.plot(
        [epoch], [value], marker="*", markersize=11, color="tab:red", linestyle="", label=TEST_LABEL
    )
    ax.annotate(
        f"test {value:.3f}",
        (epoch, value),
        textcoords="offset points",
        xytext=(-6, 6),
        ha="right",
        fontsize=7,
        color="tab:red",
    )
    low, high = ax.get_ylim()
    pad = 0.02 * abs(high - low)
    ax.set_ylim(min(low, value - pad), max(high, value + pad))


def _end_style(split: str, ax: Axes | None = None) -> dict[str, Any]:
    """A diamond in the split's colour: the tables' figure, not a point of Keras's curve;
    on `ax`, dodged sideways by a few points so the train and validation marks never hide
    each other."""
    from matplotlib.transforms import offset_copy

    figure: Any = None if ax is None else ax.figure
    dodge = (
        {}
        if ax is None
        else {"transform": offset_copy(ax.transData, figure, x=END_DODGE[split], units="points")}
    )
    return {
        **dodge,
        "linestyle": "",
        "marker": "D",
        "markersize": 6,
        "color": SPLIT_COLORS[split],
        "markeredgecolor": "black",
        "zorder": 3,
    }


def _end_handle(split: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], **_end_style(split), label=END_LABELS[split])


def _end_marks(ax: Axes, metric: str, seeds: pd.DataFrame, setting: str, shape: str = "D") -> None:
    """The mean end-of-training figures of a setting's seeds (what the leaderboard averages)
    at their mean kept epoch, each bar the range across seeds; `shape` tells a sweep's
    settings apart (a diamond where there is one)."""
    for split, column in END_COLUMNS.get(metric, {}).items():
        found = _measured(seeds, column)
        if not found.any():
            continue
        measured, values = seeds[found], pd.to_numeric(seeds[column][found])
        x = sum(_end_epoch(r, 1) for r in measured.to_dict("records")) / len(measured)
        mean = float(values.mean())
        spread = [[mean - values.min()], [values.max() - mean]]
        style = {**_end_style(split, ax), "marker": shape, "ecolor": "black", "elinewidth": 0.8}
        ax.errorbar(
            [x], [mean], yerr=spread, **style, label=f"{END_LABELS[split]} {setting}".strip()
        )


def _measured(runs: pd.DataFrame, column: str) -> pd.Series:
    """Which runs hold a value in `column` (none where the table lacks it)."""
    if column not in runs:
        return pd.Series(False, index=runs.index)
    return pd.to_numeric(runs[column], errors="coerce").notna()


def _end_epoch(run: Mapping[str, Any], last: int) -> int:
    """The epoch whose weights the run ended with: its kept epoch, else the epochs it ran,
    else `last` (the last recorded)."""
    for column in ("kept_epoch", "epochs_run"):
        value = run.get(column)
        if not missing(value):
            return int(value)  # type: ignore[arg-type]
    return last


def _row(run: Run) -> Mapping[str, Any]:
    return {"run_id": run} if isinstance(run, str) else run


# ---------------------------------------------------------------- helpers


def new_figure(
    figsize: tuple[float, float], layout: Literal["constrained", "tight"] | None = "constrained"
) -> Figure:
    """A figure on the Agg canvas, never pyplot's: no global state, no interactive backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def note(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")


def empty(ax: Axes, message: str) -> None:
    note(ax, message)
    ax.set_axis_off()


def ok_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the leaderboard counts (ok grid runs of the plugins' current versions)."""
    return counted(runs)


def integer_epochs(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    low, high = ax.get_xlim()
    if high - low < 1:  # a single epoch: give the lone point whole-number neighbours
        middle = round((low + high) / 2)
        ax.set_xlim(middle - 1, middle + 1)


def _natural(text: str) -> tuple:
    """'model10' after 'model9': split digits out so they compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))
