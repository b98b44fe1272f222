"""What someone watching a grid sees: in a log file or a pipe, a line as each run starts, one
per finished epoch with an ETA, one per finished run; in a terminal, an overall bar advancing
by epochs; from Python, the same on request (issue 29.3)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from regbench.study import progress
from regbench.study.progress import GridProgress

TESTS = Path(__file__).parent


def plain() -> tuple[GridProgress, io.StringIO]:
    out = io.StringIO()
    return GridProgress(Console(file=out, width=200, no_color=True)), out


def test_not_in_a_terminal_each_start_epoch_and_end_is_a_line(monkeypatch):
    clock = iter([0.0, 10.0, 20.0])  # a run starts at 0; its epochs end at 10 and 20 s
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    shown, out = plain()
    shown.begin(3, 0, Path("exp"))
    shown.started("m1-none-s0", "w0")
    shown.update({"run_id": "m1-none-s0", "epoch": 1, "epochs": 2, "accuracy": 0.5})
    shown.update(
        {"run_id": "m1-none-s0", "epoch": 2, "epochs": 2, "accuracy": 0.6, "val_accuracy": 0.55}
    )
    shown.finished({"run_id": "m1-none-s0", "status": "ok", "val_accuracy": 0.55})
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/3] m1-none-s0: started on w0"
    # 10 s an epoch; 3 runs of 2 epochs, half of one done: 5 epochs left, 1 training at once
    assert lines[1] == "  m1-none-s0: epoch 1/2 acc 0.500 · ETA 0:00:50"
    assert lines[2] == "  m1-none-s0: epoch 2/2 acc 0.600  val 0.550 · ETA 0:00:40"
    assert lines[3] == "[1/3] m1-none-s0: ok val_accuracy 0.550"


def test_a_final_run_shows_its_test_accuracy_not_an_empty_end():
    shown, out = plain()
    shown.begin(1, 0, Path("exp"))
    shown.finished({"run_id": "final-x", "status": "ok", "test_accuracy": 0.91})
    assert out.getvalue().strip() == "[1/1] final-x: ok test_accuracy 0.910"


def test_in_a_terminal_the_overall_bar_advances_by_epochs():
    shown = GridProgress(Console(file=io.StringIO(), force_terminal=True, width=100))
    shown.begin(4, 0, Path("exp"))
    try:
        shown.started("a", "w0")
        shown.update({"run_id": "a", "epoch": 1, "epochs": 4, "accuracy": 0.3})
        (grid,) = [t for t in shown._progress.tasks if t.description == "grid"]
        assert grid.completed == 0.25  # a quarter of a run: the bar's ETA has a rate already
    finally:
        shown.end()


def test_python_shows_progress_when_asked_and_stays_quiet_otherwise(monkeypatch):
    assert isinstance(progress.auto_progress(True), GridProgress)
    assert progress.auto_progress(False) is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert progress.auto_progress(None) is None


@pytest.mark.slow
def test_a_redirected_run_says_each_run_started_before_any_ends(tmp_path):
    """`regbench run ... > log.txt`: the log has a line as the first run starts, not only
    when it ends (fake runs of a second each: the order, not a timing, is what is checked)."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "NO_COLOR": "1", "FAKE_SLEEP": "0.5"}
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "regbench", "run", "--arch", "model1", "--reg", "none,l2"]
            + ["--seeds", "1", "--dataset", "digits", "--epochs", "1"]
            + ["--trainer", "fake_trainer:train", "--experiment", str(tmp_path / "exp")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=300,
        )
    lines = log.read_text().splitlines()
    assert done.returncode == 0, lines
    first_start = next(i for i, line in enumerate(lines) if ": started on " in line)
    first_end = next(
        i for i, line in enumerate(lines) if line.startswith("[1/2]") and ": ok" in line
    )
    assert first_start < first_end
    assert any(": epoch 1/" in line and "· ETA " in line for line in lines), lines


def test_cells_timed_before_give_an_estimate_before_any_run_starts(tmp_path, cli):
    """Runs of cells already timed: the ETA is known before the first epoch ends, from the
    seconds per epoch their earlier runs took."""
    base = ["run", "--arch", "model1", "--reg", "none,l2", "--dataset", "digits"]
    base += ["--epochs", "1", "--trainer", "fake_trainer:train", "--executor", "inprocess"]
    base += ["--experiment", str(tmp_path / "exp")]
    first = cli(*base, "--seeds", "1", env={"FAKE_SLEEP": "0.05"})
    assert first.returncode == 0, first.stderr
    assert "estimate:" not in first.stdout  # nothing timed yet
    again = cli(*base, "--seeds", "2")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("estimate: about "))
    assert estimate < next(i for i, line in enumerate(lines) if ": started on " in line)
