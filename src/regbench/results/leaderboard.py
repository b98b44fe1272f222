"""The leaderboard: cells ranked by mean validation accuracy across seeds (never by test).

Runs of different protocols (PROTOCOL_COLUMNS: epochs, schedule, optimizer, ...) are never
pooled or ranked together: each protocol is a group of its own, ranked within itself, and every
entry carries its protocol (`epochs`, and a `protocol` label naming the epochs and whatever else
tells the groups apart, e.g. "epochs=10, lr_schedule=cosine").

A cell is one configuration across seeds. It counts its planned seeds (every grid run of the
cell, failed and diverged ones included, skipped ones not) beside the seeds that finished ok:
its mean is over the latter, so a cell that lost a seed is flagged (`failed`, `flag`).

Ties: cells whose mean validation accuracy is equal at the printed precision (3 decimals)
share a rank (competition ranking: 1, 2, 2, 4), marked `tied` (shown "2=" in the table).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pandas as pd

from regbench.engine.plan import PROVENANCE, provenance_parts
from regbench.results import protocols, stats
from regbench.results.format import (
    as_printed,
    fmt,
    jsonable,
    mean_and_ci,
    missing,
    number,
    params_label,
)

SPARKS = "▁▂▃▄▅▆▇█"
TIE_NOTE = "= tied: equal mean validation accuracy at the printed precision (3 decimals)"
LOST_NOTE = "! a seed failed or diverged: the mean is over the seeds that finished (ok/planned)"
SUPERSEDED_NOTE = (
    "{n} run(s) trained with an earlier version of their plugins are superseded by newer runs "
    "of the same cell: not shown (`regbench report` lists every plugin version used)"
)


def ci95(values: pd.Series) -> float | None:
    """Half-width of the 95% confidence interval of the mean (Student's t); None for one value,
    which has no interval."""
    values = values.dropna()
    n = len(values)
    if n < 2:
        return None
    return stats.t_quantile(0.975, n - 1) * float(values.std(ddof=1)) / math.sqrt(n)


def sparkline(values: list[float]) -> str:
    """Unicode bars for a short series (validation accuracy per epoch)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(7, int((v - low) / span * 7.999))] for v in values)


COLUMNS = [
    "rank",
    "tied",
    "protocol",
    "epochs",
    "cell",
    "arch",
    "reg",
    "params",
    "tuned",
    "seeds",
    "planned",
    "failed",
    "flag",
    "val_accuracy",
    "val_ci95",
    "train_accuracy",
    "train_accuracy_running",
    "gap",
    "test_accuracy",
    "total_params",
    "train_time_s",
    "val_curve",
    *stats.COLUMNS,
    "val_by_seed",
    "run_ids",
    "protocol_values",
    *PROVENANCE,
]


