"""The extras on the step and weights sides (SAM, adaptive SAM, R-Drop, SWA, EMA), manifold
mixup's shared draw and ShakeDrop's two gates: each as its paper defines it, through
regbench's conformance kit where the kit has a check."""

import numpy as np
import pytest
from regbench.api import import_keras
from regbench.engine.context import run_context
from regbench.engine.models import build
from regbench.plugins.manager import build_registry
from regbench.testing import check_average, check_regularizer, check_step

from regbench_extras.architectures import RESNET20
from regbench_extras.averages import AVERAGING_REGULARIZERS, EMA, SWA
from regbench_extras.mixing import MIXING_REGULARIZERS, ManifoldMixup, ShakeDrop
from regbench_extras.steps import SAM, STEP_REGULARIZERS, AdaptiveSAM, RDrop

SMALL = (16, 16, 3)


def sam_by_hand(weights, gradient, params, adaptive=False):
    """The gradient at w + rho * T^2 g / ||T g|| (T = |w| for adaptive SAM, else 1)."""
    g = gradient(weights)
    scale = [np.abs(w) if adaptive else np.ones_like(w) for w in weights]
    norm = np.sqrt(sum(float(((s * x) ** 2).sum()) for s, x in zip(scale, g, strict=True)))
    ascent = [s * s * x * params["rho"] / (norm + 1e-12) for s, x in zip(scale, g, strict=True)]
    return gradient([w + e for w, e in zip(weights, ascent, strict=True)])


@pytest.mark.slow
def test_sam_and_adaptive_sam_take_their_papers_step():
    check_step(SAM(), sam_by_hand, {"rho": 0.2})
    check_step(AdaptiveSAM(), lambda w, g, p: sam_by_hand(w, g, p, adaptive=True), {"rho": 1.0})


@pytest.mark.slow
def test_rdrop_without_dropout_is_plain_crossentropy():
    check_step(RDrop(), lambda w, gradient, p: gradient(w), {"rate": 0.0, "alpha": 5.0})


