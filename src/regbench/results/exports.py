"""The tidy CSV exports of a store: written atomically from the database (honouring the
umask), and read back to restore runs a lost or emptied database no longer holds."""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from regbench.plugins.files import replaced
from regbench.results.migrations import EPOCH_COLUMNS, RUN_COLUMNS, TRIAL_COLUMNS, quoted

CSV_TABLES = ("runs", "epochs", "trials")
WHOLE_NUMBERS = [name for name, kind in RUN_COLUMNS.items() if kind.startswith("INTEGER")]
log = logging.getLogger("regbench")


def export_csvs(db: sqlite3.Connection, folder: Path) -> None:
    """Rewrite runs.csv, epochs.csv (and trials.csv) from the database; a table that is
    empty never replaces a CSV that has rows. OSError is left to the caller."""
    import pandas as pd

    for table in CSV_TABLES:
        frame = pd.read_sql_query(f"SELECT * FROM {table}", db)
        if table == "runs":
            for column in frame.columns.intersection(WHOLE_NUMBERS):
                frame[column] = _whole(frame[column])
        target = Path(folder) / f"{table}.csv"
        if frame.empty and (table == "trials" or has_rows(target)):
            continue
        try:
            atomic_csv(frame, target)
        except OSError as exc:
            exc.filename = exc.filename or str(target)  # which export failed, for the message
            raise


