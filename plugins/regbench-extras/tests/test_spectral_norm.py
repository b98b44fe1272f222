"""Spectral normalization through the layer-wrapping side: every conv and hidden dense kernel
of the lab's models wrapped, each running divided by its largest singular value in training
and inference alike, its trained kernel left raw (what Keras's own layer does differently on
TensorFlow and JAX)."""

import numpy as np
import pytest
from regbench.api import import_keras
from regbench.plugins.building import build_network, count_macs
from regbench.plugins.manager import build_registry

from regbench_extras.layers import SpectralNormalized
from regbench_extras.regularizers import SpectralNorm

keras = import_keras()


def _top_singular(kernel) -> float:
    matrix = np.asarray(kernel).reshape(-1, np.asarray(kernel).shape[-1])
    return float(np.linalg.svd(matrix, compute_uv=False)[0])


@pytest.mark.parametrize("arch, wrapped", [("model1", 2), ("model3", 3)])
def test_every_conv_and_hidden_dense_kernel_is_wrapped_and_costs_the_same(arch, wrapped):
    registry = build_registry()
    architecture = registry.get("architectures", arch)
    plain = build_network(architecture, registry.get("regularizers", "none"), {}, (32, 32, 3), 10)
    built = build_network(architecture, SpectralNorm(), {"power_iterations": 1}, (32, 32, 3), 10)
    layers = [x for x in built.model.layers if isinstance(x, SpectralNormalized)]
    assert built.wrapped == len(layers) == wrapped
    assert all(not isinstance(x.layer, keras.layers.Dense) or x.layer.units != 10 for x in layers)
    assert count_macs(built.model) == count_macs(plain.model)  # wrapped layers still counted
    extra = sum(int(np.prod(x.vector_u.shape)) for x in layers)  # u: one row per wrapped kernel
    assert built.model.count_params() == plain.model.count_params() + extra


@pytest.mark.parametrize("make", [lambda: keras.layers.Dense(7), lambda: keras.layers.Conv2D(5, 3)])
def test_the_layer_runs_on_its_normalized_kernel_and_trains_only_u(make):
    rng = np.random.default_rng(0)
    inner = make()
    layer = SpectralNormalized(inner, power_iterations=1)
    shape = (2, 6) if isinstance(inner, keras.layers.Dense) else (2, 6, 6, 3)
    x = rng.normal(size=shape).astype("float32")
    layer(x)  # builds
    inner.kernel.assign(3.0 * rng.normal(size=inner.kernel.shape).astype("float32"))
    raw = np.asarray(inner.kernel).copy()
    for _ in range(60):  # the power iteration converges: u is the top singular vector
        layer(x, training=True)
    np.testing.assert_array_equal(np.asarray(inner.kernel), raw)  # the trained kernel stays raw
    kernel, _ = layer.normalized()
    assert _top_singular(kernel) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(np.asarray(kernel), raw / _top_singular(raw), rtol=1e-4, atol=1e-6)
    u = np.asarray(layer.vector_u).copy()
    out = np.asarray(layer(x, training=False))
    np.testing.assert_array_equal(np.asarray(layer.vector_u), u)  # inference leaves u alone
    twin = make()
    twin(x)
    twin.set_weights([np.asarray(kernel), np.asarray(inner.bias)])
    np.testing.assert_allclose(out, np.asarray(twin(x)), rtol=1e-5, atol=1e-6)


def test_a_zero_kernel_stays_zero_and_other_layers_are_refused():
    layer = SpectralNormalized(keras.layers.Dense(3))
    layer(np.ones((1, 4), "float32"))
    layer.layer.kernel.assign(np.zeros((4, 3), "float32"))
    assert np.isfinite(np.asarray(layer(np.ones((1, 4), "float32"), training=True))).all()
    with pytest.raises(ValueError, match="wraps Dense and Conv layers; got BatchNormalization"):
        SpectralNormalized(keras.layers.BatchNormalization())(np.ones((1, 4), "float32"))
