"""Several experiments side by side: the same cells, and how much each differs from the first.

A cell is matched across experiments by architecture, regularizer and hyperparameters, and by
the protocol columns that vary inside any one of the experiments: protocols trained side by
side in one folder are never pooled, nor one picked for the others. What is the same inside
each folder may differ between them (comparing 10 epochs with 20 is one use): each
experiment's protocol is labelled, and each difference names the protocol columns it spans.
Where two experiments trained the same seeds, the difference is paired per seed, as against a
baseline within one experiment, and Holm-corrected across all the comparisons shown. A cell
that lost seeds in either experiment is shown (ok/planned, "!") but not compared, as the
leaderboard neither ranks nor tests it (its LOST_RULE). With a `baseline` regularizer, each
experiment's cells also carry their comparison with it inside that experiment, as the
leaderboard's `vs` and verdict columns give it (Holm-corrected within the experiment).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.errors import RegbenchError
from regbench.results import grid_stats, protocols, stats
from regbench.results.format import jsonable, number
from regbench.results.leaderboard import table
from regbench.results.reader import load

KEY = ["arch", "reg", "params", "protocol"]


def labels(folders: Sequence[str | Path]) -> list[str]:
    """Short names for the experiments: folder names, or whole paths when names repeat."""
    names = [Path(f).name or str(f) for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def compare(folders: Sequence[str | Path], baseline: str | None = None) -> dict[str, Any]:
    """Every cell of any of the experiments, with each experiment's figures, its protocol,
    and the paired difference of each later experiment from the first; with `baseline` (a
    regularizer), each experiment's figures also hold `vs_baseline`, its cell against that
    regularizer of its architecture within the experiment."""
    paths = [Path(f) for f in folders]
    if len(paths) < 2:
        raise RegbenchError("compare needs at least two experiment folders")
    names = labels(paths)
    boards = {
        name: table(*load(folder), baseline=baseline or "none")
        for name, folder in zip(names, paths, strict=True)
    }
    within = sorted(
        {c for board in boards.values() for c in protocols.differing(board["protocol_values"])},
        key=list(protocols.PROTOCOL_COLUMNS).index,
    )
    every = [v for board in boards.values() for v in board["protocol_values"]]
    between = [c for c in protocols.differing(every) if c not in within]
    told = between + (["epochs"] if "epochs" not in within else [])
    for name, board in boards.items():
        keyed = [protocols.label(v, within, always=()) for v in board["protocol_values"]]
        # one row per key: the same values and protocol twice only come from two plugin
        # versions (provenance is in the cell hash); the best-ranked stands for them
        boards[name] = board.assign(protocol=keyed).drop_duplicates(KEY).set_index(KEY)
    keys = list(dict.fromkeys(k for board in boards.values() for k in board.index))
    first, *others = names
    results: dict[Any, stats.Paired] = {}
    improvement: dict[Any, dict[str, float | None] | None] = {}
    lost: dict[Any, str] = {}  # comparisons not made: a cell lost seeds
    for key in keys:
        base = boards[first].loc[key] if key in boards[first].index else None
        for name in others:
            if base is not None and key in boards[name].index:
                other = boards[name].loc[key]
                gone = [(n, row) for n, row in ((first, base), (name, other)) if not row["ranked"]]
                if gone:
                    lost[(key, name)] = "; ".join(f"{n} {row['flag']}" for n, row in gone)
                    continue
                results[(key, name)] = stats.paired(other["val_by_seed"], base["val_by_seed"])
                improvement[(key, name)] = _improvement(other["val_by_seed"], base["val_by_seed"])
    adjusted = stats.holm({k: stats.tested(r) for k, r in results.items()})

    def difference(key: tuple, name: str) -> dict[str, Any] | None:
        if (key, name) in results:
            found = _difference(results[(key, name)], adjusted[(key, name)], boards, key, name)
            return {**found, "p_improvement": improvement[(key, name)]}
        if (key, name) in lost:
            return _not_compared(lost[(key, name)], boards, key, name)
        return None  # one of the two never trained the cell

    cells = []
    for key in keys:
        cell: dict[str, Any] = dict(zip(KEY, key, strict=True))
        cell["experiments"] = {name: _figures(boards[name], key, baseline) for name in names}
        cell["differences"] = {name: difference(key, name) for name in others}
        cells.append(cell)
    return {
        "experiments": dict(zip(names, map(str, paths), strict=True)),
        "baseline": baseline,
        "protocols": {name: _protocol(boards[name], told) for name in names},
        "cells": cells,
    }


def _protocol(board: pd.DataFrame, told: list[str]) -> str:
    """The experiment's protocol in the columns that differ between the experiments."""
    if board.empty:
        return ""
    return protocols.label(board["protocol_values"].iloc[0], told, always=())


def _figures(board: pd.DataFrame, key: tuple, baseline: str | None) -> dict[str, Any] | None:
    """One experiment's figures of a cell, or None when it did not train that cell."""
    if key not in board.index:
        return None
    row = board.loc[key]
    columns = ("val_accuracy", "val_ci95", "seeds", "planned", "failed", "test_accuracy", "gap")
    found = {c: jsonable(row[c]) for c in columns} | {
        "val_by_seed": row["val_by_seed"],
        "lost_seeds": row["lost_seeds"],
    }
    if baseline is not None:
        found["vs_baseline"] = {c: jsonable(row[c]) for c in stats.COLUMNS}
    return found


def _difference(
    result: stats.Paired,
    p_holm: float | None,
    boards: dict[str, pd.DataFrame],
    key: tuple,
    name: str,
) -> dict[str, Any]:
    return {
        "n_paired": result.n,
        "diff": result.diff,
        "diff_ci95": result.ci95,
        "p_value": number(result.p_value),
        "p_holm": number(p_holm),
        "p_t": number(result.p_t),
        "verdict": stats.verdict(result, p_holm),
        "why_na": stats.why_untested(result),
        "protocol_differs": _spans(boards, key, name),
    }


def _improvement(a: Any, b: Any) -> dict[str, float | None] | None:
    """P(a > b) over every seed of one against every seed of the other (ties half), with its
    bootstrap interval (results.grid_stats); None without finite seeds on both sides."""
    xs = [float(v) for v in (a or {}).values() if number(v) is not None]
    ys = [float(v) for v in (b or {}).values() if number(v) is not None]
    if not xs or not ys:
        return None
    found = grid_stats.probability_of_improvement([xs], [ys])
    return {"estimate": found.estimate, "low": found.low, "high": found.high}


def _not_compared(
    why: str, boards: dict[str, pd.DataFrame], key: tuple, name: str
) -> dict[str, Any]:
    """A difference not computed because a cell lost seeds (`why`: where, and how)."""
    return {
        "n_paired": None,
        "diff": None,
        "diff_ci95": None,
        "p_value": None,
        "p_holm": None,
        "p_t": None,
        "verdict": stats.NA,
        "why_na": f"lost seeds ({why}): not compared",
        "p_improvement": None,
        "protocol_differs": _spans(boards, key, name),
    }


def _spans(boards: dict[str, pd.DataFrame], key: tuple, name: str) -> list[str]:
    """The protocol columns on which experiment `name`'s cell differs from the first's."""
    first = next(iter(boards))
    ours, theirs = (boards[n].loc[key, "protocol_values"] for n in (name, first))
    return protocols.differing([ours, theirs])


def to_json(folders: Sequence[str | Path], baseline: str | None = None) -> str:
    return json.dumps(compare(folders, baseline), indent=2, ensure_ascii=False)
