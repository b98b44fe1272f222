"""Two architectures: a VGG-style layer table and a CIFAR ResNet-20 builder."""

from __future__ import annotations

from typing import Any

from regbench.api import (
    BRANCH,
    NOISE,
    Architecture,
    BuildContext,
    Classifier,
    Conv,
    Dense,
    Flatten,
    HParam,
    MaxPool,
    Point,
)

# Parameter counts are for the default 32x32x3 input and 10 classes (591,274 in all).
VGG_MINI = Architecture(
    name="vgg-mini",
    aliases=("vgg",),
    description="VGG-style: two Conv-Conv-Pool blocks (32, 64 filters), dense 128 (591,274 params)",
    layers=(
        Conv(32, 3, padding="same"),  # 32x32x32       896
        Conv(32, 3, padding="same"),  # 32x32x32     9,248
        MaxPool(2),  # 16x16x32
        Point("block1", "maps"),  # [D] / [B] 32 channels
        Conv(64, 3, padding="same"),  # 16x16x64    18,496
        Conv(64, 3, padding="same"),  # 16x16x64    36,928
        MaxPool(2),  # 8x8x64
        Point("block2", "maps"),  # [D] / [B] 64 channels
        Flatten(),  # 4,096
        Dense(128),  # 128            524,416
        Point("hidden", "vector"),  # [D] / [B] 128 features
        Classifier(),  # 10             1,290
    ),
)


def resnet(ctx: BuildContext, x: Any) -> Any:
    """ResNet-6n+2 for CIFAR (He et al. 2016, section 4.2): a 3x3 conv with 16 filters, three
    stages of n basic blocks with 16, 32 and 64 filters (the first block of a stage halves the
    size), global average pooling and the classifier. Shortcuts that change shape are 1x1
    convolutions with batch norm (option B). Inside each block a `trunk` point follows the
    first conv; a `branch` point ends the residual branch before the skip is added, and a
    `merge` point adds the two (a regularizer's `merge_at` may replace the addition)."""
    layers = ctx.keras.layers
    per_stage = int(ctx.hparams["blocks_per_stage"])
    width = int(ctx.hparams["width"])
    blocks, index = 3 * per_stage, 0

    def conv(filters: int, kernel: int = 3, strides: int = 1) -> Any:
        return ctx.conv(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
        )

    x = layers.ReLU()(layers.BatchNormalization()(conv(width)(x)))
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        for block in range(1, per_stage + 1):
            index += 1
            strides = 2 if stage > 1 and block == 1 else 1
            meta = {"stage": stage, "block": index, "blocks": blocks}
            name = f"stage{stage}.block{block}"
            y = layers.ReLU()(layers.BatchNormalization()(conv(filters, 3, strides)(x)))
            y = ctx.point(
                y, f"{name}.trunk", "maps", families={NOISE}, meta={**meta, "role": "trunk"}
            )
            y = layers.BatchNormalization()(conv(filters)(y))
            y = ctx.point(
                y, f"{name}.branch", "maps", families={BRANCH}, meta={**meta, "role": "branch"}
            )
            if strides != 1 or x.shape[-1] != filters:
                x = layers.BatchNormalization()(conv(filters, 1, strides)(x))
            x = layers.ReLU()(ctx.residual(x, y, f"{name}.merge", meta=meta))
    x = layers.GlobalAveragePooling2D()(x)
    x = ctx.point(x, "features", "vector", families={NOISE}, meta={"role": "trunk"})
    return ctx.classifier(x)


RESNET20 = Architecture(
    name="resnet20",
    aliases=("resnet-20",),
    description="CIFAR ResNet-20: 3 stages x 3 basic blocks, 16/32/64 filters, BN, GAP "
    "(274,042 params)",
    builder=resnet,
    hparams=(
        HParam("blocks_per_stage", 3, 1, 18, integer=True, help="n: depth is 6n+2"),
        HParam("width", 16, 4, 64, integer=True, help="filters of the first stage"),
    ),
)
