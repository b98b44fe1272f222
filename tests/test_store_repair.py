"""The store under faults, and its repair: a full disk is not damage, an unreadable CSV
is kept, a dropped column is repaired, readers write nothing, a missing store still counts its
CSVs, odd files get one line, superseded plugin versions are not duplicate cells, and a broken
model's advice leads somewhere."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from test_store_damage import FAKE, GRID, filled

from regbench.cli import main
from regbench.results import leaderboard
from regbench.results.lookup import open_model
from regbench.results.reader import load
from regbench.results.store import DB_NAME, Store


def wal_left_by_a_full_disk(folder: Path, runs: int = 6) -> Path:
    """A store as a checkpoint cut short by a full disk leaves it: every committed page in the
    -wal (with its -shm), the main file only its first page, whose header counts them all."""
    whole = filled(folder, runs).read_bytes()
    copy = folder.parent / f"{folder.name}-full"
    copy.mkdir()
    live = sqlite3.connect(folder / "wal.sqlite")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")
    with sqlite3.connect(folder / DB_NAME) as source:
        source.backup(live)  # every page into the WAL
    for suffix in ("-wal", "-shm"):
        shutil.copyfile(folder / f"wal.sqlite{suffix}", copy / f"{DB_NAME}{suffix}")
    live.close()
    page = int.from_bytes(whole[16:18], "big")
    header = bytearray(whole[:page])
    header[18:20] = b"\x02\x02"  # WAL mode
    (copy / DB_NAME).write_bytes(bytes(header))
    shutil.copyfile(folder / "epochs.csv", copy / "epochs.csv")
    (copy / "runs.csv").write_text("run_id,config_hash\n")  # its export failed too
    return copy


def test_a_full_disk_store_is_not_damaged_and_opens_normally(tmp_path, capsys):
    full = wal_left_by_a_full_disk(tmp_path / "E")
    assert len(load(full).runs) == 6  # read through the WAL, not called "truncated"
    assert main(["leaderboard", str(full)]) == 0
    assert "truncated" not in capsys.readouterr().err
    with Store(full) as store:  # the writer checkpoints: the file is whole again
        assert len(store.statuses()) == 6
    assert not (full / f"{DB_NAME}-wal").exists()
    assert len(load(full).runs) == 6


def test_doctor_never_rebuilds_with_fewer_runs_than_the_store_held(tmp_path, capsys):
    full = wal_left_by_a_full_disk(tmp_path / "E")
    assert main(["doctor", str(full)]) == 0
    assert "ok (6 run(s)" in capsys.readouterr().out
    assert len(load(full).runs) == 6 and len(pd.read_csv(full / "runs.csv")) == 6


def test_doctor_rebuilds_a_damaged_store_with_its_readable_runs_and_keeps_it(tmp_path, capsys):
    path = filled(tmp_path, 3)
    (tmp_path / "runs.csv").write_text("run_id,config_hash\n")  # the exports lag behind
    data = bytearray(path.read_bytes())
    data[28:32] = (999).to_bytes(4, "big")  # a header that lies: "truncated"
    path.write_bytes(bytes(data))
    assert main(["doctor", str(tmp_path)]) == 0
    assert "ok (3 run(s)" in capsys.readouterr().out
    assert len(list(tmp_path.glob(f"{DB_NAME}.damaged-*"))) == 1
    path.write_bytes(b"garbage" * 100)
    assert main(["doctor", str(tmp_path)]) == 0  # twice in one second: both kept
    assert len(list(tmp_path.glob(f"{DB_NAME}.damaged-*"))) == 2


def test_a_malformed_runs_csv_is_kept_and_its_readable_rows_restored(tmp_path, caplog):
    filled(tmp_path, 12)
    (tmp_path / DB_NAME).unlink()
    with open(tmp_path / "runs.csv", "a") as handle:
        handle.write("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z," * 4 + "\n")
    original = (tmp_path / "runs.csv").read_bytes()
    grid = [a if a != "model1,model2" else "model1" for a in GRID]  # a 2-run grid
    assert main(["run", *grid, *FAKE, "--experiment", str(tmp_path)]) == 0
    kept = list(tmp_path.glob("runs.csv.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == original
    assert "kept it as runs.csv.unreadable-" in caplog.text
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 12 + 2
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == 12 + 2


def test_a_column_dropped_at_the_current_version_is_repaired(tmp_path, capsys, caplog):
    path = filled(tmp_path, 2)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE runs DROP COLUMN val_accuracy")
    assert main(["leaderboard", str(tmp_path)]) == 0  # read: repaired in a copy in memory
    assert main(["doctor", str(tmp_path)]) == 0
    assert "runs lacked val_accuracy" in capsys.readouterr().out
    with sqlite3.connect(path) as db:
        assert "val_accuracy" in [r[1] for r in db.execute("PRAGMA table_info(runs)")]


def test_reading_a_wal_mode_store_writes_nothing(tmp_path):
    path = filled(tmp_path, 2)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")  # as an earlier version, or a kill, left it
    before = sorted(p.name for p in tmp_path.iterdir())
    assert len(load(tmp_path).runs) == 2
    assert main(["leaderboard", str(tmp_path)]) == 0
    assert main(["plan", *GRID, "--experiment", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_wal_left_without_its_shm_is_read_from_a_copy(tmp_path):
    full = wal_left_by_a_full_disk(tmp_path / "E")
    (full / f"{DB_NAME}-shm").unlink()
    before = {p.name: p.read_bytes() for p in full.iterdir()}
    assert len(load(full).runs) == 6
    assert {p.name: p.read_bytes() for p in full.iterdir()} == before


def test_a_missing_store_plans_from_its_csvs_and_readers_say_how_to_rebuild(tmp_path, capsys):
    filled(tmp_path, 4)
    (tmp_path / DB_NAME).unlink()
    main(["run", *GRID, *FAKE, "--experiment", str(tmp_path)])
    (tmp_path / DB_NAME).unlink()
    capsys.readouterr()
    assert main(["plan", *GRID, "--experiment", str(tmp_path), "--json"]) == 0
    states = [run["state"] for run in json.loads(capsys.readouterr().out)["runs"]]
    assert states.count("done") == 4 and len(states) == 4
    for command in ("leaderboard", "report"):
        assert main([command, str(tmp_path)]) == 2
        assert f"regbench doctor {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize("odd", ["folder", "fifo"])
def test_an_odd_file_in_the_stores_place_gets_one_line_and_doctor_moves_it(tmp_path, odd, capsys):
    path = filled(tmp_path, 2)
    path.unlink()
    path.mkdir() if odd == "folder" else os.mkfifo(path)
    for argv in (["leaderboard", str(tmp_path)], ["plan", *GRID, "--experiment", str(tmp_path)]):
        assert main(argv) == 2  # a FIFO is never opened: no hang
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "regbench doctor" in err, err
    assert main(["doctor", str(tmp_path)]) == 0
    assert "ok (2 run(s)" in capsys.readouterr().out
    assert len(list(tmp_path.glob(f"{DB_NAME}.damaged-*"))) == 1


def test_damaged_pages_give_plan_one_line(tmp_path, capsys):
    from test_store_damage import damaged_pages

    damaged_pages(filled(tmp_path))
    assert main(["plan", *GRID, "--experiment", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_runs_of_a_superseded_plugin_version_are_not_a_duplicate_cell(tmp_path, capsys):
    main(["run", *GRID, *FAKE, "--experiment", str(tmp_path)])
    with sqlite3.connect(tmp_path / DB_NAME) as db:  # the same runs, by an older regbench
        db.execute(
            "INSERT INTO runs SELECT run_id || '-old', config_hash || 'o', cell_hash || 'o', "
            + ", ".join(
                f"'regbench 0.1' AS {c}"
                if c == "reg_source"
                else "'2000-01-01'"
                if c == "started_at"
                else c
                for c in [r[1] for r in db.execute("PRAGMA table_info(runs)")][3:]
            )
            + " FROM runs"
        )
    results = load(tmp_path)
    board = leaderboard.table(results.runs, results.epochs)
    assert len(board) == 4 and board.attrs["superseded"] == 4
    assert main(["leaderboard", str(tmp_path)]) == 0
    assert "4 run(s) trained with an earlier version" in capsys.readouterr().out


def test_a_broken_or_missing_model_says_how_to_retrain_it(tmp_path):
    row = {"run_id": "r1", "arch": "model1", "reg": "l2", "seed": 3}
    row["model_path"] = "models/r1.keras"
    (tmp_path / "models").mkdir()
    for state in ("gone", "broken"):
        if state == "broken":
            (tmp_path / "models" / "r1.keras").write_bytes(b"not a model")
        with pytest.raises(Exception) as raised:
            open_model(pd.Series(row), tmp_path)
        message = str(raised.value)
        assert "--arch model1 --reg l2 --seeds 3, --force" in message
        assert "delete the file" not in message
