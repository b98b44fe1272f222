"""Where results live and how they are read: the store, the reader, the leaderboard.

`regbench.results.load(DIR)` is re-exported lazily so that importing the store never pays for
pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regbench.results.reader import Results, load, load_best, load_trials

__all__ = ["Results", "load", "load_best", "load_trials"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from regbench.results import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'regbench.results' has no attribute {name!r}")
