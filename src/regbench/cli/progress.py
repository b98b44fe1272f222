"""Live progress of a grid in the terminal: overall runs, each active run's epochs, ETA.

When the output is not a terminal, one plain line per finished run instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regbench.study import Observer


class GridProgress(Observer):
    def __init__(self, console, label: str = "grid") -> None:
        """`label` names the overall bar: the stage that trains (grid, final)."""
        self.console, self.total, self.done, self.label = console, 0, 0, label
        self.live = console.is_terminal
        self._tasks: dict[str, Any] = {}
        self._progress: Any = None

    def begin(self, total: int, done: int, folder: Path) -> None:
        self.total = total
        if done:
            self.console.print(
                f"{done} run(s) already done in {folder} (use --force to rerun)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
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

    def started(self, run_id: str, worker: str) -> None:
        if self._progress is not None:
            self._tasks[run_id] = self._progress.add_task(
                f"  {run_id}", total=None, info=f"[{worker}]"
            )

    def update(self, info: dict[str, Any]) -> None:
        task = self._tasks.get(info.get("run_id", ""))
        if self._progress is None or task is None:
            return
        text = f"acc {info.get('accuracy', float('nan')):.3f}"
        if "val_accuracy" in info:
            text += f"  val {info['val_accuracy']:.3f}"
        self._progress.update(task, total=info["epochs"], completed=info["epoch"], info=text)

    def finished(self, row: dict[str, Any]) -> None:
        self.done += 1
        task = self._tasks.pop(row["run_id"], None)
        if self._progress is not None:
            if task is not None:
                self._progress.remove_task(task)
            self._progress.advance(self._grid)
        val = row.get("val_accuracy")
        detail = f"val_accuracy {val:.3f}" if isinstance(val, float) else (row.get("error") or "")
        line = f"[{self.done}/{self.total}] {row['run_id']}: {row['status']} {detail}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
