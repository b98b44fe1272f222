"""The leaderboard: cells ranked by mean validation accuracy across seeds (never by test)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from regbench.results import stats

SPARKS = "▁▂▃▄▅▆▇█"


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


def _params_label(params: Any) -> str:
    if isinstance(params, str):
        params = json.loads(params or "{}")
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted((params or {}).items())
    )


COLUMNS = [
    "rank",
    "cell",
    "arch",
    "reg",
    "params",
    "tuned",
    "seeds",
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
]


def table(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """One row per (arch, reg, hyperparameters) over its ok grid runs, best first, each with
    its paired comparison against the `baseline` regularizer of its architecture.

    `train_accuracy` (and the gap) is the clean inference-mode figure where the run recorded
    it; `train_accuracy_running` is Keras's running training-mode figure.
    """
    ok = runs[(runs["status"] == "ok") & (runs["stage"].fillna("grid") == "grid")].copy()
    if ok.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok["params_label"] = ok["params"].map(_params_label)
    # a cell is one configuration across seeds (protocol included), never two tries of a seed
    cell_hash = ok["cell_hash"] if "cell_hash" in ok else pd.Series(None, ok.index, object)
    ok["cell"] = cell_hash.fillna(ok["arch"] + "/" + ok["reg"] + "/" + ok["params_label"])
    ok = ok.drop_duplicates(["cell", "seed"], keep="last")
    if "train_accuracy_running" not in ok:
        ok["train_accuracy_running"] = float("nan")
    curves = (
        epochs[(epochs["split"] == "val") & (epochs["metric"] == "accuracy")]
        .merge(ok[["run_id", "cell"]], on="run_id")
        .groupby(["cell", "epoch"])["value"]
        .mean()
    )
    rows = []
    for cell, group in ok.groupby("cell", sort=False):
        arch, reg, label = group.iloc[0][["arch", "reg", "params_label"]]
        curve = curves.loc[cell].tolist() if cell in curves.index.get_level_values(0) else []
        tuned = sorted({k for t in group["tuned"].dropna() for k in json.loads(t or "[]")})
        group = group.sort_values("seed")
        rows.append(
            {
                "cell": cell,
                "arch": arch,
                "reg": reg,
                "params": label,
                "tuned": ", ".join(tuned),
                "seeds": len(group),
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
                    int(s): _number(v)
                    for s, v in zip(group["seed"], group["val_accuracy"], strict=True)
                },
                "run_ids": list(group["run_id"]),
            }
        )
    board = pd.DataFrame(rows).sort_values("val_accuracy", ascending=False, kind="stable")
    board = board.join(stats.versus_baseline(ok, baseline), on="cell")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[COLUMNS].reset_index(drop=True)


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad[["run_id", "arch", "reg", "seed", "status", "error"]].reset_index(drop=True)


COMPACT_BELOW = 120  # terminal columns under which the cost and curve columns are left out


def render(
    runs: pd.DataFrame,
    epochs: pd.DataFrame,
    console: Any,
    baseline: str = "none",
    wide: bool = False,
) -> None:
    """Print the leaderboard and the failed runs with rich (plain text when not a TTY).

    Architecture and regularizer names are never cut: on a terminal narrower than
    COMPACT_BELOW the cost columns, the curve and train accuracy (the gap remains) are left
    out and the numbers drop their spaces. `wide` adds the run ids of each cell.
    """
    from rich.markup import escape
    from rich.table import Table

    board = table(runs, epochs, baseline)
    compact = not wide and console.width < COMPACT_BELOW
    out = Table(
        title="regbench leaderboard (ranked by validation accuracy)",
        title_justify="left",
        padding=(0, 0 if compact else 1),
    )

    def whole(name: str, values: Any) -> dict[str, Any]:
        return {"no_wrap": True, "min_width": max([len(name), *(len(v) for v in values)])}

    columns: list[tuple[str, Any, dict[str, Any], Any]] = [
        ("#", "right", {}, lambda r: str(r.rank)),
        ("arch", "left", whole("arch", board["arch"]), lambda r: escape(r.arch)),
        ("reg", "left", whole("reg", board["reg"]), lambda r: escape(r.reg)),
        ("hyperparameters", "left", {"overflow": "fold"}, _hyperparameters),
        ("n", "right", {}, lambda r: str(r.seeds)),
        ("val acc ± 95% CI", "right", {}, lambda r: _mean_and_ci(r.val_accuracy, r.val_ci95)),
        ("train acc", "right", {}, lambda r: _fmt(r.train_accuracy, ".3f")),
        ("gap", "right", {}, lambda r: _fmt(r.gap, "+.3f")),
        (f"vs {baseline}", "right", {}, _difference),
        ("verdict", "left", {}, _verdict),
        ("params", "right", {}, lambda r: f"{r.total_params:,}"),
        ("train s", "right", {}, lambda r: _fmt(r.train_time_s, ".1f")),
        ("val acc / epoch", "left", {}, lambda r: r.val_curve),
    ]
    if compact:
        dropped = {"train acc", "params", "train s", "val acc / epoch"}
        columns = [c for c in columns if c[0] not in dropped]
    if wide:
        ids = [i for ids in board["run_ids"] for i in ids]
        columns.append(("run ids", "left", whole("run ids", ids), _run_ids))
    for name, justify, options, _ in columns:
        out.add_column(name, justify=justify, **options)
    for row in board.itertuples():
        cells = [cell(row) for *_, cell in columns]
        out.add_row(*(c.replace(" ± ", "±") if compact else c for c in cells))
    console.print(out)
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
        console.print(f"{len(skipped)} cell(s) skipped, not applicable (not ranked):")
        for row in skipped.itertuples():
            console.print(f"  {row.run_id}: {row.error or ''}", markup=False, highlight=False)


def to_json(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str = "none") -> str:
    """The board and the failed runs; missing figures (an interval at n=1) are null."""
    board = table(runs, epochs, baseline)
    return json.dumps(
        {
            "baseline": baseline,
            "leaderboard": [
                {k: _jsonable(v) for k, v in record.items()}
                for record in board.to_dict(orient="records")
            ],
            "failed": json.loads(failures(runs).to_json(orient="records")),
        },
        indent=2,
        ensure_ascii=False,
    )


def _mean_and_ci(mean: float, ci: float | None, sign: str = "") -> str:
    """`0.620 ± 0.050`; one seed has no interval, so only the mean shows."""
    text = _fmt(mean, f"{sign}.3f")
    return text if _missing(ci) else f"{text} ± {ci:.3f}"


def _hyperparameters(row: Any) -> str:
    from rich.markup import escape

    return escape(row.params + (f" (tuned: {row.tuned})" if row.tuned else "") or "-")


def _difference(row: Any) -> str:
    """The mean paired difference from the baseline, with its interval where n > 1."""
    if row.verdict == stats.BASELINE:
        return "-"
    if _missing(row.diff):
        return "n/a"
    text = _mean_and_ci(row.diff, row.diff_ci95, "+")
    return text if row.n_paired == row.seeds else f"{text} (n={int(row.n_paired)})"


def _verdict(row: Any) -> str:
    if row.verdict == stats.NA and row.n_paired == 1:
        return "n=1"
    if row.verdict in (stats.BASELINE, stats.NA) or _missing(row.p_holm):
        return str(row.verdict)
    short = {stats.SAME: "n.s."}.get(row.verdict, row.verdict)
    return f"{short} p={row.p_holm:.2g}"


def _run_ids(row: Any) -> str:
    from rich.markup import escape

    return escape("\n".join(row.run_ids))


def _fmt(value: Any, spec: str) -> str:
    """`value` in `spec`, "-" when missing; a value that rounds to zero never shows "-0"."""
    if _missing(value):
        return "-"
    text = format(float(value), spec)
    return format(0.0, spec) if float(text.replace(",", "")) == 0 else text


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    return None if _missing(value) else float(value)


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and pandas' NA become null, numpy scalars Python numbers."""
    if value is pd.NA or _missing(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
