"""The run context a hook may receive, and the convention by which hooks are called with it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class RunState(SimpleNamespace):
    """One run's scratch space, shared by every hook of that run (`ctx.state`): what one hook
    sets, the others see. Name attributes after your regularizer (components of a combination
    share the run). `step` is the current training step's own space, emptied by regbench before
    and after every step: a batch or train_step hook that draws per batch (manifold mixup's
    lambda and mixing point) leaves its draws there for the run's layers, which read them in
    the same compiled step, and nothing else (an evaluation, a later trace) ever sees them."""

    def __init__(self) -> None:
        super().__init__(step=SimpleNamespace())

    def new_step(self) -> None:
        """Empty the step's space (regbench calls it around every training step)."""
        self.step = SimpleNamespace()


@dataclass(frozen=True)
class RunContext:
    """What a run is, for every regularizer hook that declares a `ctx` argument.

    `progress` is None outside training; in training it is a small Keras layer whose
    `value()` gives the fraction of training steps done (0 to 1) as a tensor a layer can read
    inside a compiled step. It counts the steps in a non-trainable variable of the model (so it
    advances on every backend and engine, and a saved model carries it) that parameter counts
    leave out; each reading layer keeps its own, `ctx.progress.fresh()`, as each read counts a
    step. `learning_rate` is the rate the optimizer starts from (Keras's default filled in) and
    `lr_schedule` the protocol's schedule, which the optimizer hook receives applied. `state`
    is the run's own `RunState`, one object handed to every hook of the run.
    """

    epochs: int = 1
    steps_per_epoch: int = 1
    batch_size: int = 64
    train_size: int = 0
    classes: int = 10
    input_shape: tuple[int, ...] = (32, 32, 3)
    learning_rate: float | None = None
    lr_schedule: str = "constant"
    stage: str = "grid"
    seed: int = 0
    progress: Any = None
    state: RunState = field(default_factory=RunState, compare=False, repr=False)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def invoke(method: Callable[..., Any], *args: Any, ctx: RunContext | None = None) -> Any:
    """Call a regularizer hook, passing `ctx` only to hooks that declare it (as pluggy passes
    a hook implementation only the arguments it names), so hooks written without it still work."""
    try:
        takes = "ctx" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes = False
    return method(*args, ctx=ctx) if takes else method(*args)