def _whole(column: Any) -> Any:
    """An INTEGER column written as whole numbers (2, not 2.0 beside a NULL); left as it is
    when it holds anything else (a damaged store's value is exported as stored)."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().sum() != column.notna().sum() or (numbers.dropna() % 1 != 0).any():
        return column
    return numbers.astype("Int64")


def import_csv(db: sqlite3.Connection, folder: Path) -> int:
    """Add the runs (and their epochs) that runs.csv holds and the database lacks; the
    number added. A lost or emptied database is rebuilt this way from its exports; a CSV
    with lines that cannot be read is kept aside first (see `read_export`)."""
    runs = read_export(Path(folder) / "runs.csv", ("run_id", "config_hash"))
    if runs is None:
        return 0
    known = {r[0] for r in db.execute("SELECT run_id FROM runs")}
    missing = runs[~runs["run_id"].isin(known)].drop_duplicates("run_id", keep="last")
    if missing.empty:
        return 0
    columns = [c for c in RUN_COLUMNS if c in missing.columns]
    epoch_rows = _csv_epochs(folder / "epochs.csv", set(missing["run_id"]))
    trials = read_export(Path(folder) / "trials.csv", ("trial_id", "search_hash"))
    with db:
        db.executemany(
            f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [
                [_from_csv(row[c], RUN_COLUMNS[c]) for c in columns]
                for row in missing.to_dict("records")
            ],
        )
        db.executemany(
            f"INSERT OR REPLACE INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES (?,?,?,?,?,?)",
            epoch_rows,
        )
        if trials is not None:
            names = [c for c in TRIAL_COLUMNS if c in trials.columns]
            db.executemany(
                f"INSERT OR IGNORE INTO trials ({', '.join(quoted(names))}) "
                f"VALUES ({', '.join('?' * len(names))})",
                [
                    [
                        _from_csv(row[c], "REAL" if c in ("score", "train_time_s") else "TEXT")
                        for c in names
                    ]
                    for row in trials.to_dict("records")
                ],
            )
    return len(missing)


def fill_columns(db: sqlite3.Connection, folder: Path, columns: list[str]) -> int:
    """Fill run `columns` that the store lost (a column dropped, then added back empty) from
    runs.csv, where the store holds NULL and the CSV a value; the number of values filled.
    Without this the next export would write the blanks over the only copy of them."""
    runs = read_export(Path(folder) / "runs.csv", ("run_id",), keep=False)
    wanted = [c for c in columns if runs is not None and c in runs.columns and c in RUN_COLUMNS]
    if not wanted:
        return 0
    filled = 0
    with db:
        for row in runs.to_dict("records"):
            for column in wanted:
                value = _from_csv(row[column], RUN_COLUMNS[column])
                if value is not None:
                    filled += db.execute(
                        f'UPDATE runs SET "{column}" = ? WHERE run_id = ? AND "{column}" IS NULL',
                        (value, row["run_id"]),
                    ).rowcount
    return filled


def csv_runs(folder: Path) -> list[dict[str, Any]]:
    """The runs runs.csv holds, as store rows (what a plan counts when the store is gone)."""
    runs = read_export(Path(folder) / "runs.csv", ("run_id", "config_hash"), keep=False)
    if runs is None:
        return []
    return [
        {c: _from_csv(v, RUN_COLUMNS.get(c, "TEXT")) for c, v in row.items()}
        for row in runs.to_dict("records")
    ]


def read_export(path: Path, keys: tuple[str, ...], keep: bool = True) -> Any:
    """The rows of a CSV export that can be read (those with every column in `keys`), or
    None when it has none. A file with lines that cannot be read is renamed aside (`keep`),
    said in one line, so that an export never overwrites it with fewer rows. Runs that a
    stray quote swallowed into the row before them are read again from where they start
    (`_swallowed`); only the row with the stray quote counts as unreadable."""
    if not has_rows(path):
        return None
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        log.warning("regbench: cannot read %s (%s); not restoring from it", path, exc.strerror)
        return None
    frame, bad = _parsed(text)
    frame, damaged = _swallowed(text, frame)
    whole = frame.dropna(subset=[k for k in keys if k in frame]) if keys[0] in frame else None
    lost = len(bad) + damaged + len(frame) - (0 if whole is None else len(whole))
    if lost and keep:
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        log.warning(
            "regbench: %s has %d line(s) that cannot be read; kept it as %s and restored the "
            "%d row(s) that can be",
            path,
            lost,
            aside.name,
            0 if whole is None else len(whole),
        )
    return None if whole is None or whole.empty else whole


def _parsed(text: str) -> tuple[Any, list[Any]]:
    """The rows pandas reads from CSV `text` (as text), and the lines it had to skip."""
    import io

    import pandas as pd

    bad: list[Any] = []
    options = {"dtype": object, "keep_default_na": False, "na_values": [""]}
    try:
        return pd.read_csv(io.StringIO(text), **options), bad
    except (ValueError, pd.errors.ParserError):
        try:
            frame = pd.read_csv(
                io.StringIO(text), engine="python", on_bad_lines=bad.append, **options
            )
        except (ValueError, pd.errors.ParserError):
            frame, bad = pd.DataFrame(), [None]
    return frame, bad


# a runs.csv line that starts a row: its run id (`model1-l2-s3-0123abcd`, `final-...`), a comma
ROW_START = re.compile(r"^((?:final-)?[^,\"\n]+-s\d+-[0-9a-f]{8}),", re.MULTILINE)


def _swallowed(text: str, frame: Any) -> tuple[Any, int]:
    """`frame`, or, when a stray quote swallowed runs (an unbalanced `"` runs its cell on to
    the next quote, over the lines of the runs after it), the runs read one by one from where
    each run's line starts (its id), and the number of rows that still cannot be read."""
    import pandas as pd

    if "run_id" not in frame:
        return frame, 0
    found = list(ROW_START.finditer(text))
    if {m.group(1) for m in found} <= set(frame["run_id"].dropna()):
        return frame, 0
    header = text[: text.index("\n") + 1]
    ends = [m.start() for m in found[1:]] + [len(text)]
    rows, dropped = [], 0
    for start, end in zip(found, ends, strict=True):
        one, bad = _parsed(header + text[start.start() : end])
        if bad or len(one) != 1 or one["run_id"].iloc[0] != start.group(1):
            dropped += 1
        else:
            rows.append(one)
    return (pd.concat(rows, ignore_index=True) if rows else frame.iloc[:0]), dropped


def _csv_epochs(path: Path, run_ids: set[str]) -> list[list[Any]]:
    frame = read_export(path, ("run_id", "epoch", "split", "metric"))
    if frame is None:
        return []
    frame = frame[frame["run_id"].isin(run_ids)]
    kinds = ("TEXT", "INTEGER", "TEXT", "TEXT", "REAL", "REAL")
    return [
        [_from_csv(row[c], kind) for c, kind in zip(EPOCH_COLUMNS, kinds, strict=True)]
        for row in frame.to_dict("records")
    ]


def _from_csv(value: Any, kind: str) -> Any:
    """A CSV cell (a string, or NaN for empty) as the column's SQLite type."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    kind = kind.split()[0]
    try:
        if kind == "INTEGER":
            return int(float(value))
        if kind == "REAL":
            return float(value)
    except ValueError:
        return value
    return str(value)


def has_rows(path: Path) -> bool:
    """Whether a CSV export holds more than its header line."""
    try:
        with open(path, "rb") as handle:
            handle.readline()
            return bool(handle.readline().strip())
    except OSError:
        return False


def atomic_csv(frame: Any, path: Path) -> None:
    with replaced(path) as tmp, open(tmp, "w", newline="") as handle:
        frame.to_csv(handle, index=False)
        handle.flush()
        os.fsync(handle.fileno())
