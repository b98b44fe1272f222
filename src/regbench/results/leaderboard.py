"""The leaderboard: cells ranked by mean validation accuracy across seeds (never by test)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

SPARKS = "▁▂▃▄▅▆▇█"


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (Student's t); 0 for one value."""
    values = values.dropna()
    n = len(values)
    if n < 2:
        return 0.0
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


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


def table(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, reg, hyperparameters) over its ok grid runs, best first."""
    ok = runs[(runs["status"] == "ok") & (runs["stage"].fillna("grid") == "grid")].copy()
    columns = [
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
        "gap",
        "test_accuracy",
        "total_params",
        "train_time_s",
        "val_curve",
    ]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    ok["params_label"] = ok["params"].map(_params_label)
    # a cell is one configuration across seeds (protocol included), never two tries of a seed
    cell_hash = ok["cell_hash"] if "cell_hash" in ok else pd.Series(None, index=ok.index)
    ok["cell"] = cell_hash.fillna(ok["arch"] + "/" + ok["reg"] + "/" + ok["params_label"])
    ok = ok.drop_duplicates(["cell", "seed"], keep="last")
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
                "gap": (group["train_accuracy"] - group["val_accuracy"]).mean(),
                "test_accuracy": group["test_accuracy"].mean(),
                "total_params": int(group["total_params"].iloc[0]),
                "train_time_s": group["train_time_s"].mean(),
                "val_curve": sparkline(curve),
            }
        )
    board = pd.DataFrame(rows).sort_values("val_accuracy", ascending=False, kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[columns].reset_index(drop=True)


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad[["run_id", "arch", "reg", "seed", "status", "error"]].reset_index(drop=True)


def render(runs: pd.DataFrame, epochs: pd.DataFrame, console: Any) -> None:
    """Print the leaderboard and the failed runs with rich (plain text when not a TTY)."""
    from rich.markup import escape
    from rich.table import Table

    board = table(runs, epochs)
    many_seeds = bool(len(board)) and board["seeds"].max() > 1
    out = Table(title="regbench leaderboard (ranked by validation accuracy)", title_justify="left")
    for name, justify in [
        ("#", "right"),
        ("arch", "left"),
        ("reg", "left"),
        ("hyperparameters", "left"),
        ("val acc", "right"),
        ("train acc", "right"),
        ("gap", "right"),
        ("params", "right"),
        ("train s", "right"),
        ("val acc / epoch", "left"),
    ]:
        out.add_column(name, justify=justify)
    for row in board.itertuples():
        val = f"{row.val_accuracy:.3f}"
        if many_seeds:
            val += f" ± {row.val_ci95:.3f} (n={row.seeds})" if row.seeds > 1 else " (n=1)"
        hp = row.params + (f" (tuned: {row.tuned})" if row.tuned else "")
        out.add_row(
            str(row.rank),
            escape(row.arch),  # plugin names are data, not rich markup
            escape(row.reg),
            escape(hp or "-"),
            val,
            f"{row.train_accuracy:.3f}",
            f"{row.gap:+.3f}",
            f"{row.total_params:,}",
            f"{row.train_time_s:.1f}",
            row.val_curve,
        )
    console.print(out)
    bad = failures(runs)
    if len(bad):
        console.print(f"[bold red]{len(bad)} run(s) not ok:[/]")
        for row in bad.itertuples():
            console.print(
                f"  {row.run_id}  {row.status}: {row.error or ''}", markup=False, highlight=False
            )


def to_json(runs: pd.DataFrame, epochs: pd.DataFrame) -> str:
    board = table(runs, epochs)
    return json.dumps(
        {
            "leaderboard": json.loads(board.to_json(orient="records")),
            "failed": json.loads(failures(runs).to_json(orient="records")),
        },
        indent=2,
        ensure_ascii=False,
    )
