"""Live progress of a grid in the terminal: overall runs, each active run's epochs, ETA.

When the output is not a terminal, one plain line per finished run instead.
"""

from __future__ import annotations

from typing import Any


class GridProgress:
    def __init__(self, console, total: int) -> None:
        self.console, self.total, self.done = console, total, 0
        self.live = console.is_terminal
        self._tasks: dict[str, Any] = {}
        self._progress = None

    def __enter__(self) -> GridProgress:
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
            self._grid = self._progress.add_task("grid", total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
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
        self.console.print(line, markup=False, highlight=False)
