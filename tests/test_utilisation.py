"""The `busy:` line: program time against the wall time the workers had."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from regbench.results.utilisation import busy


def _runs(rows):
    base = {"status": "ok", "started_at": "2026-12-03T10:00:00+00:00", "worker": "gpu0.0"}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_a_packs_program_is_counted_once_not_once_per_member():
    pack = {"compile_time_s": 3.0, "train_time_s": 12.0, "eval_time_s": 1.0, "program_runs": 4}
    spent = busy(_runs([pack] * 4), "2026-12-03T09:59:59+00:00", wall_s=20.0)
    assert spent is not None
    assert (spent.compile_s, spent.train_s, spent.eval_s) == (3.0, 12.0, 1.0)
    assert spent.share == pytest.approx(16.0 / 20.0)
    assert "16.0 s" in spent.line() and "80%" in spent.line()


def test_standard_runs_count_whole_and_the_workers_share_the_wall_time():
    rows = [
        {"train_time_s": 10.0, "eval_time_s": 1.0, "worker": "cpu0"},  # Keras fit: no
        {"train_time_s": 6.0, "eval_time_s": 1.0, "worker": "cpu1"},  # compile figure of its own
    ]
    spent = busy(_runs(rows), "2026-12-03T10:00:00+00:00", wall_s=10.0)
    assert spent is not None and spent.workers == 2
    assert spent.program_s == pytest.approx(18.0)
    assert spent.share == pytest.approx(18.0 / 20.0)
    assert spent.compile_s is None and "compile" not in spent.line()  # fit compiles inside


def test_runs_of_earlier_commands_and_skipped_cells_are_not_counted():
    rows = [
        {"train_time_s": 5.0, "started_at": "2026-12-02T10:00:00+00:00"},
        {"train_time_s": 5.0, "status": "skipped"},
    ]
    assert busy(_runs(rows), "2026-12-03T10:00:00+00:00", wall_s=10.0) is None
    assert busy(pd.DataFrame(), "2026-12-03T10:00:00+00:00", wall_s=1.0) is None
    zero = busy(_runs([{"train_time_s": 1.0}]), "2026-12-03T10:00:00+00:00", wall_s=0.0)
    assert zero is not None and math.isnan(zero.share)
