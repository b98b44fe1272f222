"""What each of the report's plain tables holds, as display-ready text shared by HTML and Markdown.

A table is headers and rows of strings; the templates decide the markup. The leaderboard's
columns are read from the board by name, so a column the board gains later still shows (under
its own name) instead of breaking the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from regbench.design.plan import PROTOCOL_COLUMNS, PROVENANCE
from regbench.reporting.board_text import lost_text
from regbench.reporting.figures import cell_order
from regbench.results import stats
from regbench.results.format import DIFFERENCE, MISSING, fmt, mean_and_ci, missing, params_label
from regbench.results.leaderboard import failures

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
EMPTY = {"", "{}", "[]"}  # values that say "nothing set" (empty options), shown as missing
SKIPPED = "skipped"  # the status of a cell not trained: not applicable, or conflicting

Row = Mapping[str, Any]


@dataclass
class Table:
    """Headers and rows of text; a sortable table gets click-to-sort headings in HTML."""

    headers: list[str]
    rows: list[list[str]]
    sortable: bool = False


# ---------------------------------------------------------------- text of one value


def text(value: Any) -> str:
    """Any value as a cell: whole floats as integers (a seed), others in %g, lists joined, a
    dict as `name=value`, else str."""
    if isinstance(value, Mapping):
        return params_label(dict(value)) or MISSING
    if isinstance(value, list | tuple | set):
        return ", ".join(text(v) for v in value) or MISSING
    if missing(value) or str(value) in EMPTY:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def minutes(seconds: Any) -> float | None:
    return None if missing(seconds) else float(seconds) / 60


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


# ---------------------------------------------------------------- runs


def grid_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Grid-stage runs in the lab's order: architecture, regularizer, hyperparameters, seed."""
    grid = runs[runs["stage"].fillna("grid") == "grid"]
    archs, regs = cell_order(runs)
    return grid.assign(
        _a=grid["arch"].map({a: i for i, a in enumerate(archs)}),
        _r=grid["reg"].map({r: i for i, r in enumerate(regs)}),
        _p=grid["params"].map(params_label),
    ).sort_values(["_a", "_r", "_p", "seed", "run_id"])


def final_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["stage"] == "final"]


def run_title(run: Row, seed: bool = True) -> str:
    """Like the lab's 'model 1 with no regularization', plus hyperparameters and seed."""
    reg = "no regularization" if run["reg"] == "none" else run["reg"]
    label = params_label(run["params"])
    title = f"{run['arch']} with {reg}" + (f" ({label})" if label else "")
    return title + (f", seed {text(run['seed'])}" if seed else "")


def problem(run: Row) -> str:
    """'status: error' for a run that did not finish ok, '' for one that did."""
    return "" if run["status"] == "ok" else f"{run['status']}: {run['error'] or ''}"


def header_lines(runs: pd.DataFrame) -> list[str]:
    """How many runs, when, and on which protocol (every distinct value of each setting)."""
    ok = int((runs["status"] == "ok").sum())
    skipped = int((runs["status"] == SKIPPED).sum())
    started = runs["started_at"].dropna()
    span = f", started {started.min()} to {started.max()}" if len(started) else ""
    skips = f", {skipped} of them skipped as not applicable" if skipped else ""
    protocol = {c: c.replace("_", " ") for c in PROTOCOL_COLUMNS if c in runs}
    settings = "; ".join(
        f"{label}: {values}" for label, values in distinct_rows(runs, protocol) if values != MISSING
    )
    return [
        f"Runs: {len(runs)} ({ok} ok, {len(runs) - ok} not ok{skips}){span}",
        f"Protocol: {settings or MISSING}",
    ]


def distinct_rows(runs: pd.DataFrame, columns: Mapping[str, str]) -> list[list[str]]:
    """One row per column: its distinct values across runs (several mean a mixed experiment)."""
    rows = []
    for column, label in columns.items():
        values = {text(v) for v in runs[column]} if column in runs else set()
        rows.append([label, ", ".join(sorted(values - {MISSING})) or MISSING])
    return rows


# ---------------------------------------------------------------- tables


Column = tuple[str, Callable[[Row], str]]


SHOWN = {
    "rank",
    "tied",
    "protocol",  # the heading of its ranking
    "arch",
    "reg",
    "params",
    "tuned",
    "seeds",
    "planned",  # in the seeds column, as ok/planned where they differ
    "failed",  # a cell with lost seeds is in its protocol's lost table, which says how
    "flag",
    "lost_seeds",
    "val_accuracy",
    "val_ci95",
    "train_accuracy",
    "gap",
    "test_accuracy",
    "total_params",
    "train_time_s",
    *stats.COLUMNS,
}
# the cell's key, the running train accuracy (the clean one shows), the terminal's sparkline,
# per-seed values (drawn in the CI figure), run ids (in the per-run tables), every protocol
# value and the epochs (the header lists them; the ranking's heading names those that differ),
# and whether the cell is ranked (which table it is in)
NOT_SHOWN = {
    "cell",
    "epochs",
    "ranked",
    "train_accuracy_running",
    "val_curve",
    "val_by_seed",
    "run_ids",
    "protocol_values",
    *PROVENANCE,  # the Plugins section lists them
}


