"""The divergence rule, measured alike on every backend and engine.

Keras's training loss cannot judge divergence the same way everywhere: on TensorFlow a softmax
output's crossentropy is computed from its logits (unbounded: 398 for a blown-up model1), on
JAX from probabilities clipped at 1e-7 (at most 16.1 a sample), so one rule on the loss gave
different verdicts for the same grid. regbench therefore measures the crossentropy itself, with
one formula in keras.ops, in every engine's training step: the mean over the epoch's training
batches of -sum_k y_k log max(p_k, tiny), where tiny is float32's smallest normal (targets
one-hot, or soft for a batch regularizer; penalties excluded). Floored there rather than at
Keras's 1e-7, a confidently wrong sample counts up to 87.3, close to what its logits give, so a
blown-up epoch reads as one on every backend. The rule on it needs no ratio to a start: a
uniform guess over K classes scores ln K (where every fresh model starts), and a model 1.5
times worse than guessing, on average over a whole epoch, has diverged: its true classes get a
probability of K^-1.5 (0.03 for ten classes). Measured on the learning-rate-3 grid (model1,
none and l2, seeds 0-3, digits), the blown-up epochs scored 7.6-33 on TensorFlow, 5.4-68 on JAX
and 4.4-70 in the vmapped engine, against 3.45 for ten classes; their next epochs sat at chance
(2.33), so a rule at 3 ln K (6.9) missed 2 of 8 on JAX and 3 of 8 in the vmapped engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from regbench.plugins.keras import import_keras

CLIP = 1.1754944e-38  # float32's smallest normal: probabilities below it count as it
FACTOR = 1.5  # diverged: crossentropy over FACTOR * ln(classes), 1.5 times a uniform guess
METRIC = "crossentropy"  # its name in the epoch logs (and val_crossentropy)


def crossentropy(targets: Any, probabilities: Any, classes: int) -> Any:
    """Each row's crossentropy, -sum_k y_k log max(p_k, CLIP): `targets` are class ids or
    one-hot / soft rows, `probabilities` the model's output rows."""
    ops = import_keras().ops
    if len(targets.shape) < 2 or targets.shape[-1] != classes:
        targets = ops.one_hot(ops.cast(ops.reshape(targets, (-1,)), "int32"), classes)
    kept = ops.maximum(ops.cast(probabilities, "float32"), CLIP)
    return -ops.sum(ops.cast(targets, "float32") * ops.log(kept), axis=-1)


def metric(classes: int) -> Any:
    """The Keras metric engines compile with: the running mean of `crossentropy`."""
    keras = import_keras()

    class Crossentropy(keras.metrics.Mean):  # type: ignore[name-defined]
        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
            return super().update_state(crossentropy(y_true, y_pred, classes), sample_weight)

    return Crossentropy(name=METRIC)


def threshold(classes: int) -> float:
    return FACTOR * math.log(classes)


def diverged(logs: Sequence[Mapping[str, float]], classes: int | None) -> str | None:
    """Why a run counts as diverged, or None: at an epoch end its training loss is not finite,
    or its crossentropy is over FACTOR * ln(classes). A run that stays at chance (a
    crossentropy near ln K) has not diverged: that is a result, ranked like any other."""
    for epoch, log in enumerate(logs, start=1):
        loss = log.get("loss", 0.0)
        if not math.isfinite(loss):
            return f"training loss became {loss} at epoch {epoch}"
        measured = log.get(METRIC)
        if measured is None or classes is None or classes < 2:
            continue
        if not math.isfinite(measured) or measured > threshold(classes):
            return (
                f"training crossentropy {measured:.3g} at epoch {epoch} is over "
                f"{FACTOR:g} ln {classes} = {threshold(classes):.3g} (a uniform guess scores "
                f"{math.log(classes):.3g})"
            )
    return None
