"""Live progress of a grid: overall runs, each active run's epochs, and an ETA.

In a terminal, rich bars, the overall one advancing by epochs as well as runs, so its ETA
reads from the first epoch on rather than after the first run. When the output is not a
terminal (a log file, a pipe, CI), plain lines instead: one as each run starts, one per
finished epoch with an ETA, one per finished run. `run(progress=True)` shows the same from
Python (by default when stderr is a terminal or a notebook).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from regbench.study.settings import Observer


class GridProgress(Observer):
    def __init__(self, console: Any, label: str = "grid") -> None:
        """`label` names the overall bar: the stage that trains (grid, final)."""
        self.console, self.total, self.done, self.label = console, 0, 0, label
        self.live = console.is_terminal
        self._tasks: dict[str, Any] = {}
        self._active: dict[str, tuple[float, float]] = {}  # run id: (started, epochs done/all)
        self._epoch_s: list[float] = []  # seconds per epoch of the epochs seen
        self._progress: Any = None
        self._started = 0

    def begin(self, total: int, done: int, folder: Path) -> None:
        self.total = total
        if done:
            self._line(f"{done} run(s) already done in {folder} (use --force to rerun)")
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._grid = self._progress.add_task(self.label, total=self.total, info="")

    def end(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def estimated(self, seconds: float) -> None:
        self._line(
            f"estimate: about {_clock(seconds)} of training, one run after another "
            "(earlier runs' seconds per epoch)"
        )

    def started(self, run_id: str, worker: str) -> None:
        self._started += 1
        self._active[run_id] = (time.monotonic(), 0.0)
        if self._progress is not None:
            self._tasks[run_id] = self._progress.add_task(
                f"  {run_id}", total=None, info=f"[{worker}]"
            )
        else:
            self._line(f"[{self._started}/{self.total}] {run_id}: started on {worker}")

    def note(self, text: str) -> None:
        self._line(text)

    def update(self, info: dict[str, Any]) -> None:
        run_id = info.get("run_id", "")
        epoch, epochs = int(info.get("epoch") or 0), int(info.get("epochs") or 0)
        if run_id in self._active and epochs:
            began, _ = self._active[run_id]
            self._active[run_id] = (began, epoch / epochs)
            self._epoch_s.append((time.monotonic() - began) / max(epoch, 1))
        text = f"acc {info.get('accuracy', float('nan')):.3f}"
        if "val_accuracy" in info:
            text += f"  val {info['val_accuracy']:.3f}"
        task = self._tasks.get(run_id)
        if self._progress is not None:
            if task is not None:
                self._progress.update(task, total=epochs, completed=epoch, info=text)
            self._progress.update(self._grid, completed=self._completed())
            return
        eta = self.eta(epochs)
        tail = f" · ETA {_clock(eta)}" if eta is not None else ""
        self._line(f"  {run_id}: epoch {epoch}/{epochs} {text}{tail}")

    def finished(self, row: dict[str, Any]) -> None:
        self.done += 1
        self._active.pop(row["run_id"], None)
        task = self._tasks.pop(row["run_id"], None)
        if self._progress is not None:
            if task is not None:
                self._progress.remove_task(task)
            self._progress.update(self._grid, completed=self._completed())
        figure = next(
            (f"{k} {row[k]:.3f}" for k in ("val_accuracy", "test_accuracy") if _real(row.get(k))),
            None,
        )
        detail = figure or row.get("error") or ""
        self._line(f"[{self.done}/{self.total}] {row['run_id']}: {row['status']} {detail}".rstrip())

    def eta(self, epochs: int) -> float | None:
        """Seconds left: the epochs of the runs not finished (each as long as the one
        reporting, `epochs`), at the mean time per epoch seen so far, spread over the runs
        training at once; None before an epoch has ended."""
        if not self._epoch_s or not epochs:
            return None
        left = (self.total - self.done) * epochs - sum(f * epochs for _, f in self._active.values())
        per_epoch = sum(self._epoch_s) / len(self._epoch_s)
        return max(left, 0) * per_epoch / max(len(self._active), 1)

    def _completed(self) -> float:
        """Runs done, and the share of each active run's epochs: the bar's ETA from epochs."""
        return self.done + sum(share for _, share in self._active.values())

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def auto_progress(progress: bool | None) -> Observer | None:
    """The progress a Python caller asked for: True shows it on stderr, False never, None
    (the default) where someone watches (stderr a terminal, or a Jupyter kernel)."""
    if progress is None:
        progress = sys.stderr.isatty() or "ipykernel" in sys.modules
    if not progress:
        return None
    from rich.console import Console

    return GridProgress(Console(stderr=True))


def _real(value: Any) -> bool:
    return isinstance(value, float) and value == value


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