def table(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """One row per (arch, reg, hyperparameters, protocol) over its ok grid runs, grouped by
    protocol and ranked within it, each with its paired comparison against the `baseline`
    regularizer of its architecture and protocol.

    `seeds` counts the seeds that finished ok, `planned` every seed the grid ran (failed and
    diverged included), `failed` those that did not finish and `flag` says how they ended.
    `train_accuracy` (and the gap) is the clean inference-mode figure where the run recorded
    it; `train_accuracy_running` is Keras's running training-mode figure.
    """
    attempted, old = _attempted(runs)
    if not (attempted["status"] == "ok").any():
        return pd.DataFrame(columns=COLUMNS)
    attempted["cell"] = _cells(attempted)
    ok = attempted[attempted["status"] == "ok"].drop_duplicates(["cell", "seed"], keep="last")
    shown = protocols.differing(ok["_protocol"])
    if "train_accuracy_running" not in ok:
        ok = ok.assign(train_accuracy_running=float("nan"))
    curves = (
        epochs[(epochs["split"] == "val") & (epochs["metric"] == "accuracy")]
        .merge(ok[["run_id", "cell"]], on="run_id")
        .groupby(["cell", "epoch"])["value"]
        .mean()
    )
    lost = _lost_seeds(attempted)
    rows = []
    for cell, group in ok.groupby("cell", sort=False):
        first = group.iloc[0]
        curve = curves.loc[cell].tolist() if cell in curves.index.get_level_values(0) else []
        tuned = sorted({k for t in group["tuned"].dropna() for k in json.loads(t or "[]")})
        group = group.sort_values("seed")
        ended = lost.get(cell, Counter())
        rows.append(
            {
                "protocol": protocols.label(first["_protocol"], shown),
                "epochs": first.get("epochs"),
                "cell": cell,
                "arch": first["arch"],
                "reg": first["reg"],
                "params": first["params_label"],
                "tuned": ", ".join(tuned),
                "seeds": len(group),
                "planned": len(group) + sum(ended.values()),
                "failed": sum(ended.values()),
                "flag": ", ".join(f"{n} {status}" for status, n in sorted(ended.items())),
                "val_accuracy": group["val_accuracy"].mean(),
                "val_ci95": ci95(group["val_accuracy"]),
                "train_accuracy": group["train_accuracy"].mean(),
                "train_accuracy_running": group["train_accuracy_running"].mean(),
                "gap": (group["train_accuracy"] - group["val_accuracy"]).mean(),
                "test_accuracy": group["test_accuracy"].mean(),
                "total_params": int(group["total_params"].iloc[0]),
                "train_time_s": group["train_time_s"].mean(),
                "val_curve": sparkline(curve),
                "val_by_seed": {
                    int(s): number(v)
                    for s, v in zip(group["seed"], group["val_accuracy"], strict=True)
                },
                "run_ids": list(group["run_id"]),
                "protocol_values": dict(first["_protocol"]),
                # one provenance per cell: the cell hash holds it, and older ones are superseded
                **{key: None if missing(first.get(key)) else str(first[key]) for key in PROVENANCE},
            }
        )
    board = _ranked(pd.DataFrame(rows))
    board = board.join(stats.versus_baseline(ok, baseline, attempted=attempted), on="cell")
    board = board[COLUMNS].reset_index(drop=True)
    board.attrs["superseded"] = old
    return board


def ranked(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the leaderboard ranks: ok grid runs, less those superseded by a newer version
    of their plugins. Figures draw these, so they show what the table shows."""
    attempted, _ = _attempted(runs)
    return runs.loc[attempted.index[attempted["status"] == "ok"]]


def _attempted(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Grid runs that were trained (not skipped), with their protocol and values label, less
    the superseded ones; and how many those were."""
    grid = runs[runs["stage"].fillna("grid") == "grid"]
    attempted = grid[grid["status"] != "skipped"].copy()
    if attempted.empty:
        return attempted, 0
    attempted["_protocol"] = protocols.values(attempted, protocols.columns(attempted))
    attempted["params_label"] = attempted["params"].map(params_label)
    old = _superseded(attempted)
    return attempted[~old], int(old.sum())


def _superseded(attempted: pd.DataFrame) -> pd.Series:
    """Runs superseded by a newer plugin version: where one configuration (architecture,
    regularizer, values, protocol) was trained with plugins of several provenances (the
    cell_hash includes it), only the runs of the provenance that ran last count; the older
    ones would otherwise show as a second, indistinguishable cell. A row that recorded no
    provenance (an older store) is no version: it neither supersedes nor is superseded."""
    present = [c for c in PROVENANCE if c in attempted]
    if not present or attempted.empty:
        return pd.Series(False, index=attempted.index)
    same = attempted["arch"].astype(str) + "/" + attempted["reg"].astype(str) + "/"
    same += attempted["params_label"] + "/" + attempted["_protocol"].map(_protocol_key)
    source = attempted[present].fillna("").map(str).agg("|".join, axis=1)
    when = attempted.get("started_at", pd.Series("", index=attempted.index))
    known = source.str.strip("|") != ""
    last = pd.DataFrame({"same": same, "source": source, "when": when.fillna("").astype(str)})
    last = last[known].sort_values("when", kind="stable").drop_duplicates("same", keep="last")
    latest = same.map(last.set_index("same")["source"])
    return known & latest.notna() & (source != latest)


def _protocol_key(protocol: Any) -> str:
    return repr(protocols.key(protocol))


def _cells(rows: pd.DataFrame) -> pd.Series:
    """Each row's cell: its cell_hash (protocol included), or for rows without one its arch,
    regularizer and values, and the protocol where the rows hold several."""
    several = protocols.differing(rows["_protocol"])
    fallback = rows["arch"] + "/" + rows["reg"] + "/" + rows["params_label"]
    if several:
        suffix = [f" [{protocols.label(p, several)}]" for p in rows["_protocol"]]
        fallback = fallback + pd.Series(suffix, index=rows.index)
    cell_hash = rows["cell_hash"] if "cell_hash" in rows else pd.Series(None, rows.index, object)
    return cell_hash.fillna(fallback)


def _lost_seeds(attempted: pd.DataFrame) -> dict[str, Counter]:
    """cell -> how its seeds that never finished ok ended (failed: 1, diverged: 2, ...)."""
    finished = attempted.assign(_ok=attempted["status"] == "ok")
    last = finished.sort_values("_ok", kind="stable").drop_duplicates(["cell", "seed"], keep="last")
    bad = last[~last["_ok"]]
    return {cell: Counter(map(str, g["status"])) for cell, g in bad.groupby("cell", sort=False)}


def _ranked(board: pd.DataFrame) -> pd.DataFrame:
    """Protocol groups in order of appearance, each ranked by its mean at the printed
    precision (best first; equal figures share a rank and are marked tied)."""
    printed = board["val_accuracy"].map(as_printed)
    board = board.assign(_printed=printed, _group=pd.factorize(board["protocol"])[0])
    board = board.sort_values(
        ["_group", "_printed", "val_accuracy"], ascending=[True, False, False], kind="stable"
    )
    by_group = board.groupby("_group")["_printed"]
    board["rank"] = by_group.rank(method="min", ascending=False).astype(int)
    board["tied"] = by_group.transform(lambda s: s.duplicated(keep=False))
    return board


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad[["run_id", "arch", "reg", "seed", "status", "error"]].reset_index(drop=True)


# left out, and said so, when the whole table would not fit the terminal
COMPACT_DROPS = ("train acc", "gap", "params", "train s", "val acc / epoch")


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
    board = table(runs, epochs, baseline)
    for label, group in board.groupby("protocol", sort=False):
        out, width = _table(group, str(label), baseline, compact=False)
        if width > console.width:
            out, _ = _table(group, str(label), baseline, compact=True)
            console.print(f"(narrow: {', '.join(COMPACT_DROPS)} left out)")
        console.print(out)
        if wide:
            for row in group.itertuples():
                rank = f"  {row.rank}{'=' if row.tied else ''}"
                for line in _packed(f"{rank} built by", _built_by(row), console.width):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
                for run_id in row.run_ids:
                    console.print(f"{rank} {run_id}", markup=False, highlight=False, soft_wrap=True)
    if board["tied"].any():
        console.print(TIE_NOTE, markup=False, highlight=False)
    if (board["failed"] > 0).any():
        console.print(LOST_NOTE, markup=False, highlight=False)
    if board.attrs.get("superseded"):
        note = SUPERSEDED_NOTE.format(n=board.attrs["superseded"])
        console.print(note, markup=False, highlight=False)
    _print_failures(runs, console)


def _table(board: pd.DataFrame, label: str, baseline: str, compact: bool) -> tuple[Any, int]:
    """One protocol's ranking as a rich table, and the width it takes unwrapped."""
    from rich.markup import escape
    from rich.table import Table

    heading = f": {label}" if label else ""
    out = Table(
        title=escape(f"regbench leaderboard{heading} (ranked by validation accuracy)"),
        title_justify="left",
        padding=(0, 0 if compact else 1),
    )

    def whole(name: str, values: Any) -> dict[str, Any]:
        return {"no_wrap": True, "min_width": max([len(name), *(len(v) for v in values)])}

    number = {"no_wrap": True}  # a figure is never split across lines

    columns: list[tuple[str, Any, dict[str, Any], Any]] = [
        ("#", "right", number, lambda r: f"{r.rank}=" if r.tied else str(r.rank)),
        ("arch", "left", whole("arch", board["arch"]), lambda r: escape(r.arch)),
        ("reg", "left", whole("reg", board["reg"]), lambda r: escape(r.reg)),
        ("hyperparameters", "left", whole("", _value_items(board)), _hyperparameters),
        ("n", "right", {"no_wrap": True}, _seeds),
        ("val acc ± 95% CI", "right", number, lambda r: mean_and_ci(r.val_accuracy, r.val_ci95)),
        ("train acc", "right", number, lambda r: fmt(r.train_accuracy, ".3f")),
        ("gap", "right", number, lambda r: fmt(r.gap, "+.3f")),
        (f"vs {escape(baseline)}", "right", number, _difference),
        ("verdict", "left", {}, _verdict),
        ("params", "right", number, lambda r: f"{r.total_params:,}"),
        ("train s", "right", number, lambda r: fmt(r.train_time_s, ".1f")),
        ("val acc / epoch", "left", {}, lambda r: r.val_curve),
    ]
    if compact:
        columns = [c for c in columns if c[0] not in COMPACT_DROPS]
    for name, justify, options, _ in columns:
        out.add_column(name, justify=justify, **options)
    widths = [len(name) for name, *_ in columns]
    for row in board.itertuples():
        cells = [cell(row) for *_, cell in columns]
        cells = [c.replace(" ± ", "±") if compact else c for c in cells]
        lines = [max(len(line) for line in c.split("\n")) for c in cells]
        widths = [max(pair) for pair in zip(widths, lines, strict=True)]
        out.add_row(*cells)
    # unwrapped: each column's widest line, its padding and a border
    return out, sum(widths) + len(widths) * (1 if compact else 3) + 1


def _built_by(row: Any) -> list[str]:
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


def _packed(head: str, items: list[str], width: int) -> list[str]:
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


def _print_failures(runs: pd.DataFrame, console: Any) -> None:
    bad = failures(runs)
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


def to_json(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str = "none") -> str:
    """The board (protocol groups in order, each ranked within itself) and the failed runs;
    missing figures (an interval at n=1) are null."""
    board = table(runs, epochs, baseline)
    return json.dumps(
        {
            "baseline": baseline,
            "protocols": list(dict.fromkeys(board["protocol"])),
            "leaderboard": [
                {k: jsonable(v) for k, v in record.items()}
                for record in board.to_dict(orient="records")
            ],
            "failed": json.loads(failures(runs).to_json(orient="records")),
            "superseded": board.attrs.get("superseded", 0),
        },
        indent=2,
        ensure_ascii=False,
    )


def _hyperparameters(row: Any) -> str:
    from rich.markup import escape

    return escape(row.params + (f" (tuned: {row.tuned})" if row.tuned else "") or "-")


def _seeds(row: Any) -> str:
    """Seeds that finished of those planned, marked "!" when some failed or diverged."""
    return f"{row.seeds}/{row.planned}" + ("!" if row.failed else "")


def _difference(row: Any) -> str:
    """The mean paired difference from the baseline, with its interval where n > 1."""
    if row.verdict == stats.BASELINE:
        return "-"
    if missing(row.diff):
        return "n/a"
    text = mean_and_ci(row.diff, row.diff_ci95, "+")
    return text if row.n_paired == row.seeds else f"{text} (n={int(row.n_paired)})"


def _verdict(row: Any) -> str:
    """The verdict with its Holm-adjusted p; an n/a says why."""
    from rich.markup import escape

    if row.verdict == stats.NA:
        return escape(row.why_na or stats.NA)
    if row.verdict == stats.BASELINE or missing(row.p_holm):
        return str(row.verdict)
    short = {stats.SAME: "n.s."}.get(row.verdict, row.verdict)
    return f"{short} p={row.p_holm:.2g}"


def _value_items(board: pd.DataFrame) -> list[str]:
    """Each `name=value` of the board's hyperparameters: the column is at least as wide as the
    longest, so a value is never split (the column wraps between items only)."""
    return [item for label in board["params"] for item in str(label).split(", ")]
