"""The random extras draw what their papers draw, judged by Kolmogorov-Smirnov: Mixup's lambda
is Beta(alpha, alpha), CutMix's pasted area is that of a box of side sqrt(1 - lambda) (clipped
to the image), and stochastic depth keeps a branch's mean (its 1/keep rescale). Each check
also fails on the mutant it guards against (the slow tests below)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regbench.api import RunContext
from regbench.plugins.keras import import_keras
from regbench.plugins.points import BRANCH, Point
from scipy import stats

import regbench_extras.regularizers as extras
from regbench_extras.layers import DropPath
from regbench_extras.regularizers import CutMix, Mixup, StochasticDepth

keras = import_keras()
ops = keras.ops

DRAWS = 4000  # batches; KS at P_MIN then tells apart distribution functions 0.04 apart
P_MIN = 1e-6  # each KS check fails by chance with this probability
SIDE = 16  # CutMix's images: 16 x 16, so an area is a multiple of 1/256


class FirstWeights(keras.layers.Layer):
    """`draws` calls of a batch hook in one compiled loop, each drawing from the layer's
    seed generator as training does: the first sample's target weight on its own label
    (Mixup's lambda, CutMix's share of the image not pasted over)."""

    def __init__(self, regularizer: Any, params: dict, draws: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regularizer, self.params, self.draws = regularizer, params, draws
        self.generator = keras.random.SeedGenerator(0)

    def call(self, images: Any) -> Any:
        targets = ops.eye(ops.shape(images)[0])  # sample i has label i

        def draw(i: Any, weights: Any) -> Any:
            _, soft = self.regularizer.batch(
                images, targets, self.params, self.generator, RunContext()
            )
            return ops.slice_update(weights, ops.reshape(i, (1,)), ops.reshape(soft[0, 0], (1,)))

        return ops.fori_loop(0, self.draws, draw, ops.zeros((self.draws,)))[None]


def first_weights(regularizer: Any, alpha: float, image: tuple[int, ...]) -> np.ndarray:
    inputs = keras.Input(image, batch_size=2)
    model = keras.Model(inputs, FirstWeights(regularizer, {"alpha": alpha}, DRAWS)(inputs))
    return model.predict(np.zeros((2, *image), "float32"), batch_size=2, verbose=0)[0]


def assert_mixup_lambda_is_beta(alpha: float) -> None:
    lam = first_weights(Mixup(), alpha, (1, 1, 1))
    p = stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue
    assert p > P_MIN, f"Mixup's lambda at alpha={alpha} is not Beta(alpha, alpha): p = {p:.3g}"


def cutmix_kept_reference(alpha: float, size: int = 200_000) -> np.ndarray:
    """The share of a SIDE x SIDE image CutMix keeps, as timm's rand_bbox draws the box:
    lambda ~ Beta(alpha, alpha), a box of side sqrt(1 - lambda) about a uniform centre,
    its edges rounded to pixels and clipped to the image."""
    rng = np.random.default_rng(0)
    half = np.sqrt(1.0 - rng.beta(alpha, alpha, size)) * SIDE / 2.0
    centre = rng.random((2, size)) * SIDE
    low, high = (np.clip(np.round(centre + s * half), 0, SIDE) for s in (-1, 1))
    return 1.0 - np.prod(high - low, axis=0) / SIDE**2


def assert_cutmix_pastes_boxes_of_side_sqrt(alpha: float) -> None:
    kept = first_weights(CutMix(), alpha, (SIDE, SIDE, 1))
    p = stats.ks_2samp(kept, cutmix_kept_reference(alpha)).pvalue  # ties: conservative
    assert p > P_MIN, f"CutMix's box area at alpha={alpha} is not the paper's: p = {p:.3g}"


# (below 0.4, float32 rounds lambda to 1.0 too often for KS; random_beta's own tests cover it)
@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_draws_lambda_from_beta_alpha_alpha(alpha: float) -> None:
    assert_mixup_lambda_is_beta(alpha)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [1.0])
def test_cutmix_pastes_the_area_of_a_box_of_side_sqrt_one_minus_lambda(alpha: float) -> None:
    assert_cutmix_pastes_boxes_of_side_sqrt(alpha)


BRANCHES = 200_000  # samples: the mean's standard error is under 0.007 for rates up to 0.9


def assert_keeps_the_mean(layer: Any, rate: float) -> None:
    """A branch of ones comes out with mean 1 within 6 standard errors, each sample 0 or
    1/keep."""
    out = np.asarray(ops.convert_to_numpy(layer(np.ones((BRANCHES, 1), "float32"), training=True)))
    keep = 1.0 - rate
    error = np.sqrt(rate / keep / BRANCHES)  # of the mean of Bernoulli(keep) / keep
    assert out.mean() == pytest.approx(1.0, abs=6 * error), f"mean {out.mean()} at rate {rate}"
    assert np.all(np.isclose(out, 0.0) | np.isclose(out, 1.0 / keep)), np.unique(out)


def last_branch_layer(rate: float) -> Any:
    """The layer stochastic depth puts on the deepest of 9 residual branches: rate `rate`."""
    meta = {"role": "branch", "block": 9, "blocks": 9}
    point = Point("branch", "maps", families=frozenset({BRANCH}), meta=meta)
    (layer,) = StochasticDepth().layers_at(point, {"rate": rate}, RunContext())
    return layer


@settings(max_examples=10, deadline=None)
@given(rate=st.floats(0.05, 0.9))
def test_stochastic_depth_keeps_the_branchs_mean(rate: float) -> None:
    assert_keeps_the_mean(last_branch_layer(rate), rate)


# ---------------------------------------------------------------- the mutants they catch


@pytest.mark.slow
def test_the_lambda_check_catches_a_mixup_drawing_beta_alpha_5(monkeypatch) -> None:
    real = extras.random_beta
    monkeypatch.setattr(extras, "random_beta", lambda shape, a, b, seed: real(shape, a, 5.0, seed))
    with pytest.raises(AssertionError, match="not Beta"):
        assert_mixup_lambda_is_beta(2.0)


@pytest.mark.slow
def test_the_area_check_catches_a_cutmix_box_of_side_one_minus_lambda(monkeypatch) -> None:
    """CutMix uses lambda only as sqrt(1 - lambda): drawn as 1 - (1 - lambda)**2, that is
    the box of side 1 - lambda."""
    real = extras.random_beta
    monkeypatch.setattr(extras, "random_beta", lambda *args: 1.0 - ops.square(1.0 - real(*args)))
    with pytest.raises(AssertionError, match="not the paper's"):
        assert_cutmix_pastes_boxes_of_side_sqrt(1.0)


@pytest.mark.slow
def test_the_mean_check_catches_a_drop_path_without_its_rescale() -> None:
    class Unscaled(DropPath):
        def call(self, x: Any, training: bool = False) -> Any:
            return super().call(x, training=training) * (1.0 - self.rate)

    with pytest.raises(AssertionError, match="mean"):
        assert_keeps_the_mean(Unscaled(0.3), 0.3)
