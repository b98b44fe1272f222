"""A small VGG-style network as a regbench layer table (read it like SPEC.md's tables)."""

from regbench.api import Architecture, Classifier, Conv, Dense, Flatten, MaxPool, Point

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
