"""How a stage records a finished run, the same for the grid and `final`: the store first (a
crash after it loses nothing), the traceback of a run that failed to `logs/`, then the
observer hears it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.errors import RegbenchError

if TYPE_CHECKING:
    from regbench.results.store import Store
    from regbench.study.settings import Observer


class Recorder:
    """`on_result` for an executor's hooks; `rows` are the rows recorded, in order."""

    def __init__(self, store: Store, observer: Observer) -> None:
        self.store, self.observer = store, observer
        self.logs = store.folder / "logs"
        self.rows: list[dict[str, Any]] = []
        check_writable(self.logs)

    def __call__(self, result: Any) -> None:
        from regbench.results.integrity import unsaved_model, write_error

        trace = result.row.pop("traceback", None)
        if unsaved := unsaved_model(result.row):
            raise unsaved
        self.store.record_run(result.row, result.epochs)
        if trace:
            try:
                self.logs.mkdir(exist_ok=True)
                (self.logs / f"{result.row['run_id']}.log").write_text(trace)
            except OSError as exc:  # the run is recorded; its log is not
                raise write_error(self.logs, exc) from None
        self.rows.append(result.row)
        self.observer.finished(result.row)


def check_writable(logs: Path) -> None:
    """Refuse an existing but unwritable logs folder before training, not at the first
    failed run's log."""
    from regbench.results.integrity import write_error

    if not logs.exists():
        return
    if not logs.is_dir():
        raise RegbenchError(
            f"{logs} is not a folder (failed runs' logs are kept there); move it away, then "
            "rerun the same command"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=logs, prefix=".probe-"):
            pass
    except OSError as exc:
        raise write_error(logs, exc) from None
