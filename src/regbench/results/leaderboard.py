"""The leaderboard: cells ranked by mean validation accuracy across seeds (never by test).

Runs of different protocols (PROTOCOL_COLUMNS: epochs, schedule, optimizer, ...) are never
pooled or ranked together: each protocol is a group of its own, ranked within itself, and every
entry carries its protocol (`epochs`, and a `protocol` label naming the epochs and whatever else
tells the groups apart, e.g. "epochs=10, lr_schedule=cosine").

A cell is one configuration across seeds. It counts its planned seeds (every grid run of the
cell, failed and diverged ones included, skipped ones not) beside the seeds that finished ok.

Lost seeds (LOST_RULE): a cell with a seed that failed or diverged is not ranked (`rank` is
missing, `ranked` false) and gets no verdict, nor does it serve as its architecture's baseline:
its mean over the seeds that survived would read better than the cell is, since the seeds it
lost are the ones that went worst. It is listed after the ranked cells of its protocol, with
how each lost seed ended (`failed`, `flag`, `lost_seeds`), and its mean is over the seeds that
finished. Rerunning the lost seeds (the same command) ranks it.

Ties: cells whose mean validation accuracy is equal at the printed precision (3 decimals)
share a rank (competition ranking: 1, 2, 2, 4), marked `tied` (shown "2=" in the table).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pandas as pd

from regbench.design.plan import PROVENANCE
from regbench.results import protocols, stats
from regbench.results.format import (
    as_printed,
    jsonable,
    missing,
    number,
    params_label,
)

SPARKS = "▁▂▃▄▅▆▇█"
TIE_NOTE = "= tied: equal mean validation accuracy at the printed precision (3 decimals)"
LOST_RULE = (
    "a cell that lost a seed (failed or diverged) is not ranked, gets no verdict and is no "
    "baseline: its mean, over the seeds that finished (ok/planned), is shown apart"
)
LOST_NOTE = f"! {LOST_RULE}"
UNDERPOWERED_NOTE = (
    "underpowered: with fewer than {fewest} shared seeds no difference can reach p < {alpha:g} "
    "by the exact sign-flip test (its smallest p with n seeds is 2/2^n: 0.5 at 2); with the "
    "{m} comparisons here, Holm's correction needs {holm} seeds for a verdict"
)
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
    "ranked",
    "lost_seeds",
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
    diverged included), `failed` those that did not finish, `flag` says how they ended and
    `lost_seeds` which ({seed: status}); a cell with any is not `ranked` (LOST_RULE).
    `train_accuracy` (and the gap) is the clean inference-mode figure where the run recorded
    it; `train_accuracy_running` is Keras's running training-mode figure.
    """
    attempted, old = _attempted(runs)
    if not (attempted["status"] == "ok").any():
        return pd.DataFrame(columns=COLUMNS)
    attempted["cell"] = _cells(attempted)
    ok = attempted[attempted["status"] == "ok"].drop_duplicates(["cell", "seed"], keep="last")
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
        gone = lost.get(cell, {})
        ended = Counter(gone.values())
        rows.append(
            {
                "protocol": first["_label"],
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
                "ranked": not gone,
                "lost_seeds": gone,
                "val_accuracy": group["val_accuracy"].mean(),
                "val_ci95": ci95(group["val_accuracy"]),
                "train_accuracy": group["train_accuracy"].mean(),
                "train_accuracy_running": group["train_accuracy_running"].mean(),
                "gap": (group["train_accuracy"] - group["val_accuracy"]).mean(),
                "test_accuracy": group["test_accuracy"].mean(),
                "total_params": _whole(group["total_params"].iloc[0]),
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
    lost_cells = {
        cell: flag for cell, flag in zip(board["cell"], board["flag"], strict=True) if flag
    }
    versus = stats.versus_baseline(ok, baseline, attempted=attempted, lost=lost_cells)
    board = board.join(versus, on="cell")
    board = board[COLUMNS].reset_index(drop=True)
    board["rank"] = board["rank"].astype("Int64")  # missing for a cell that is not ranked
    board.attrs["superseded"] = old
    return board


def _whole(value: Any) -> int | None:
    """A count as a whole number; None where the store lost it (an older or damaged row)."""
    return None if missing(value) else int(value)


def counted(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the board's figures come from: ok grid runs, less those superseded by a newer
    version of their plugins. Figures draw these, so they show what the table shows."""
    attempted, _ = _attempted(runs)
    return runs.loc[attempted.index[attempted["status"] == "ok"]]


def protocol_labels(runs: pd.DataFrame) -> pd.Series:
    """Each trained grid run's protocol as the board labels it (the heading of its table),
    indexed like `runs`; runs the board leaves out (other stages, skipped, superseded) have
    none. Figures split the runs by it, so each draws one protocol's runs, as a table does."""
    attempted, _ = _attempted(runs)
    found = attempted["_label"] if len(attempted) else pd.Series(dtype=object)
    return found.reindex(runs.index)


def _attempted(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Grid runs that were trained (not skipped), with their protocol, its label (what tells
    it from the other protocols ranked) and their values label, less the superseded ones;
    and how many those were."""
    grid = runs[runs["stage"].fillna("grid") == "grid"]
    attempted = grid[grid["status"] != "skipped"].copy()
    if attempted.empty:
        return attempted, 0
    attempted["_protocol"] = protocols.values(attempted, protocols.columns(attempted))
    attempted["params_label"] = attempted["params"].map(params_label)
    old = _superseded(attempted)
    attempted = attempted[~old]
    # what tells the ranked protocols apart (those with a run that finished, where any did)
    ok = attempted["status"] == "ok"
    shown = protocols.differing(attempted["_protocol"][ok if ok.any() else slice(None)])
    attempted["_label"] = [protocols.label(p, shown) for p in attempted["_protocol"]]
    return attempted, int(old.sum())


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


def _lost_seeds(attempted: pd.DataFrame) -> dict[str, dict[int, str]]:
    """cell -> its seeds that never finished ok and how each ended ({3: "diverged"})."""
    finished = attempted.assign(_ok=attempted["status"] == "ok")
    last = finished.sort_values("_ok", kind="stable").drop_duplicates(["cell", "seed"], keep="last")
    bad = last[~last["_ok"] & last["seed"].notna()].sort_values("seed", kind="stable")
    return {
        cell: {int(s): str(status) for s, status in zip(g["seed"], g["status"], strict=True)}
        for cell, g in bad.groupby("cell", sort=False)
    }


def _ranked(board: pd.DataFrame) -> pd.DataFrame:
    """Protocol groups in order of appearance, each ranked by its mean at the printed
    precision (best first; equal figures share a rank and are marked tied), then its cells
    that lost seeds, unranked, in the order of their names (LOST_RULE)."""
    printed = board["val_accuracy"].map(as_printed)
    order = board["arch"].astype(str) + "/" + board["reg"].astype(str) + "/" + board["params"]
    board = board.assign(
        _printed=printed,
        _group=pd.factorize(board["protocol"])[0],
        _lost=~board["ranked"],
        _name=order.where(~board["ranked"], ""),
    )
    board = board.sort_values(
        ["_group", "_lost", "_name", "_printed", "val_accuracy"],
        ascending=[True, True, True, False, False],
        kind="stable",
    )
    by_group = board[board["ranked"]].groupby("_group")["_printed"]
    board["rank"] = by_group.rank(method="min", ascending=False)  # NaN where not ranked
    tied = by_group.transform(lambda s: s.duplicated(keep=False))
    board["tied"] = tied.astype(bool).reindex(board.index, fill_value=False)
    return board


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad[["run_id", "arch", "reg", "seed", "status", "error"]].reset_index(drop=True)


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
