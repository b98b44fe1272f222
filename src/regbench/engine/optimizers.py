"""The protocol's optimizer: its options and learning-rate schedule, as a regularizer amends
them, made into a Keras optimizer; and the configuration actually used, for the run's row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from regbench.design.optimizer_options import check_schedule, parse_optimizer_options
from regbench.plugins.composition import Composite
from regbench.plugins.context import RunContext, invoke
from regbench.plugins.regularizer import OptimizerSpec, Regularizer, overrides
from regbench.plugins.versions import changed_since, warn_legacy

WARMUP_FRACTION = 0.05  # warmup_cosine: the first 5% of steps rise linearly from 0
STEP_MILESTONES = (0.5, 0.75)  # step: the rate falls tenfold at half and three quarters of training


def schedule(keras: Any, name: str, rate: float, total_steps: int) -> Any:
    """The learning rate over `total_steps` training steps: a number or a Keras schedule."""
    check_schedule(name)
    steps = max(1, int(total_steps))
    schedules = keras.optimizers.schedules
    if name == "cosine":
        return schedules.CosineDecay(rate, decay_steps=steps)
    if name == "warmup_cosine":
        warmup = max(1, int(steps * WARMUP_FRACTION))
        return schedules.CosineDecay(
            0.0, decay_steps=max(1, steps - warmup), warmup_target=rate, warmup_steps=warmup
        )
    if name == "step":
        bounds = sorted({max(1, int(steps * m)) for m in STEP_MILESTONES})
        return schedules.PiecewiseConstantDecay(
            bounds, [rate * 0.1**i for i in range(len(bounds) + 1)]
        )
    return rate


def make_optimizer(
    keras: Any,
    regularizer: Regularizer,
    params: Mapping[str, Any],
    name: str,
    learning_rate: float | None,
    options: Mapping[str, Any],
    lr_schedule: str,
    run: RunContext,
) -> Any:
    """The protocol's optimizer: its options and its learning rate under its schedule (a number,
    or a Keras schedule over the run's steps), then handed to the regularizer's `optimizer`
    hook, which may amend, wrap or replace any of it; what the hook returns is what trains."""
    base: dict[str, Any] = dict(parse_optimizer_options(options))
    if learning_rate is None:  # Keras's default rate of this optimizer
        learning_rate = float(keras.optimizers.get(name).learning_rate)
    base["learning_rate"] = schedule(keras, lr_schedule, learning_rate, run.total_steps)
    spec = OptimizerSpec(name, base)
    parts = (
        [(c, regularizer.own(c, params)) for c in regularizer.components]
        if isinstance(regularizer, Composite)
        else [(regularizer, params)]
    )
    for part, values in parts:
        spec = _optimizer_hook(keras, part, values, spec, learning_rate, lr_schedule, run)
    return keras.optimizers.get({"class_name": spec.name, "config": dict(spec.kwargs)})


def _optimizer_hook(
    keras: Any,
    regularizer: Regularizer,
    params: Mapping[str, Any],
    spec: OptimizerSpec,
    rate: float,
    lr_schedule: str,
    run: RunContext,
) -> OptimizerSpec:
    """`regularizer`'s optimizer hook on `spec`, called as the plugin API it was written for
    expects (plugins.versions): under API 1 the rate is the protocol's number and the
    protocol's schedule is applied to the number the hook leaves (a schedule of its own stays)."""
    if not overrides(regularizer, "optimizer"):
        return spec
    if changed_since(regularizer, "optimizer") is None:
        return invoke(regularizer.optimizer, params, spec, ctx=run)
    warn_legacy(regularizer, "optimizer")
    out = invoke(regularizer.optimizer, params, spec.with_kwargs(learning_rate=rate), ctx=run)
    left = out.kwargs.get("learning_rate", rate)
    if isinstance(left, int | float) and not isinstance(left, bool):
        out = out.with_kwargs(
            learning_rate=schedule(keras, lr_schedule, float(left), run.total_steps)
        )
    return out


def optimizer_config(keras: Any, optimizer: Any) -> str:
    """The optimizer as Keras serializes it (class, every argument, the schedule), as JSON."""
    return json.dumps(keras.optimizers.serialize(optimizer), sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