@dataclass
class Ranking:
    """The ranked cells of one protocol, and apart from them its cells that lost seeds (not
    ranked: LOST_RULE); `protocol` says what sets it apart from the others. Either table is
    None when the protocol has no such cell."""

    protocol: str
    table: Table | None
    lost: Table | None = None


def leaderboard(board: pd.DataFrame, baseline: str) -> list[Ranking]:
    """The ranked cells with their paired comparison, one ranking per protocol (ranks restart
    in each); columns the board gains show at the end under their own names. Test accuracy
    shows only where a cell has one (grid runs of older experiments): grid runs never read the
    test split. A protocol's cells that lost seeds follow in a table of their own: how each
    seed ended and the mean of those that finished, with no rank and no comparison."""
    names: list[Column] = [
        ("arch", lambda r: text(r["arch"])),
        ("reg", lambda r: text(r["reg"])),
        ("hyperparameters", _hyperparameters),
    ]
    columns: list[Column] = [
        ("#", lambda r: text(r["rank"]) + ("=" if _yes(r.get("tied")) else "")),
        *names,
        ("val acc ± 95% CI", _mean),
        ("seeds", _seeds),
        (f"vs {baseline} (paired, ± 95% CI)", _paired),
        ("verdict (Holm-adjusted p)", _verdict),
        ("train acc (clean)", lambda r: fmt(r["train_accuracy"], ".3f", MISSING)),
        ("gap", lambda r: fmt(r["gap"], "+.3f", MISSING)),
        ("test acc (not used for ranking)", lambda r: fmt(r["test_accuracy"], ".3f", MISSING)),
        ("params", lambda r: fmt(r["total_params"], ",.0f", MISSING)),
        ("train time (s)", lambda r: fmt(r["train_time_s"], ".1f", MISSING)),
    ]
    if not _any_value(board, "test_accuracy"):
        columns = [c for c in columns if not c[0].startswith("test acc")]
    columns += [_generic(c) for c in board.columns if c not in SHOWN | NOT_SHOWN]
    lost_columns: list[Column] = [
        *names,
        ("seeds", _seeds),
        ("lost seeds", lambda r: lost_text(r["lost_seeds"])),
        ("val acc ± 95% CI (finished seeds)", _mean),
        ("train acc (clean)", lambda r: fmt(r["train_accuracy"], ".3f", MISSING)),
        ("params", lambda r: fmt(r["total_params"], ",.0f", MISSING)),
        ("train time (s)", lambda r: fmt(r["train_time_s"], ".1f", MISSING)),
    ]
    groups = (
        [("", board)]
        if "protocol" not in board
        else board.groupby("protocol", sort=False, dropna=False)
    )
    found = []
    for label, group in groups:
        ranked = group["ranked"].astype(bool)
        found.append(
            Ranking(
                "" if missing(label) else str(label),
                _cells_table(group[ranked], columns, sortable=True),
                _cells_table(group[~ranked], lost_columns, sortable=False),
            )
        )
    return found


def _cells_table(cells: pd.DataFrame, columns: list[Column], sortable: bool) -> Table | None:
    if cells.empty:
        return None
    headers = [header for header, _ in columns]
    return Table(headers, [[cell(r) for _, cell in columns] for r in records(cells)], sortable)


def _mean(r: Row) -> str:
    return mean_and_ci(r["val_accuracy"], r["val_ci95"])


