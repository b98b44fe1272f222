"""Every extras regularizer passes regbench's conformance kit: on model1 fast, on every installed
architecture in the slow tier."""

import pytest
from regbench.builtins.architectures import MODEL1
from regbench.testing import check_regularizer

from regbench_extras.regularizers import REGULARIZERS


@pytest.mark.parametrize("regularizer", [cls() for cls in REGULARIZERS], ids=lambda r: r.name)
def test_conforms_on_model1(regularizer) -> None:
    check_regularizer(regularizer, [MODEL1], max_examples=2)


@pytest.mark.slow  # every installed architecture
@pytest.mark.parametrize("regularizer", [cls() for cls in REGULARIZERS], ids=lambda r: r.name)
def test_conforms(regularizer) -> None:
    check_regularizer(regularizer)
