"""A damaged, foreign, empty or missing store: one line naming the file and what to do (exit
2) for every command, nothing destroyed, and `regbench doctor` rebuilds it from the CSVs."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from regbench.cli import main
from regbench.design.plan import RunSpec
from regbench.errors import RegbenchError
from regbench.results.reader import load
from regbench.results.store import DB_NAME, Store

FAKE = ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
GRID = ["--arch", "model1,model2", "--reg", "none,l2", "--dataset", "synthetic"]
GRID += ["--dataset-option", "size=70", "--dataset-option", "height=8"]
GRID += ["--dataset-option", "width=8", "--epochs", "1", "--seeds", "1"]


def filled(folder: Path, runs: int = 4) -> Path:
    """A store with `runs` ok runs (long summaries, so it spans many pages) and its CSVs."""
    with Store(folder) as store:
        for seed in range(runs):
            spec = RunSpec(arch="model1", reg="none", params={}, seed=seed)
            epochs = [
                {"epoch": 1, "split": "val", "metric": "accuracy", "value": 0.5, "elapsed_s": 0.1}
            ]
            store.record_run(
                {
                    **spec.row(),
                    **{"status": "ok", "val_accuracy": 0.5, "train_accuracy": 0.6},
                    **{"total_params": 1, "summary": "x" * 3000},
                },
                epochs,
            )
    return folder / DB_NAME


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def damaged_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page + 8 : 3 * page] = os.urandom(2 * page - 8)  # pages 2 and 3: the tables' b-trees
    path.write_bytes(bytes(data))


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (name TEXT)")


DAMAGE = [truncated, random_bytes, damaged_pages, zero_bytes, a_folder, foreign]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_reading_a_damaged_store_gives_one_line_naming_it(tmp_path, damage, capsys):
    path = filled(tmp_path)
    damage(path)
    with pytest.raises(RegbenchError) as raised:
        load(tmp_path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    for argv in (["leaderboard", str(tmp_path)], ["report", str(tmp_path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err, err


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_run_and_plan_refuse_a_damaged_store_and_keep_the_csvs(tmp_path, damage, capsys, caplog):
    path = filled(tmp_path)
    damage(path)
    before = (tmp_path / "runs.csv").read_bytes()
    for command in ("plan", "run"):
        fake = FAKE if command == "run" else []  # plan trains nothing: it takes no trainer
        code = main([command, *GRID, *fake, "--experiment", str(tmp_path)])
        err = capsys.readouterr().err
        if damage is zero_bytes and command == "run":  # empty: rebuilt from the CSVs
            assert code == 0, err
            assert "restored them from the CSV exports" in caplog.text
            continue
        if damage is zero_bytes:  # plan reads only: it says how to rebuild
            assert code == 2 and "regbench doctor" in err
            continue
        assert code == 2, err
        assert err.count("\n") == 1 and str(path) in err, err
    if damage is not zero_bytes:
        assert (tmp_path / "runs.csv").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("damage", [truncated, random_bytes, damaged_pages, zero_bytes])
def test_doctor_moves_a_damaged_store_aside_and_rebuilds_it_from_the_csvs(tmp_path, damage, capsys):
    path = filled(tmp_path)
    expected = pd.read_csv(tmp_path / "runs.csv")
    damage(path)
    assert main(["doctor", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 run(s)" in out
    runs = load(tmp_path).runs
    assert sorted(runs["run_id"]) == sorted(expected["run_id"])
    assert (runs["status"] == "ok").all() and sorted(runs["seed"]) == [0, 1, 2, 3]
    assert len(load(tmp_path).epochs) == 4
    assert list(tmp_path.glob(f"{DB_NAME}.damaged-*")) or damage is zero_bytes
    assert main(["doctor", str(tmp_path)]) == 0  # now healthy
    assert "moved aside" not in capsys.readouterr().out


def test_doctor_refuses_a_foreign_database(tmp_path, capsys):
    foreign(filled(tmp_path))
    assert main(["doctor", str(tmp_path)]) == 2
    assert "not a regbench results store" in capsys.readouterr().err


def test_a_missing_store_next_to_csvs_is_rebuilt_not_emptied(tmp_path, caplog):
    path = filled(tmp_path)
    path.unlink()
    assert main(["run", *GRID, *FAKE, "--experiment", str(tmp_path)]) == 0
    assert "restored them from the CSV exports" in caplog.text
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4 + 4  # the four kept, the grid's four new cells added


def test_an_export_never_replaces_rows_with_nothing(tmp_path):
    filled(tmp_path)
    before = (tmp_path / "epochs.csv").read_bytes()
    with Store(tmp_path) as store:
        store.db.execute("DELETE FROM epochs")
        store.db.commit()
        store.export()
    assert (tmp_path / "epochs.csv").read_bytes() == before


def test_csvs_honour_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        filled(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "runs.csv").stat().st_mode & 0o777 == 0o664


def test_reading_leaves_no_wal_or_shm_files(tmp_path):
    filled(tmp_path)
    load(tmp_path)
    main(["leaderboard", str(tmp_path)])
    assert not list(tmp_path.glob(f"{DB_NAME}-*"))


def test_doctor_removes_leftover_temporary_files(tmp_path, capsys):
    filled(tmp_path)
    (tmp_path / ".runs.csv.x1y2").write_text("run_id,half")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / ".model1-none-s0-abc.tmp.keras").write_bytes(b"half a model")
    assert main(["doctor", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("removed the leftover temporary file") == 2 and "ok (4 run(s)" in out
    assert not list(tmp_path.glob(".runs.csv.*")) and not list(tmp_path.glob("models/.*"))


def test_doctor_refuses_a_folder_in_use(tmp_path, capsys):
    filled(tmp_path)
    from test_store_lock import _holder

    proc = _holder(tmp_path)
    try:
        assert main(["doctor", str(tmp_path)]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()


def test_a_writer_killed_mid_transaction_reads_as_its_last_commit(tmp_path):
    """A hot journal (a DELETE-mode transaction whose pages already reached the file) needs a
    rollback that a read-only reader may not do: the reader recovers a private copy."""
    filled(tmp_path / "live", runs=40)
    writer = sqlite3.connect(tmp_path / "live" / DB_NAME, isolation_level=None)
    writer.execute("PRAGMA cache_size=2")  # spill the uncommitted pages into the file
    writer.execute("BEGIN")
    writer.execute("UPDATE runs SET status = 'half', summary = summary || 'y'")
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in (DB_NAME, f"{DB_NAME}-journal", "runs.csv", "epochs.csv"):
        (crashed / name).write_bytes((tmp_path / "live" / name).read_bytes())  # as kill -9 left
    writer.execute("ROLLBACK")
    writer.close()
    before = {p.name: p.read_bytes() for p in crashed.iterdir()}

    assert set(load(crashed).runs["status"]) == {"ok"} and len(load(crashed).runs) == 40
    assert main(["leaderboard", str(crashed)]) == 0
    assert {p.name: p.read_bytes() for p in crashed.iterdir()} == before  # left for the writer
    with Store(crashed) as store:  # the next writer rolls the journal back in place
        assert set(store.statuses().values()) == {"ok"}
    assert not (crashed / f"{DB_NAME}-journal").exists()


def test_whole_number_columns_stay_whole_in_runs_csv_beside_a_null(tmp_path):
    """A skipped row has no passes_per_step: the others still read 2, not 2.0."""
    import csv

    with Store(tmp_path) as store:
        for seed, passes in ((0, 2), (1, None)):
            spec = RunSpec(arch="model1", reg="none", params={}, seed=seed)
            store.record_run({**spec.row(), "status": "ok", "passes_per_step": passes}, [])
    with (tmp_path / "runs.csv").open() as handle:
        cells = {r["seed"]: r["passes_per_step"] for r in csv.DictReader(handle)}
    assert cells == {"0": "2", "1": ""}


@pytest.mark.slow  # 40 runs of 3,000-character summaries, salvaged (about 6 s)
def test_doctor_salvages_every_row_off_the_damaged_page(tmp_path, capsys):
    """One damaged leaf page of the runs table loses only the runs on it: the rows after it
    are read by rowid (the probe: a 1,200-run store with page 96 damaged and runs.csv cut
    to 100 rows gave 599 runs back and retrained 591)."""
    path = filled(tmp_path, runs=40)  # a run's 3,000-character summary: one run a page
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ids = [r[0] for r in db.execute("SELECT run_id FROM runs ORDER BY rowid")]
    lines = (tmp_path / "runs.csv").read_text().splitlines(keepends=True)
    (tmp_path / "runs.csv").write_text("".join(lines[:6]))  # the CSV holds 5 runs
    data, size = bytearray(path.read_bytes()), int.from_bytes(path.read_bytes()[16:18], "big")
    page = data.find(b"x" * 3000, size * 20) // size  # a page holding a run's summary
    data[page * size : (page + 1) * size] = b"\xff" * size  # one leaf page of runs, midway
    path.write_bytes(bytes(data))
    assert main(["doctor", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    held = set(load(tmp_path).runs["run_id"])
    assert "moved it aside" in out and len(held) >= 38, out  # the page's run, and its neighbour's
    assert {ids[0], ids[-1]} <= held


def _one_more_run(store: Store, seed: int) -> None:
    spec = RunSpec(arch="model1", reg="none", params={}, seed=seed)
    store.record_run({**spec.row(), "status": "ok", "val_accuracy": 0.5, "total_params": 1}, [])


def test_a_stop_that_lands_in_the_closing_export_waits_for_it(tmp_path, monkeypatch):
    """Probe 6: Ctrl-C or SIGTERM during the closing export left runs.csv behind the store
    (1,200 rows for 1,212 runs). The export now finishes first, then the stop takes effect."""
    import signal
    import time

    from regbench.results import exports

    def stop(signum, frame):  # as the CLI's handler does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        filled(tmp_path)
        store = Store(tmp_path)
        store._exported_at = time.monotonic()  # exported just now: the next is the closing one
        _one_more_run(store, seed=9)
        real = exports.export_csvs

        def stopped_midway(db, folder):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler would raise right here
            real(db, folder)

        monkeypatch.setattr(exports, "export_csvs", stopped_midway)
        with pytest.raises(KeyboardInterrupt):
            store.close()
        assert len(pd.read_csv(tmp_path / "runs.csv")) == 5
        assert signal.getsignal(signal.SIGTERM) is stop  # as it was
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_closing_export_cut_short_is_redone_by_the_next_writer(tmp_path):
    """kill -9 in the closing export (or before it): the next writer exports, even if it
    records nothing."""
    import time

    from regbench.results import lock

    filled(tmp_path)
    store = Store(tmp_path)
    store._exported_at = time.monotonic()  # exported just now: the run waits for the next
    _one_more_run(store, seed=9)
    store.db.close()  # the process dies here: no closing export
    lock.release(tmp_path)
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 4
    Store(tmp_path).close()
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 5
