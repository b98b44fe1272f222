"""Every extras regularizer passes regbench's conformance kit on every installed architecture."""

import pytest
from regbench.testing import check_regularizer

from regbench_extras.regularizers import REGULARIZERS


@pytest.mark.parametrize("regularizer", [cls() for cls in REGULARIZERS], ids=lambda r: r.name)
def test_conforms(regularizer) -> None:
    check_regularizer(regularizer)
