"""Standard output that its reader may leave: `regbench run ... | head -2` closes the pipe,
`> /dev/full` fills no disk of regbench's. Writing to a closed or full stdout is not a fault
of the command, so the command goes on (a grid trains to its end, into its store) with its
output discarded, and one line on stderr says so when it ends."""

from __future__ import annotations

import contextlib
import os
from typing import Any, TextIO


class KeptOutput:
    """`sys.stdout` whose write and flush errors (a broken pipe, a full device) switch it to
    /dev/null instead of raising; `lost` is the first such error."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self.stream.write(text)
            except OSError as exc:
                self._discard(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self.stream.flush()
            except OSError as exc:
                self._discard(exc)

    def _discard(self, exc: OSError) -> None:
        """From now on every write goes to /dev/null, the real stream's buffer included."""
        self.lost = exc
        with contextlib.suppress(OSError, ValueError):  # no descriptor (a capture): stop here
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def lost_note(output: KeptOutput) -> str | None:
    """The line that says the output was lost, or None when it was not."""
    if output.lost is None:
        return None
    why = output.lost.strerror or type(output.lost).__name__
    return f"regbench: standard output could not be written ({why}); the command went on without it"
