"""Probes 3, 4 and 5 of the operator's third round: a column dropped from the store, null and
wrong-typed cells, infinities, and a store whose version claims columns it lacks. Readers list
such rows as damaged instead of crashing or ranking them, the JSON stays valid, and a dropped
column comes back from runs.csv instead of being exported blank over the only copy."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from test_store_migrations import old_store

from regbench.results.reader import load

FAKE = ["--trainer", "fake_trainer:train", "--dataset", "digits", "--epochs", "1"]
GRID = ["run", "--arch", "model1", "--reg", "none,l2,dropout", "--seeds", "2", *FAKE]
pytestmark = pytest.mark.slow  # each test reruns a grid of fake-trainer runs (about 5 s)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """Six finished fake-trainer runs (three cells, two seeds)."""
    from regbench.cli import main

    folder = tmp_path_factory.mktemp("grid") / "b"
    assert main([*GRID, "--experiment", str(folder), "--executor", "inprocess"]) == 0
    return folder


def _copy(finished: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(finished, tmp_path / "b", ignore=shutil.ignore_patterns("*.lock")))


def _edit_csv(folder: Path, row: int, **cells: str) -> None:
    """Change cells of one runs.csv row, and drop the store (so it is rebuilt from the CSV)."""
    with (folder / "runs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[row].update(cells)
    with (folder / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "results.sqlite").unlink()


@pytest.mark.parametrize(
    "cells, why",
    [
        ({"val_accuracy": "abc"}, "stored val_accuracy is missing or not a number"),
        ({"val_accuracy": "inf"}, "stored val_accuracy is missing or not a number"),
        ({"seed": "x"}, "stored seed is missing or not a number"),
        ({"total_params": ""}, None),
    ],
    ids=["text", "inf", "seed", "no-params"],
)
def test_a_wrong_or_missing_figure_is_a_damaged_row_not_a_crash(
    finished, tmp_path, cli, cells, why
):
    folder = _copy(finished, tmp_path)
    started = load(folder).runs.set_index("run_id")["started_at"].to_dict()
    _edit_csv(folder, 1, **cells)
    rerun = cli(*GRID, "--experiment", str(folder))
    assert rerun.returncode == (1 if why else 0), rerun.stderr  # 1: a run of the grid is not ok
    assert "Traceback" not in rerun.stderr, rerun.stderr
    for command in (["leaderboard", str(folder)], ["report", str(folder)]):
        result = cli(*command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    board = json.loads(cli("leaderboard", str(folder), "--json").stdout)  # valid JSON
    damaged = [f for f in board["failed"] if f["status"] == "damaged"]
    assert [f["error"].split(":")[0] for f in damaged] == ([why] if why else [])
    accuracies = [r["val_accuracy"] for r in board["leaderboard"]]
    assert all(a is None or 0 <= a <= 1 for a in accuracies)
    # nothing lost, nothing trained twice
    assert load(folder).runs.set_index("run_id")["started_at"].to_dict() == started


def test_a_dropped_column_comes_back_from_runs_csv(finished, tmp_path, cli, caplog):
    folder = _copy(finished, tmp_path)
    before = load(folder).runs.set_index("run_id")["val_accuracy"]
    with sqlite3.connect(folder / "results.sqlite") as db:
        db.execute("ALTER TABLE runs DROP COLUMN val_accuracy")
    board = json.loads(cli("leaderboard", str(folder), "--json").stdout)  # read-only: a copy
    assert not board["failed"] and len(board["leaderboard"]) == 3
    doctor = cli("doctor", str(folder))
    assert doctor.returncode == 0 and "6 value(s) restored from runs.csv" in caplog.text
    after = load(folder).runs.set_index("run_id")["val_accuracy"]
    assert after.sort_index().tolist() == before.sort_index().tolist()
    with (folder / "runs.csv").open(newline="") as handle:  # the export kept them too
        exported = {r["run_id"]: float(r["val_accuracy"]) for r in csv.DictReader(handle)}
    assert exported == before.to_dict()


@pytest.mark.parametrize("version", [1, 3, 6])
def test_a_store_lacking_columns_its_version_had_upgrades(tmp_path, cli, version):
    """A store that says version 3 but lacks best_values.dataset (which m001 added) is made
    whole before the migrations that need the column run."""
    old_store(tmp_path / "exp", version=version)
    for command in (
        ["leaderboard", str(tmp_path / "exp")],
        ["plan", "--arch", "model1", "--reg", "dropout", "--experiment", str(tmp_path / "exp")],
        ["doctor", str(tmp_path / "exp")],
    ):
        result = cli(*command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_stray_quote_in_runs_csv_costs_only_its_own_row(finished, tmp_path, cli, caplog):
    """An unbalanced quote (`,ok,"oops,` in the second row) ran that cell over the runs after
    it: they are read again one by one, the damaged file is kept aside, and only the row with
    the quote is trained again."""
    folder = _copy(finished, tmp_path)
    started = load(folder).runs.set_index("run_id")["started_at"].to_dict()
    lines = (folder / "runs.csv").read_text().split("\n")
    assert ",ok,," in lines[2]
    lines[2] = lines[2].replace(",ok,,", ',ok,"oops,', 1)
    damaged_id = lines[2].split(",")[0]
    (folder / "runs.csv").write_text("\n".join(lines))
    (folder / "results.sqlite").unlink()
    rerun = cli(*GRID, "--experiment", str(folder))
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
    assert "lacked 5 run(s)" in caplog.text and "kept it as runs.csv.unreadable-" in caplog.text
    assert len(list(folder.glob("runs.csv.unreadable-*"))) == 1
    now = load(folder).runs.set_index("run_id")["started_at"].to_dict()
    assert {k: v for k, v in now.items() if k != damaged_id} == {
        k: v for k, v in started.items() if k != damaged_id
    }
    assert now[damaged_id] != started[damaged_id]  # the one row that could not be read
