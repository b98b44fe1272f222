"""study.recording: every stage records a finished run the same way (grid and final)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from regbench.errors import RegbenchError
from regbench.results.reader import load
from regbench.results.store import Store
from regbench.study.recording import Recorder
from regbench.study.settings import Observer


class Heard(Observer):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def finished(self, row: dict) -> None:
        self.rows.append(row)


def _result(run_id: str, status: str, trace: str | None = None):
    row = {"run_id": run_id, "config_hash": run_id, "arch": "model1", "reg": "none"}
    row |= {"seed": 0, "status": status, "error": None if status == "ok" else "boom"}
    if trace:
        row["traceback"] = trace
    return SimpleNamespace(row=row, epochs=[])


def test_a_failed_runs_traceback_goes_to_logs_after_its_row_is_stored(tmp_path):
    heard = Heard()
    with Store(tmp_path) as store:
        record = Recorder(store, heard)
        record(_result("a", "ok"))
        record(_result("b", "failed", "Traceback (most recent call last): boom"))
    assert [r["run_id"] for r in record.rows] == ["a", "b"] == [r["run_id"] for r in heard.rows]
    assert "traceback" not in heard.rows[1]  # the row keeps the error; logs/ the traceback
    assert (tmp_path / "logs" / "b.log").read_text().endswith("boom")
    assert not (tmp_path / "logs" / "a.log").exists()
    assert set(load(tmp_path).runs["run_id"]) == {"a", "b"}


def test_a_logs_path_that_is_a_file_is_refused_before_anything_trains(tmp_path):
    (tmp_path / "logs").write_text("not a folder")
    with Store(tmp_path) as store, pytest.raises(RegbenchError, match="is not a folder"):
        Recorder(store, Observer())
