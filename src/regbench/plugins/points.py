"""Regularization points: the named places in a model where a regularizer's layers go, and
the families of regularizers that act at each.

A family is an open string: a plugin may declare its own (an architecture's point lists it in
`families`, a regularizer names it as its `family`); the built-in ones are below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NOISE = "noise"  # layers that perturb activations while training (dropout and kin): the lab's [D]
NORM = "norm"  # layers that normalize activations (batch norm and kin): the lab's [B]
BRANCH = "branch"  # the end of a residual branch, before the skip is added (stochastic depth)
ANY = "any"  # a regularizer of this family is asked at every point


@dataclass(frozen=True)
class Point:
    """A named place in a layer table where regularizers may insert layers.

    `kind` is "maps" (feature maps, after a conv trunk) or "vector" (flat features);
    `families` says which regularizer families act here (the lab's [D] and [B] marks); `meta`
    carries what a regularizer may need to know about the place, e.g. `role` ("trunk", or
    "branch" for the end of a residual branch just before the skip is added) and `block` /
    `blocks` (the residual block's 1-based index and the count, for stochastic depth). `shape`
    is the tensor's shape without the batch axis, e.g. (16, 16, 32), filled in when a model is
    built (None in a layer table), so a regularizer can size what it inserts to the map.
    """

    name: str
    kind: str
    families: frozenset[str] = frozenset({NOISE, NORM})
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    shape: tuple[int | None, ...] | None = field(default=None, compare=False)

    def accepts(self, family: str) -> bool:
        return family == ANY or family in self.families
