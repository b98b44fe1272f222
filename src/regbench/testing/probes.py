"""What every kit probes with: tiny seeded inputs, the `none` baseline to compare against, and
assertions that survive `python -O`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from regbench.api import Architecture, Regularizer, RunContext, Splits, import_keras
from regbench.engine.models import build_model, count_params

CLAIMS = ("adds_params", "adds_losses", "stochastic_inference")

InputShape = tuple[int, int, int]


def require(condition: bool, message: str) -> None:
    """Fail with a message that names the plugin (asserts vanish under python -O)."""
    if not condition:
        raise AssertionError(message)


def resolve_claims(
    regularizer: Regularizer, overrides: Mapping[str, bool] | None
) -> dict[str, bool]:
    """The regularizer's declared claims, overlaid with the test's `claims` overrides."""
    unknown = set(overrides or {}) - set(CLAIMS)
    require(not unknown, f"unknown claims {sorted(unknown)}; the claims are {CLAIMS}")
    return {name: bool(getattr(regularizer, name, False)) for name in CLAIMS} | dict(
        overrides or {}
    )


def images(batch: int, input_shape: InputShape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, *input_shape), dtype=np.float32)


def labels(batch: int, classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, batch).astype(np.int64)


def splits(input_shape: InputShape, classes: int, size: int = 8) -> Splits:
    """Eight images for every split: enough for two batches of four."""
    x, y = images(size, input_shape, seed=1), labels(size, classes, seed=1)
    names = tuple(f"class {i}" for i in range(classes))
    return Splits(x, y, x, y, x, y, names)


def run_context(input_shape: InputShape, classes: int, seed: int = 0) -> RunContext:
    return RunContext(classes=classes, input_shape=tuple(input_shape), seed=seed)


def predict(model: Any, x: np.ndarray, training: bool) -> np.ndarray:
    return np.asarray(import_keras().ops.convert_to_numpy(model(x, training=training)))


def check_rows(out: np.ndarray, batch: int, classes: int, label: str) -> None:
    """(batch, classes) finite probability rows."""
    require(out.shape == (batch, classes), f"{label}: output {out.shape}, not {(batch, classes)}")
    require(bool(np.all(np.isfinite(out))), f"{label}: output has NaN or inf")
    require(bool(np.all(out >= 0)), f"{label}: output has negative probabilities")
    sums = out.sum(axis=-1)
    require(bool(np.allclose(sums, 1.0, atol=1e-4)), f"{label}: rows sum to {sums}, not 1")


def flat_layers(model: Any) -> list[Any]:
    """Every leaf layer, nested models opened."""
    out = []
    for layer in model.layers:
        out.extend(flat_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


def kernels(model: Any) -> int:
    """How many kernels a run's kernel regularizer should cover: every Conv2D and Dense."""
    keras = import_keras()
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    return sum(isinstance(layer, kinds) for layer in flat_layers(model))


class Baseline(Regularizer):
    """The unregularized run every regularizer is compared with."""

    name = "none"


_BASELINES: dict[tuple, tuple[dict[str, int], int, int]] = {}


def baseline(
    architecture: Architecture, input_shape: InputShape, classes: int
) -> tuple[dict[str, int], int, int]:
    """Parameter counts, loss count and kernel count of the unregularized model (memoized)."""
    key = (architecture.name, id(architecture), tuple(input_shape), classes)
    if key not in _BASELINES:
        model = build_model(architecture, Baseline(), {}, input_shape, classes, seed=0)
        _BASELINES[key] = (count_params(model), len(model.losses), kernels(model))
    return _BASELINES[key]