def test_rdrop_kl_is_zero_for_equal_predictions_and_positive_otherwise():
    from regbench_extras.steps import symmetric_kl

    ops = import_keras().ops
    p = ops.convert_to_tensor(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32))
    q = ops.convert_to_tensor(np.array([[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], np.float32))
    assert float(symmetric_kl(p, p)) == pytest.approx(0.0, abs=1e-7)
    by_hand = np.mean(
        [
            0.5 * np.sum((a - b) * (np.log(a) - np.log(b)))
            for a, b in zip(np.asarray(p), np.asarray(q), strict=True)
        ]
    )
    assert float(symmetric_kl(p, q)) == pytest.approx(by_hand, rel=1e-5) and by_hand > 0


@pytest.mark.slow
def test_swa_and_ema_end_with_their_declared_average():
    check_average(SWA(), {"start": 0.25})
    check_average(EMA(), {"decay": 0.95})


@pytest.mark.slow
def test_manifold_mixup_shares_lambda_and_the_point_between_batch_and_layers():
    keras = import_keras()
    ops = keras.ops
    model3 = build_registry().get("architectures", "model3")
    mix = ManifoldMixup()
    run = run_context(
        epochs=1,
        batch_size=8,
        train_size=8,
        classes=10,
        input_shape=SMALL,
        learning_rate=0.01,
        stage="grid",
        seed=0,
    )
    built = build(model3, mix, {}, SMALL, 10, seed=0, run=run)
    layers = [layer for layer in built.model.layers if type(layer).__name__ == "ManifoldMix"]
    assert [layer.index for layer in layers] == list(range(1, run.state.manifold_points + 1))
    assert len(layers) >= 2
    rng = np.random.default_rng(0)
    images = rng.random((8, *SMALL), dtype=np.float32)
    targets = np.eye(10, dtype=np.float32)[rng.permutation(10)[:8]]
    seen = set()
    for seed in range(40):
        run.state.new_step()
        mixed, soft = mix.batch(
            ops.convert_to_tensor(images),
            ops.convert_to_tensor(targets),
            {"alpha": 2.0},
            keras.random.SeedGenerator(seed),
            run,
        )
        lam, point = (float(v) for v in run.state.step.manifold)
        point = int(point)
        seen.add(point)
        assert 0.0 < lam < 1.0
        # the targets mix with the drawn lambda (row 0 and its mirror, row 7, differ)
        np.testing.assert_allclose(
            np.asarray(soft), lam * targets + (1 - lam) * targets[::-1], atol=1e-6
        )
        want = lam * images + (1 - lam) * images[::-1] if point == 0 else images
        np.testing.assert_allclose(np.asarray(mixed), want, atol=1e-6)
        h = ops.convert_to_tensor(rng.random((8, 4), dtype=np.float32))
        for layer in layers:
            out = np.asarray(layer(h, training=True))
            hv = np.asarray(h)
            expected = lam * hv + (1 - lam) * hv[::-1] if layer.index == point else hv
            np.testing.assert_allclose(out, expected, atol=1e-6)
            assert np.array_equal(np.asarray(layer(h, training=False)), hv)  # inference: never
    assert seen == set(range(len(layers) + 1))  # the input and every point get chosen
    run.state.new_step()
    assert all(
        np.array_equal(np.asarray(layer(h, training=True)), np.asarray(h)) for layer in layers
    )


def test_shakedrop_gates_forward_with_alpha_and_backward_with_beta():
    import tensorflow as tf

    from regbench_extras.mixing_layers import ShakeDropAdd

    layer = ShakeDropAdd(keep=0.5, seed=3)
    shortcut = tf.zeros((4000, 1, 1, 1))
    branch = tf.ones((4000, 1, 1, 1))
    with tf.GradientTape() as tape:
        tape.watch(branch)
        out = layer([shortcut, branch], training=True)
    forward = out.numpy().ravel() * 0.5  # the gates, times keep
    backward = tape.gradient(out, branch).numpy().ravel() * 0.5
    kept = np.isclose(forward, 1.0) & np.isclose(backward, 1.0)
    assert 0.45 < kept.mean() < 0.55  # b ~ Bernoulli(keep)
    dropped_forward, dropped_backward = forward[~kept], backward[~kept]
    assert dropped_forward.min() >= -1 and dropped_forward.max() <= 1  # alpha ~ U[-1, 1]
    assert dropped_backward.min() >= 0 and dropped_backward.max() <= 1  # beta ~ U[0, 1]
    assert abs(dropped_forward.mean()) < 0.06 and abs(dropped_backward.mean() - 0.5) < 0.03
    assert not np.allclose(dropped_forward, dropped_backward)
    inference = layer([shortcut, branch], training=False).numpy()
    assert np.allclose(inference, 1.0)  # the plain sum: training divides the gates by keep
    assert abs(out.numpy().mean() - 1.0) < 0.05  # whose mean is then 1


def test_shakedrop_keeps_deeper_blocks_less_often():
    built = build(RESNET20, ShakeDrop(), {"rate": 0.5}, SMALL, 10, seed=0)
    keeps = [layer.keep for layer in built.model.layers if type(layer).__name__ == "ShakeDropAdd"]
    assert keeps == pytest.approx([1 - 0.5 * block / 9 for block in range(1, 10)])


@pytest.mark.slow
@pytest.mark.parametrize(
    "regularizer",
    [cls() for cls in (*STEP_REGULARIZERS, *AVERAGING_REGULARIZERS, *MIXING_REGULARIZERS)],
    ids=lambda r: r.name,
)
def test_the_new_extras_conform(regularizer):
    model1 = build_registry().get("architectures", "model1")
    architectures = [RESNET20] if regularizer.name == "shakedrop" else [model1, RESNET20]
    check_regularizer(regularizer, architectures, input_shape=SMALL, max_examples=3)


SIDES = "sam,swa,rdrop,manifold_mixup,spectral_norm"


def _grid(folder, backend, *extra):
    """The training-side extras and the layer-wrapping one on model1, one digits epoch, in a
    fresh process on `backend`; each row's status, final weights and passes per step, by
    regularizer."""
    import csv
    import os
    import subprocess
    import sys

    argv = ["run", "--arch", "model1", "--reg", SIDES, "--dataset", "digits", "--epochs", "1"]
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run(
        [sys.executable, "-m", "regbench", *argv, *extra, "--experiment", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with (folder / "runs.csv").open() as handle:
        rows = {r["reg"]: r for r in csv.DictReader(handle)}
    return {
        reg: (r["status"], r["final_weights"], r["passes_per_step"]) for reg, r in rows.items()
    }, done.stdout


WANTED = {
    "sam": ("ok", "epoch 1", "2"),
    "swa": ("ok", "average", "1"),
    "rdrop": ("ok", "epoch 1", "2"),
    "manifold_mixup": ("ok", "epoch 1", "1"),
    "spectral_norm": ("ok", "epoch 1", "1"),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "extra"),
    [("tensorflow", ()), ("tensorflow", ("--jit-compile", "on")), ("jax", ())],
    ids=["tensorflow", "tensorflow-xla", "jax"],
)
def test_the_training_sides_train_a_digits_grid(tmp_path, backend, extra):
    if backend == "jax":
        pytest.importorskip("jax")
    rows, _ = _grid(tmp_path, backend, *extra)
    assert rows == WANTED


@pytest.mark.slow
def test_the_vmapped_engine_runs_the_steps_and_averages_and_skips_the_rest(tmp_path):
    pytest.importorskip("jax")
    rows, out = _grid(tmp_path, "jax", "--engine", "vmapped")
    assert rows["sam"] == WANTED["sam"] and rows["rdrop"] == WANTED["rdrop"]
    assert rows["swa"] == WANTED["swa"] and rows["spectral_norm"] == WANTED["spectral_norm"]
    assert rows["manifold_mixup"][0] == "skipped" and "manifold_mixup" in out
