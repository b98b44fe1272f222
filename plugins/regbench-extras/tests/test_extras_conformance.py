"""Every extra passes regbench's conformance kit: regularizers trained on a table and on a
builder architecture (compiled with XLA, reloaded in a fresh process), both architectures."""

import pytest
from regbench.plugins.manager import build_registry
from regbench.testing import check_architecture, check_regularizer

from regbench_extras.architectures import RESNET20, VGG_MINI
from regbench_extras.regularizers import REGULARIZERS

SMALL = (16, 16, 3)


@pytest.mark.slow
@pytest.mark.parametrize("regularizer", [cls() for cls in REGULARIZERS], ids=lambda r: r.name)
def test_regularizer_conforms(regularizer) -> None:
    model1 = build_registry().get("architectures", "model1")
    check_regularizer(regularizer, [model1, RESNET20], input_shape=SMALL, max_examples=3)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", [VGG_MINI, RESNET20], ids=lambda a: a.name)
def test_architecture_conforms(architecture) -> None:
    check_architecture(architecture, input_shapes=(SMALL, (8, 8, 1)))
