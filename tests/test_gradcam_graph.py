"""Grad-CAM on a network with skip connections (a residual plugin architecture)."""

from __future__ import annotations

import numpy as np
import pytest

from regbench.builtins.visualizers import gradcam
from regbench.engine.models import build_model


def test_gradcam_on_a_residual_network_uses_the_maps_after_the_last_merge(registry):
    pytest.importorskip("regbench_extras")
    resnet = registry.get("architectures", "resnet20")
    model = build_model(resnet, registry.get("regularizers", "none"), {}, (16, 16, 3), 10, seed=0)
    image = np.random.default_rng(0).random((16, 16, 3)).astype("float32")
    out = gradcam(model, image)
    names = [layer.name for layer in model.layers]
    last_add = max(i for i, layer in enumerate(model.layers) if type(layer).__name__ == "Add")
    assert names.index(out["layer"]) >= last_add
    assert out["heatmap"].shape == (16, 16)
    assert out["heatmap"].min() >= 0.0 and out["heatmap"].max() <= 1.0
