"""Several experiments side by side: the same cells, and how much each differs from the first.

A cell is matched across experiments by architecture, regularizer and hyperparameters (the
protocol may differ: comparing 10 epochs with 20 is one use). Where two experiments trained
the same seeds, the difference is paired per seed, as against a baseline within one
experiment, and Holm-corrected across all the comparisons shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.errors import RegbenchError
from regbench.results import stats
from regbench.results.leaderboard import _fmt, _jsonable, _mean_and_ci, table
from regbench.results.reader import load

KEY = ["arch", "reg", "params"]


def labels(folders: Sequence[str | Path]) -> list[str]:
    """Short names for the experiments: folder names, or whole paths when names repeat."""
    names = [Path(f).name or str(f) for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def compare(folders: Sequence[str | Path]) -> dict[str, Any]:
    """Every cell of any of the experiments, with each experiment's figures and the paired
    difference of each later experiment from the first."""
    paths = [Path(f) for f in folders]
    if len(paths) < 2:
        raise RegbenchError("compare needs at least two experiment folders")
    names = labels(paths)
    boards = {}
    for name, folder in zip(names, paths, strict=True):
        runs, epochs = load(folder)
        # one cell per key: the best-validated of several protocols in one experiment
        boards[name] = table(runs, epochs).drop_duplicates(KEY).set_index(KEY)
    keys = list(dict.fromkeys(k for board in boards.values() for k in board.index))
    first, *others = names
    results: dict[Any, stats.Paired] = {}
    for key in keys:
        base = boards[first].loc[key] if key in boards[first].index else None
        for name in others:
            if base is not None and key in boards[name].index:
                other = boards[name].loc[key]
                results[(key, name)] = stats.paired(other["val_by_seed"], base["val_by_seed"])
    adjusted = stats.holm({k: r.p_value for k, r in results.items()})
    cells = []
    for key in keys:
        cell: dict[str, Any] = dict(zip(KEY, key, strict=True))
        cell["experiments"] = {name: _figures(boards[name], key) for name in names}
        cell["differences"] = {
            name: _difference(results[(key, name)], adjusted[(key, name)])
            if (key, name) in results
            else None
            for name in others
        }
        cells.append(cell)
    return {"experiments": dict(zip(names, map(str, paths), strict=True)), "cells": cells}


def _figures(board: pd.DataFrame, key: tuple) -> dict[str, Any] | None:
    """One experiment's figures of a cell, or None when it did not train that cell."""
    if key not in board.index:
        return None
    row = board.loc[key]
    columns = ("val_accuracy", "val_ci95", "seeds", "test_accuracy", "gap")
    return {c: _jsonable(row[c]) for c in columns} | {"val_by_seed": row["val_by_seed"]}


def _difference(result: stats.Paired, p_holm: float | None) -> dict[str, Any]:
    return {
        "n_paired": result.n,
        "diff": result.diff,
        "diff_ci95": result.ci95,
        "p_value": result.p_value,
        "p_holm": p_holm,
        "verdict": stats.verdict(result, p_holm),
    }


def to_json(folders: Sequence[str | Path]) -> str:
    return json.dumps(compare(folders), indent=2, ensure_ascii=False)


def render(folders: Sequence[str | Path], console: Any) -> None:
    """The comparison as a rich table: one row per cell, one column per experiment, then the
    difference of each later experiment from the first."""
    from rich.markup import escape
    from rich.table import Table

    result = compare(folders)
    names = list(result["experiments"])
    first = names[0]
    out = Table(title=f"regbench compare (differences from {first})", title_justify="left")
    out.add_column("arch", no_wrap=True)
    out.add_column("reg", no_wrap=True)
    out.add_column("hyperparameters", overflow="fold")
    for name in names:
        out.add_column(f"{escape(name)} val acc (n)", justify="right")
    for name in names[1:]:
        out.add_column(f"{escape(name)} − {escape(first)}", justify="right")
    for cell in result["cells"]:
        row = [escape(cell["arch"]), escape(cell["reg"]), escape(cell["params"] or "-")]
        for name in names:
            figures = cell["experiments"][name]
            row.append(
                "-"
                if figures is None
                else f"{_mean_and_ci(figures['val_accuracy'], figures['val_ci95'])}"
                f" ({figures['seeds']})"
            )
        for name in names[1:]:
            row.append(_shown(cell["differences"][name]))
        out.add_row(*row)
    console.print(out)
    for name, folder in result["experiments"].items():
        console.print(f"{name}: {folder}", markup=False, highlight=False)


def _shown(difference: dict[str, Any] | None) -> str:
    if difference is None:
        return "-"
    if difference["n_paired"] == 0:
        return "no shared seeds"
    text = _mean_and_ci(difference["diff"], difference["diff_ci95"], "+")
    text += f" (n={difference['n_paired']})"
    verdict = difference["verdict"]
    if verdict != stats.NA:
        short = {stats.SAME: "n.s."}.get(verdict, verdict)
        text += f" {short} p={_fmt(difference['p_holm'], '.2g')}"
    return text
