"""The step and weights sides of the seam: a regularizer's own training step and the weights a
run ends with, exact on every backend, checked by the conformance kit (which must catch the
broken ones)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from regbench.api import HParam, Regularizer, WeightAverage
from regbench.testing import check_average, check_step

pytestmark = pytest.mark.xdist_group("step_side")


def sam_reference(weights, gradient, params):
    """SAM by hand: the gradient at w + rho * g / ||g||."""
    g = gradient(weights)
    norm = np.sqrt(sum(float((x**2).sum()) for x in g))
    return gradient(
        [w + params["rho"] * x / (norm + 1e-12) for w, x in zip(weights, g, strict=True)]
    )


def plain_reference(weights, gradient, params):
    return gradient(weights)


def _extras():
    from regbench_extras.averages import EMA, SWA
    from regbench_extras.steps import SAM, RDrop

    return SAM, RDrop, SWA, EMA


class GradientAtW(Regularizer):
    """A broken SAM: it steps with the gradient at the unperturbed weights."""

    name = "broken_sam"
    api_version = 2
    hparams = (HParam("rho", 0.05, 1e-3, 1.0),)

    def train_step(self, step, images, targets, params, ctx):
        step.gradients(images, targets)  # the "ascent" it then forgets
        _, gradients = step.gradients(images, targets)
        step.apply(gradients)


class Last(WeightAverage):
    def mix(self, average, weights, count):
        return weights


class LastWeights(Regularizer):
    """A broken SWA: it ends with the last snapshot instead of the average."""

    name = "broken_swa"
    api_version = 2

    def average(self, params):
        return Last(start=0.5, every="epoch")


@pytest.mark.slow
def test_sam_takes_the_two_gradient_step_of_the_paper():
    sam = _extras()[0]()
    check_step(sam, sam_reference, {"rho": 0.5})


@pytest.mark.slow
def test_the_kit_catches_a_sam_stepping_with_the_gradient_at_w():
    with pytest.raises(AssertionError, match="from the update computed by hand"):
        check_step(GradientAtW(), sam_reference, {"rho": 0.5})


@pytest.mark.slow
def test_rdrop_without_dropout_is_the_plain_step():
    """Two passes that agree: the KL term is zero and the mean crossentropy is the loss."""
    rdrop = _extras()[1]()
    check_step(rdrop, plain_reference, {"rate": 0.0, "alpha": 3.0})


@pytest.mark.slow
def test_rdrop_with_dropout_is_not_the_plain_step():
    rdrop = _extras()[1]()
    with pytest.raises(AssertionError):
        check_step(rdrop, plain_reference, {"rate": 0.5, "alpha": 3.0})


@pytest.mark.slow
def test_swa_and_ema_end_with_their_average_and_recalibrated_batch_norm():
    _, _, swa, ema = _extras()
    check_average(swa(), {"start": 0.5})
    check_average(ema(), {"decay": 0.9})


def test_the_kit_catches_an_swa_that_keeps_the_last_weights():
    with pytest.raises(AssertionError, match="from the average"):
        check_average(LastWeights())


def test_the_kit_catches_an_average_left_with_the_old_batch_norm(monkeypatch):
    from regbench.engine import averaging

    monkeypatch.setattr(averaging, "recalibrate_batchnorm", lambda *args: None)
    with pytest.raises(AssertionError, match="not recalibrated"):
        check_average(_extras()[2](), {"start": 0.5})


def test_a_step_that_never_evaluates_the_batch_is_refused():
    from regbench.errors import RegbenchError

    class Idle(Regularizer):
        name = "idle"

        def train_step(self, step, images, targets, params, ctx):
            return None

    with pytest.raises(RegbenchError, match="never called step.gradients"):
        check_step(Idle(), plain_reference)


JAX_CHECKS = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, sys.argv[1])
    import pytest
    from test_step_side import (GradientAtW, LastWeights, _extras, check_average, check_step,
                                plain_reference, sam_reference)
    SAM, RDrop, SWA, EMA = _extras()
    check_step(SAM(), sam_reference, {"rho": 0.5})
    check_step(RDrop(), plain_reference, {"rate": 0.0, "alpha": 3.0})
    check_average(SWA(), {"start": 0.5})
    check_average(EMA(), {"decay": 0.9})
    for broken in (lambda: check_step(GradientAtW(), sam_reference, {"rho": 0.5}),
                   lambda: check_average(LastWeights())):
        with pytest.raises(AssertionError):
            broken()
    print("RESULT ok")
    """
)


@pytest.mark.slow
def test_the_sides_are_exact_on_jax_too():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"}
    here = os.path.dirname(__file__)
    done = subprocess.run(
        [sys.executable, "-c", JAX_CHECKS, here],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert "RESULT ok" in done.stdout, done.stderr[-3000:]
