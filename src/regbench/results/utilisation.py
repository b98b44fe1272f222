"""How much of a grid's wall time its workers spent in training programs.

A run's `compile_time_s`, `train_time_s` and `eval_time_s` are the times of the program that
trained it; the members of a pack (the vmapped engine, `program_runs` > 1) share one program,
so each is counted once. Against the wall time of the command and the number of workers that
trained, what is left is start-up, data loading, saving and waiting: the overhead a faster
device cannot remove.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

PARTS = ("compile_time_s", "train_time_s", "eval_time_s")


@dataclass(frozen=True)
class Busy:
    compile_s: float | None  # None: no engine said (Keras fit compiles inside its training)
    train_s: float
    eval_s: float
    wall_s: float
    workers: int

    @property
    def program_s(self) -> float:
        return (self.compile_s or 0.0) + self.train_s + self.eval_s

    @property
    def share(self) -> float:
        """Program time over the time the workers had (wall time x workers)."""
        return self.program_s / (self.wall_s * self.workers) if self.wall_s > 0 else math.nan

    def line(self) -> str:
        compiled = "" if self.compile_s is None else f"compile {self.compile_s:.1f}, "
        return (
            f"busy: training programs ran {self.program_s:.1f} s ({compiled}"
            f"train {self.train_s:.1f}, evaluate {self.eval_s:.1f}) of {self.wall_s:.1f} s on "
            f"{self.workers} worker(s): {self.share:.0%}"
        )


def busy(runs: pd.DataFrame, since: str, wall_s: float) -> Busy | None:
    """The program time of the runs trained since `since` (an ISO time, as `started_at`), or
    None when none was."""
    if runs.empty or "started_at" not in runs:
        return None
    trained = runs[(runs["started_at"].astype(str) >= since) & (runs["status"] != "skipped")]
    if trained.empty:
        return None
    members: pd.Series | int = 1
    if "program_runs" in trained:
        members = pd.to_numeric(trained["program_runs"], errors="coerce").fillna(1).clip(lower=1)
    totals = {
        part: float((pd.to_numeric(trained[part], errors="coerce").fillna(0) / members).sum())
        if part in trained
        else 0.0
        for part in PARTS
    }
    workers = max(1, trained["worker"].nunique()) if "worker" in trained else 1
    said = "compile_time_s" in trained and trained["compile_time_s"].notna().any()
    return Busy(
        compile_s=totals["compile_time_s"] if said else None,
        train_s=totals["train_time_s"],
        eval_s=totals["eval_time_s"],
        wall_s=wall_s,
        workers=workers,
    )
