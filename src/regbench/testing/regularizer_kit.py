"""The regularizer kit: `check_regularizer` and the checks it runs, each public so a test can
run one alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regbench.api import Architecture, HParam, RegbenchError, Regularizer, import_keras
from regbench.engine.models import (
    DEFAULT_CLASSES,
    DEFAULT_INPUT_SHAPE,
    build_model,
    count_params,
    count_regularized_kernels,
)
from regbench.plugins.building import check_input
from regbench.plugins.context import invoke
from regbench.plugins.manager import build_registry
from regbench.testing.backend_neutral import check_backend_neutral
from regbench.testing.effects import check_effects
from regbench.testing.probes import (
    InputShape,
    baseline,
    check_rows,
    images,
    labels,
    predict,
    require,
    resolve_claims,
    run_context,
)
from regbench.testing.strategies import hparam_values, invalid_hparam_values
from regbench.testing.training import check_hooks, check_training_contract


def installed_architectures(input_shape: InputShape = DEFAULT_INPUT_SHAPE) -> list[Architecture]:
    """Every installed architecture that can take `input_shape` (the others are not the
    regularizer's concern)."""
    fitting = []
    for entry in build_registry().entries["architectures"].values():
        try:
            check_input(entry.obj, input_shape)
        except RegbenchError:
            continue
        fitting.append(entry.obj)
    return fitting


def check_declaration(regularizer: Regularizer) -> None:
    """A usable registry entry: a name, a description, and distinct HParam declarations."""
    label = type(regularizer).__name__
    require(isinstance(regularizer, Regularizer), f"{label} does not subclass Regularizer")
    require(bool(regularizer.name), f"{label} has no name")
    require(bool(regularizer.description), f"{regularizer.name}: no description for the list")
    require(
        all(isinstance(h, HParam) for h in regularizer.hparams),
        f"{regularizer.name}: hparams must be HParam instances",
    )
    names = [h.name for h in regularizer.hparams]
    require(len(set(names)) == len(names), f"{regularizer.name}: duplicate hparams {names}")


def _refuses(regularizer: Regularizer, hparam: HParam, max_examples: int) -> None:
    @settings(max_examples=max_examples, deadline=None)
    @given(value=invalid_hparam_values(hparam))
    def refused(value: Any) -> None:
        try:
            regularizer.resolve({hparam.name: value})
        except RegbenchError:
            return
        raise AssertionError(
            f"{regularizer.name}.{hparam.name}={value!r} was accepted; "
            f"bounds are [{hparam.low:g}, {hparam.high:g}]"
        )

    refused()


def check_refuses_out_of_bounds(regularizer: Regularizer, max_examples: int = 25) -> None:
    """Unknown names and every kind of out-of-bounds value are refused with RegbenchError."""
    try:
        regularizer.resolve({"no_such_hparam": 1})
    except RegbenchError:
        pass
    else:
        raise AssertionError(f"{regularizer.name}: accepted an unknown hyperparameter")
    for hparam in regularizer.hparams:
        _refuses(regularizer, hparam, max_examples)


def check_model(
    regularizer: Regularizer,
    architecture: Architecture,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    claims: Mapping[str, bool] | None = None,
) -> None:
    """One build against the `none` baseline: probability rows in and out of training, the same
    parameter counts unless it claims `adds_params`, one loss per kernel when it has a kernel
    regularizer and no others unless it claims `adds_losses`, and identical outputs from two
    inference calls unless it claims `stochastic_inference`."""
    claimed = resolve_claims(regularizer, claims)
    label = f"{regularizer.name} on {architecture.name}"
    values = regularizer.resolve(params)
    model = build_model(architecture, regularizer, values, input_shape, classes, seed=0)
    x = images(3, input_shape)
    first = predict(model, x, training=False)
    check_rows(first, 3, classes, f"{label} (inference)")
    if not claimed["stochastic_inference"]:  # before training=True, which may move BN statistics
        second = predict(model, x, training=False)
        require(np.array_equal(first, second), f"{label}: two inference calls differ")
    check_rows(predict(model, x, training=True), 3, classes, f"{label} (training)")

    base_counts, base_losses, kernels = baseline(architecture, input_shape, classes)
    counts = count_params(model)
    if claimed["adds_params"]:
        for key in ("trainable_params", "non_trainable_params"):
            require(counts[key] >= base_counts[key], f"{label}: fewer {key} than the baseline")
    else:
        require(
            counts == base_counts,
            f"{label}: params {counts} differ from the baseline {base_counts}; "
            "set adds_params = True if its layers have weights",
        )

    expected = base_losses
    run = run_context(input_shape, classes)
    if invoke(regularizer.kernel_regularizer, values, ctx=run) is not None:
        expected += kernels
        require(
            count_regularized_kernels(model) == kernels,
            f"{label}: {count_regularized_kernels(model)} of {kernels} kernels regularized",
        )
    losses = model.losses
    if claimed["adds_losses"]:
        require(len(losses) >= expected, f"{label}: {len(losses)} losses, fewer than {expected}")
    else:
        require(
            len(losses) == expected,
            f"{label}: {len(losses)} losses, expected {expected} (one per regularized kernel); "
            "set adds_losses = True if its layers add losses of their own",
        )
    for value in losses:
        require(bool(np.isfinite(float(value))), f"{label}: a model loss is not finite")


def check_bounds_build(
    regularizer: Regularizer,
    architecture: Architecture,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> None:
    """Each hyperparameter at its low and its high bound builds, predicts probability rows and
    gives a usable loss, optimizer and callbacks (the search may well propose a bound)."""
    x = images(2, input_shape)
    for hparam in regularizer.hparams:
        for bound in (hparam.low, hparam.high):
            label = f"{regularizer.name} with {hparam.name}={bound:g} on {architecture.name}"
            values = regularizer.resolve({hparam.name: bound})
            model = build_model(architecture, regularizer, values, input_shape, classes, seed=0)
            check_rows(predict(model, x, training=False), 2, classes, label)
            check_rows(predict(model, x, training=True), 2, classes, label)
            check_hooks(regularizer, values, input_shape, classes)


def check_random_params(
    regularizer: Regularizer,
    architectures: Sequence[Architecture],
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    max_examples: int = 5,
) -> None:
    """Hypothesis-drawn valid hyperparameters, architecture, class count and batch size all build
    and give probability rows (shapes only: `check_effects` checks what the layers do)."""

    @settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(
        params=hparam_values(regularizer),
        architecture=st.sampled_from(list(architectures)),
        classes=st.integers(2, 12),
        batch=st.integers(1, 3),
    )
    def builds(
        params: dict[str, float | int], architecture: Architecture, classes: int, batch: int
    ) -> None:
        model = build_model(architecture, regularizer, params, input_shape, classes, seed=0)
        label = f"{regularizer.name} with {params} on {architecture.name}, {classes} classes"
        x = images(batch, input_shape)
        check_rows(predict(model, x, training=False), batch, classes, label)
        check_rows(predict(model, x, training=True), batch, classes, label)

    builds()


SHIFT = 0.2  # added to one sample's pixels to see where they go (probe images in [0.25, 0.75))
MIXED = 1e-3  # a pixel share and its label weight this far apart differ (float32: ~1e-6)


def _check_label_mixing(
    regularizer: Regularizer,
    values: Mapping[str, Any],
    input_shape: InputShape,
    classes: int,
    label: str,
) -> None:
    """Where a batch hook puts part of sample j's pixels into image i, image i's target gives
    sample j's label that part. Shifting sample j's pixels by SHIFT, with the same draws,
    moves image i by SHIFT times that part on average (a blend by its weight, a pasted box by
    its area), so the shares are measured, not assumed. Weight on a label whose pixels are
    absent (label smoothing) is not judged."""
    keras = import_keras()
    ops = keras.ops
    n = min(4, classes)
    x = 0.25 + 0.5 * images(n, input_shape)
    onehot = np.eye(classes, dtype=np.float32)[:n]  # sample j has label j

    def rewrite(batch: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        out = regularizer.batch(
            ops.convert_to_tensor(batch),
            ops.convert_to_tensor(onehot),
            values,
            keras.random.SeedGenerator(seed),
            run_context(input_shape, classes),
        )
        new_x, new_y = (np.asarray(ops.convert_to_numpy(t), dtype=np.float64) for t in out)
        return new_x, new_y

    for seed in range(3):
        plain, targets = rewrite(x, seed)
        for j in range(n):
            moved = x.copy()
            moved[j] += SHIFT
            shares = (rewrite(moved, seed)[0] - plain).reshape(n, -1).mean(axis=1) / SHIFT
            for i in (i for i in range(n) if i != j and abs(shares[i]) > MIXED):
                require(
                    abs(targets[i, j] - shares[i]) <= MIXED,
                    f"{label}: image {i} takes {shares[i]:.3f} of its pixels from sample {j}, "
                    f"but its target gives sample {j}'s label {targets[i, j]:.3f}; mix the "
                    "targets as the images are mixed",
                )


def check_batches(
    regularizer: Regularizer,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> None:
    """A `batch` hook (if any) returns images of the input's shape and finite soft targets:
    rows of (batch, classes) non-negative numbers summing to 1; and an image that takes part
    of another sample's pixels gives that sample's label the same part of its target."""
    if not regularizer.uses_batches:
        return
    keras = import_keras()
    label = f"{regularizer.name}.batch"
    values = regularizer.resolve(params)
    x = images(6, input_shape)
    onehot = np.eye(classes, dtype=np.float32)[labels(6, classes)]
    seed = keras.random.SeedGenerator(0)
    new_images, targets = regularizer.batch(
        keras.ops.convert_to_tensor(x),
        keras.ops.convert_to_tensor(onehot),
        values,
        seed,
        run_context(input_shape, classes),
    )
    new_images = np.asarray(keras.ops.convert_to_numpy(new_images))
    require(new_images.shape == x.shape, f"{label}: images {new_images.shape}, not {x.shape}")
    require(bool(np.all(np.isfinite(new_images))), f"{label}: images have NaN or inf")
    check_rows(np.asarray(keras.ops.convert_to_numpy(targets)), 6, classes, f"{label} targets")
    _check_label_mixing(regularizer, values, input_shape, classes, label)


def check_regularizer(
    regularizer: Regularizer,
    architectures: Sequence[Architecture] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    max_examples: int = 5,
    claims: Mapping[str, bool] | None = None,
    fresh_process: bool = True,
    xla: bool = True,
) -> None:
    """Every check above, on `architectures`: the model and its effects on each, training on
    each architecture given (compiled with XLA unless `xla` is False), and the first reloads
    in a fresh process. By default the checks run on every installed architecture that takes
    `input_shape`, and training on the smallest of them.

    `claims` overrides what the regularizer declares, for one whose class you cannot edit.
    """
    archs = installed_architectures(input_shape) if architectures is None else list(architectures)
    require(bool(archs), f"no architecture takes input {input_shape}")
    check_declaration(regularizer)
    check_backend_neutral(regularizer)
    check_refuses_out_of_bounds(regularizer)
    shape: dict[str, Any] = {"input_shape": input_shape, "classes": classes}
    for architecture in archs:
        check_model(regularizer, architecture, **shape, claims=claims)
        check_effects(regularizer, architecture, **shape, claims=claims)
    smallest = min(archs, key=lambda a: baseline(a, input_shape, classes)[0]["total_params"])
    check_batches(regularizer, **shape)
    check_bounds_build(regularizer, smallest, **shape)
    check_random_params(regularizer, archs, input_shape=input_shape, max_examples=max_examples)
    trained = archs if architectures is not None else [smallest]
    for index, architecture in enumerate(trained):
        check_training_contract(
            regularizer,
            architecture,
            **shape,
            claims=claims,
            fresh_process=fresh_process and index == 0,
            xla=xla,
        )
