"""Regularizers that choose which weights a run ends with, on regbench's weights side
(`average`): stochastic weight averaging and an exponential moving average of the weights.
regbench keeps the average inside the compiled step and recomputes the batch-norm statistics
for the averaged weights, so the run is scored and saved as the averaged model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regbench.api import HParam, Regularizer, WeightAverage


class SWA(Regularizer):
    """Stochastic weight averaging (Izmailov et al. 2018): the equal-weight average of the
    weights at every epoch end after the first `start` of training, batch norm recalibrated
    (torch's `AveragedModel` and `update_bn`), under the protocol's own learning rate."""

    name = "swa"
    description = "Stochastic weight averaging: the mean of the late epochs' weights"
    api_version = 2
    hparams = (HParam("start", 0.75, 0.0, 0.95, help="share of the epochs before averaging"),)

    def average(self, params: Mapping[str, Any]) -> WeightAverage:
        return WeightAverage(start=params["start"], every="epoch")


class EMA(Regularizer):
    """An exponential moving average of the weights, updated after every step (Polyak
    averaging, as timm's ModelEma), batch norm recalibrated for the averaged weights."""

    name = "ema"
    description = "Exponential moving average of the weights after every step"
    api_version = 2
    hparams = (HParam("decay", 0.999, 0.9, 0.9999, help="weight of the old average per step"),)

    def average(self, params: Mapping[str, Any]) -> WeightAverage:
        return WeightAverage(decay=params["decay"], every="step")


AVERAGING_REGULARIZERS = (SWA, EMA)
