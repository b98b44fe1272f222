"""The conformance kit on the built-in regularizers, and the kit catching broken ones."""

from __future__ import annotations

import pytest

from regbench._keras import import_keras
from regbench.builtins.architectures import MODEL1
from regbench.plugins import build_registry
from regbench.seam import HParam, Regularizer
from regbench.testing import (
    check_backend_neutral,
    check_model,
    check_refuses_out_of_bounds,
    check_regularizer,
    check_training_contract,
    hparam_values,
)

# The built-in BatchNorm predates the claim attributes; its layers have weights.
CLAIMS = {"batchnorm": {"adds_params": True}}


@pytest.mark.parametrize("name", ["none", "l2", "dropout", "batchnorm"])
def test_builtin_regularizer_conforms(name: str) -> None:
    regularizer = build_registry().get("regularizers", name)
    check_regularizer(regularizer, claims=CLAIMS.get(name))
