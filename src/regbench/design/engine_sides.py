"""Which sides of the seam each engine runs, declared once: the plan skips a cell whose
regularizer needs a side its engine lacks, with the reason, before anything trains (and the
engine checks again, for a spec made elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from regbench.plugins.context import RunContext, invoke
from regbench.plugins.regularizer import Regularizer, overrides

# engine -> side it cannot run -> what the reason says it cannot do. Every other side of the
# seam (layers, merges, kernels, inputs, loss, optimizer, train_step, average) runs everywhere.
UNSUPPORTED: Mapping[str, Mapping[str, str]] = {
    "standard": {},
    "vmapped": {
        "batch": "rewrite training batches",
        "callbacks": "run training callbacks (a Keras fit feature)",
    },
}


def _uses_batches(regularizer: Regularizer, params: Mapping[str, Any], run: RunContext) -> bool:
    return regularizer.uses_batches


def _uses_callbacks(regularizer: Regularizer, params: Mapping[str, Any], run: RunContext) -> bool:
    if not overrides(regularizer, "callbacks"):
        return False
    try:
        return bool(invoke(regularizer.callbacks, params, ctx=run))
    except Exception:  # a plugin that cannot even say: training reports the real error
        return False


USES: Mapping[str, Callable[[Regularizer, Mapping[str, Any], RunContext], bool]] = {
    "batch": _uses_batches,
    "callbacks": _uses_callbacks,
}


def engine_cannot(
    engine: str, name: str, regularizer: Regularizer, params: Mapping[str, Any], run: RunContext
) -> str | None:
    """Why `engine` cannot train `regularizer` (registered as `name`) with `params`, or None."""
    for side, cannot in UNSUPPORTED.get(engine, {}).items():
        if USES[side](regularizer, params, run):
            return f"the {engine} engine cannot {cannot}, which {name} needs; use --engine standard"
    return None
