"""The lab's three models, as the layer tables of SPEC.md.

[D] marks where the dropout variant inserts Dropout, [B] where the batch-norm variant inserts
BatchNormalization; a point with no mark takes both.
"""

from collections.abc import Callable
from typing import Any

from regbench.api import hookimpl
from regbench.plugins.architecture import Architecture
from regbench.plugins.points import NOISE, NORM, Point
from regbench.plugins.table import Classifier, Conv, Dense, Flatten, MaxPool

D = frozenset({NOISE})
B = frozenset({NORM})

MODEL1 = Architecture(
    name="model1",
    aliases=("mnist-cnn",),
    description="The MNIST lab's model: conv, pool, conv (stride 2), pool, dense (48,970 params)",
    layers=(
        Conv(64, 3, padding="same"),  # 32x32x64      1,792
        MaxPool(2),  # 16x16x64
        Point("pool1", "maps", D),  # [D]
        Conv(64, 3, padding="same", strides=2),  # 8x8x64  36,928
        MaxPool(2),  # 4x4x64
        Point("pool2", "maps", B),  # [B] 64 channels
        Flatten(),  # 1,024
        Point("flat", "vector"),  # [D] / [B] 1,024 features
        Classifier(),  # 10           10,250
    ),
)

MODEL2 = Architecture(
    name="model2",
    aliases=("conv-dense",),
    description="Conv, pool, dense 100, dense (1,442,902 params)",
    layers=(
        Conv(64, 3),  # 30x30x64      1,792
        MaxPool(2),  # 15x15x64
        Point("maps", "maps"),  # [D] / [B] 64 channels
        Flatten(),  # 14,400
        Dense(100),  # 100       1,440,100
        Point("hidden", "vector"),  # [D] / [B] 100 features
        Classifier(),  # 10            1,010
    ),
)

MODEL3 = Architecture(
    name="model3",
    aliases=("conv-conv-dense",),
    description="Conv, pool, conv, dense 100, dense (1,121,430 params)",
    layers=(
        Conv(64, 3),  # 30x30x64      1,792
        MaxPool(2),  # 15x15x64
        Conv(64, 3),  # 13x13x64     36,928
        Point("maps", "maps"),  # [D] / [B] 64 channels
        Flatten(),  # 10,816
        Dense(100),  # 100       1,081,700
        Point("hidden", "vector"),  # [D] / [B] 100 features
        Classifier(),  # 10            1,010
    ),
)


@hookimpl
def register_architectures(register: Callable[[Any], None]) -> None:
    for architecture in (MODEL1, MODEL2, MODEL3):
        register(architecture)