def _any_value(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and bool(frame[column].notna().any())


def _seeds(r: Row) -> str:
    """The seeds that finished ok; of those planned, marked "!", where some did not (the
    leaderboard's LOST_NOTE)."""
    planned = r.get("planned")
    if missing(planned) or planned == r["seeds"]:
        return text(r["seeds"])
    return f"{text(r['seeds'])}/{text(planned)}!"


def _yes(value: Any) -> bool:
    return not missing(value) and bool(value)


def _generic(column: str) -> Column:
    return column.replace("_", " "), lambda r: text(r[column])


def _hyperparameters(r: Row) -> str:
    return (r["params"] or MISSING) + (f" [tuned: {r['tuned']}]" if r.get("tuned") else "")


def _paired(r: Row) -> str:
    if r["verdict"] == stats.BASELINE or missing(r["diff"]):
        return MISSING
    return f"{mean_and_ci(r['diff'], r['diff_ci95'], '+', DIFFERENCE)} (n={r['n_paired']})"


def _verdict(r: Row) -> str:
    """The verdict with its Holm-adjusted p; an n/a says why (`n/a (n=1)`)."""
    if r["verdict"] == stats.NA and not missing(r["n_paired"]) and r["n_paired"] == 1:
        return "n/a (n=1)"
    if r["verdict"] == stats.NA and not missing(r.get("why_na")):
        return f"n/a ({r['why_na']})"
    if r["verdict"] == stats.UNDERPOWERED:
        return str(r.get("why_na") or r["verdict"])
    return str(r["verdict"]) + ("" if missing(r["p_holm"]) else f" (p={r['p_holm']:.2g})")


def failed(runs: pd.DataFrame) -> Table | None:
    """Runs that ended in an error or were cut short; None when there are none."""
    bad = failures(runs)
    bad = bad[bad["status"] != SKIPPED]
    return _rows(bad, ["run", "arch", "reg", "seed", "status", "error"])


def skipped(runs: pd.DataFrame) -> Table | None:
    """Cells never trained: not applicable to the architecture, or a combination whose
    regularizers conflict; the reason says which."""
    bad = failures(runs)
    bad = bad[bad["status"] == SKIPPED].drop(columns="status")
    return _rows(bad, ["run", "arch", "reg", "seed", "reason"])


def _rows(frame: pd.DataFrame, headers: list[str]) -> Table | None:
    if frame.empty:
        return None
    return Table(headers, [[text(v) for v in r.values()] for r in records(frame)])


def final(runs: pd.DataFrame) -> Table | None:
    """The final-stage runs: retrained on train+validation, evaluated once on test."""
    mine = final_runs(runs)
    if mine.empty:
        return None
    headers = ["run", "arch", "reg", "hyperparameters", "seed", "epochs", "train images"]
    headers += ["status", "train acc (clean)", "test acc", "train time (min)"]
    return Table(
        headers,
        [
            [
                r["run_id"],
                r["arch"],
                r["reg"],
                params_label(r["params"]) or MISSING,
                fmt(r["seed"], ".0f", MISSING),
                fmt(r["epochs_run"], ".0f", MISSING),
                fmt(r["n_train"], ",.0f", MISSING),
                text(r["status"]),
                fmt(r["train_accuracy"], ".4f", MISSING),
                fmt(r["test_accuracy"], ".4f", MISSING),
                fmt(minutes(r["train_time_s"]), ".2f", MISSING),
            ]
            for r in records(mine)
        ],
    )


def trials(frame: pd.DataFrame) -> Table | None:
    """Every tuning trial, best first within its cell; one column per tuned hyperparameter."""
    if frame.empty:
        return None
    hp = [c for c in frame.columns if c.startswith("hp.")]
    headers = ["trial", "arch", "reg", "status", "score", *[c[3:] for c in hp]]
    headers += ["train time (s)", "error"]
    ordered = frame.sort_values(["arch", "reg", "score"], ascending=[True, True, False])
    return Table(
        headers,
        [
            [text(r["trial_id"]), text(r["arch"]), text(r["reg"]), text(r["status"])]
            + [fmt(r["score"], ".4f", MISSING), *[text(r[c]) for c in hp]]
            + [fmt(r["train_time_s"], ".1f", MISSING), text(r["error"])]
            for r in records(ordered)
        ],
    )


def best(frame: pd.DataFrame) -> Table | None:
    """The best tuned values per cell (what `run --tuned` trains with)."""
    if frame.empty:
        return None
    return Table(
        ["arch", "reg", "best values", "score"],
        [
            [
                r["arch"],
                r["reg"],
                params_label(r["values"]) or MISSING,
                fmt(r["score"], ".4f", MISSING),
            ]
            for r in records(frame)
        ],
    )


def plugins(runs: pd.DataFrame) -> Table | None:
    """What built each cell: every architecture and regularizer the trained runs used, with
    the plugin distribution and version and the object's source hash or declared version
    (plugins.provenance). A combination `a+b` shows as recorded, one distribution and one hash
    per component joined by "+" (the cell's own code). A name listed twice
    was built by different code in different runs. Runs that recorded none (from before
    regbench did) are left out; None when no run recorded any."""
    trained = runs[runs["status"] != SKIPPED]
    archs, regs = cell_order(trained)
    rows = []
    for kind, column, order in (("architecture", "arch", archs), ("regularizer", "reg", regs)):
        source, digest = f"{column}_source", f"{column}_source_hash"
        if source not in trained:
            continue
        used = trained[trained[source].notna()]
        used = used.assign(_order=used[column].map({n: i for i, n in enumerate(order)}))
        keys = ["_order", column, source, digest]
        counted = used.groupby(keys, sort=True, dropna=False).size()
        rows += [
            [kind, text(name), text(dist), text(code), str(n)]
            for (_, name, dist, code), n in counted.items()
        ]
    if not rows:
        return None
    return Table(["kind", "name", "distribution", "source hash", "runs"], rows)


def environment(runs: pd.DataFrame) -> Table:
    return Table(["", "value(s)"], distinct_rows(runs, ENVIRONMENT))
