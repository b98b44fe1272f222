"""Hypothesis strategies over a regularizer's hyperparameters, for the kits and for a plugin
author's own property tests."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from regbench.api import HParam, Regularizer


def hparam_values(regularizer: Regularizer) -> st.SearchStrategy[dict[str, float | int]]:
    """Complete, valid hyperparameter dicts: integers, or floats drawn on the declared scale."""

    def one(h: HParam) -> st.SearchStrategy[float | int]:
        if h.integer:
            return st.integers(math.ceil(h.low), math.floor(h.high))
        if h.log:  # uniform in log space, clamped since exp(log(x)) may land an ulp outside
            low, high = h.low, h.high
            return st.floats(math.log(low), math.log(high)).map(
                lambda v: min(max(math.exp(v), low), high)
            )
        return st.floats(h.low, h.high)

    return st.fixed_dictionaries({h.name: one(h) for h in regularizer.hparams})


def invalid_hparam_values(hparam: HParam) -> st.SearchStrategy[Any]:
    """Values `hparam` must refuse: below or above its bounds, non-finite, non-numeric, fractional
    for an integer hyperparameter."""
    outside = st.floats(max_value=hparam.low, exclude_max=True) | st.floats(
        min_value=hparam.high, exclude_min=True
    )
    choices = [
        outside.filter(lambda v: not hparam.low <= v <= hparam.high),  # -0.0 is not below 0.0
        st.sampled_from([math.nan, math.inf, -math.inf, "many", None, [1]]),
    ]
    if hparam.integer and hparam.high > hparam.low:
        choices.append(st.floats(hparam.low, hparam.high).filter(lambda v: v != int(v)))
    return st.one_of(choices)
