"""The conformance kit: checks a plugin author calls from their own tests.

`check_regularizer(reg)` runs them all. A regularizer that passes builds on every installed
architecture and gives (batch, classes) probability rows; adds only the weights and losses it
claims (the `adds_params`, `adds_losses` and `stochastic_inference` attributes of
`regbench.plugins.seam.Regularizer`); builds at its declared bounds and refuses values outside
them with
`RegbenchError`; trains through the trainer's contract (loss, optimizer, callbacks) and survives
a save/load round trip; and imports no backend directly. Each check is also public, so a test
can run one alone. Needs `regbench[test]` (hypothesis); plain `AssertionError`s, no pytest.
"""

from __future__ import annotations

import ast
import inspect
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regbench.engine.models import DEFAULT_CLASSES, DEFAULT_INPUT_SHAPE, build_model, count_params
from regbench.errors import RegbenchError
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import build_registry
from regbench.plugins.seam import (
    Architecture,
    Classifier,
    Conv,
    Dense,
    HParam,
    OptimizerSpec,
    Regularizer,
)

__all__ = [
    "CLAIMS",
    "check_backend_neutral",
    "check_bounds_build",
    "check_declaration",
    "check_model",
    "check_random_params",
    "check_refuses_out_of_bounds",
    "check_regularizer",
    "check_training_contract",
    "hparam_values",
    "installed_architectures",
    "invalid_hparam_values",
]

CLAIMS = ("adds_params", "adds_losses", "stochastic_inference")
BACKENDS = ("tensorflow", "torch", "jax")  # modules a regularizer must reach only through Keras

InputShape = tuple[int, int, int]


def _require(condition: bool, message: str) -> None:
    """Fail with a message that names the regularizer (asserts vanish under python -O)."""
    if not condition:
        raise AssertionError(message)


def _claims(regularizer: Regularizer, overrides: Mapping[str, bool] | None) -> dict[str, bool]:
    unknown = set(overrides or {}) - set(CLAIMS)
    _require(not unknown, f"unknown claims {sorted(unknown)}; the claims are {CLAIMS}")
    return {name: bool(getattr(regularizer, name, False)) for name in CLAIMS} | dict(
        overrides or {}
    )


def _images(batch: int, input_shape: InputShape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, *input_shape), dtype=np.float32)


def _labels(batch: int, classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, batch).astype(np.int64)


def _predict(model: Any, x: np.ndarray, training: bool) -> np.ndarray:
    return np.asarray(import_keras().ops.convert_to_numpy(model(x, training=training)))


def _check_rows(out: np.ndarray, batch: int, classes: int, label: str) -> None:
    _require(out.shape == (batch, classes), f"{label}: output {out.shape}, not {(batch, classes)}")
    _require(bool(np.all(np.isfinite(out))), f"{label}: output has NaN or inf")
    _require(bool(np.all(out >= 0)), f"{label}: output has negative probabilities")
    sums = out.sum(axis=-1)
    _require(bool(np.allclose(sums, 1.0, atol=1e-4)), f"{label}: rows sum to {sums}, not 1")


def _kernels(architecture: Architecture) -> int:
    """How many kernels a run's kernel regularizer covers: one per Conv, Dense and Classifier."""
    return sum(isinstance(spec, Conv | Dense | Classifier) for spec in architecture.layers)


class _Baseline(Regularizer):
    name = "none"


_BASELINES: dict[tuple, tuple[dict[str, int], int]] = {}


def _baseline(
    architecture: Architecture, input_shape: InputShape, classes: int
) -> tuple[dict[str, int], int]:
    """Parameter counts and loss count of the unregularized model (memoized: one build each)."""
    key = (architecture.name, repr(architecture.layers), tuple(input_shape), classes)
    if key not in _BASELINES:
        model = build_model(architecture, _Baseline(), {}, input_shape, classes, seed=0)
        _BASELINES[key] = (count_params(model), len(model.losses))
    return _BASELINES[key]


# ---------------------------------------------------------------- strategies


def hparam_values(regularizer: Regularizer) -> st.SearchStrategy[dict[str, float | int]]:
    """Complete, valid hyperparameter dicts: integers, or floats drawn on the declared scale."""

    def one(h: HParam) -> st.SearchStrategy[float | int]:
        if h.integer:
            return st.integers(math.ceil(h.low), math.floor(h.high))
        if h.log:  # uniform in log space, clamped since exp(log(x)) may land an ulp outside
            return st.floats(math.log(h.low), math.log(h.high)).map(
                lambda v, h=h: min(max(math.exp(v), h.low), h.high)
            )
        return st.floats(h.low, h.high)

    return st.fixed_dictionaries({h.name: one(h) for h in regularizer.hparams})


def invalid_hparam_values(hparam: HParam) -> st.SearchStrategy[Any]:
    """Values `hparam` must refuse: below or above its bounds, non-finite, non-numeric, fractional
    for an integer hyperparameter."""
    outside = st.floats(max_value=hparam.low, exclude_max=True) | st.floats(
        min_value=hparam.high, exclude_min=True
    )
    choices = [
        outside.filter(lambda v: not hparam.low <= v <= hparam.high),  # -0.0 is not below 0.0
        st.sampled_from([math.nan, math.inf, -math.inf, "many", None, [1]]),
    ]
    if hparam.integer and hparam.high > hparam.low:
        choices.append(st.floats(hparam.low, hparam.high).filter(lambda v: v != int(v)))
    return st.one_of(choices)


# ---------------------------------------------------------------- checks


def installed_architectures(input_shape: InputShape = DEFAULT_INPUT_SHAPE) -> list[Architecture]:
    """Every installed architecture that can take `input_shape` (the others are not the
    regularizer's concern)."""
    fitting = []
    for entry in build_registry().entries["architectures"].values():
        try:
            entry.obj.check_input(tuple(input_shape))
        except RegbenchError:
            continue
        fitting.append(entry.obj)
    return fitting


def check_declaration(regularizer: Regularizer) -> None:
    """A usable registry entry: a name, a description, and distinct HParam declarations."""
    label = type(regularizer).__name__
    _require(isinstance(regularizer, Regularizer), f"{label} does not subclass Regularizer")
    _require(bool(regularizer.name), f"{label} has no name")
    _require(bool(regularizer.description), f"{regularizer.name}: no description for the list")
    _require(
        all(isinstance(h, HParam) for h in regularizer.hparams),
        f"{regularizer.name}: hparams must be HParam instances",
    )
    names = [h.name for h in regularizer.hparams]
    _require(len(set(names)) == len(names), f"{regularizer.name}: duplicate hparams {names}")


def check_backend_neutral(regularizer: Regularizer) -> None:
    """The modules defining the regularizer reach the backend only through Keras: no tensorflow,
    torch or jax import and no `tf.` attribute, so it runs on every Keras backend."""
    for cls in type(regularizer).__mro__:
        module = inspect.getmodule(cls)
        if module is None or module.__name__ in ("builtins", "regbench.plugins.seam"):
            continue
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError) as exc:
            raise AssertionError(f"cannot read the source of {module.__name__}: {exc}") from exc
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names = ["tensorflow"] if node.value.id == "tf" else []
            else:
                continue
            for name in names:
                _require(
                    name.split(".")[0] not in BACKENDS,
                    f"{module.__name__} line {node.lineno} uses {name} directly; use keras.ops",
                )


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
    claimed = _claims(regularizer, claims)
    label = f"{regularizer.name} on {architecture.name}"
    values = regularizer.resolve(params)
    model = build_model(architecture, regularizer, values, input_shape, classes, seed=0)
    x = _images(3, input_shape)
    first = _predict(model, x, training=False)
    _check_rows(first, 3, classes, f"{label} (inference)")
    if not claimed["stochastic_inference"]:  # before training=True, which may move BN statistics
        second = _predict(model, x, training=False)
        _require(np.array_equal(first, second), f"{label}: two inference calls differ")
    _check_rows(_predict(model, x, training=True), 3, classes, f"{label} (training)")

    base_counts, base_losses = _baseline(architecture, input_shape, classes)
    counts = count_params(model)
    if claimed["adds_params"]:
        for key in ("trainable_params", "non_trainable_params"):
            _require(counts[key] >= base_counts[key], f"{label}: fewer {key} than the baseline")
    else:
        _require(
            counts == base_counts,
            f"{label}: params {counts} differ from the baseline {base_counts}; "
            "set adds_params = True if its layers have weights",
        )

    expected = base_losses
    if regularizer.kernel_regularizer(values) is not None:
        expected += _kernels(architecture)
    losses = model.losses
    if claimed["adds_losses"]:
        _require(len(losses) >= expected, f"{label}: {len(losses)} losses, fewer than {expected}")
    else:
        _require(
            len(losses) == expected,
            f"{label}: {len(losses)} losses, expected {expected} (one per regularized kernel); "
            "set adds_losses = True if its layers add losses of their own",
        )
    for value in losses:
        _require(bool(np.isfinite(float(value))), f"{label}: a model loss is not finite")


def _contract(regularizer: Regularizer, values: Mapping[str, Any], classes: int) -> tuple:
    """Loss, optimizer and callbacks exactly as the trainer asks for them, each checked."""
    keras = import_keras()
    label = regularizer.name
    loss = regularizer.loss(values, keras.losses.SparseCategoricalCrossentropy())
    y = _labels(4, classes)
    probabilities = np.full((4, classes), 0.5 / (classes - 1), dtype=np.float32)
    probabilities[np.arange(4), y] = 0.5
    try:
        value = np.asarray(keras.ops.convert_to_numpy(loss(y, probabilities)))
    except Exception as exc:  # shape and dtype errors differ by backend; the cause does not
        raise AssertionError(
            f"{label}: the loss fails on sparse integer labels and probabilities ({exc})"
        ) from exc
    _require(  # a Loss object reduces; a plain loss function may return one value per sample
        value.shape in ((), (4,)),
        f"{label}: the loss of 4 sparse labels has shape {value.shape}, not () or (4,)",
    )
    _require(bool(np.all(np.isfinite(value))), f"{label}: the loss of a 50% prediction is {value}")

    spec = regularizer.optimizer(values, OptimizerSpec("sgd", {}))
    _require(isinstance(spec, OptimizerSpec), f"{label}: optimizer() must return OptimizerSpec")
    try:
        optimizer = keras.optimizers.get({"class_name": spec.name, "config": dict(spec.kwargs)})
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: Keras cannot make optimizer {spec}: {exc}") from exc

    callbacks = list(regularizer.callbacks(values))
    for callback in callbacks:
        _require(
            isinstance(callback, keras.callbacks.Callback),
            f"{label}: callback {callback!r} is not a keras.callbacks.Callback",
        )
    return loss, optimizer, callbacks


def check_bounds_build(
    regularizer: Regularizer,
    architecture: Architecture,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> None:
    """Each hyperparameter at its low and its high bound builds, predicts probability rows and
    gives a usable loss, optimizer and callbacks (the search may well propose a bound)."""
    x = _images(2, input_shape)
    for hparam in regularizer.hparams:
        for bound in (hparam.low, hparam.high):
            label = f"{regularizer.name} with {hparam.name}={bound:g} on {architecture.name}"
            values = regularizer.resolve({hparam.name: bound})
            model = build_model(architecture, regularizer, values, input_shape, classes, seed=0)
            _check_rows(_predict(model, x, training=False), 2, classes, label)
            _check_rows(_predict(model, x, training=True), 2, classes, label)
            _contract(regularizer, values, classes)


def check_random_params(
    regularizer: Regularizer,
    architectures: Sequence[Architecture],
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    max_examples: int = 5,
) -> None:
    """Hypothesis-drawn valid hyperparameters, architecture, class count and batch size all build
    and give probability rows."""

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
        x = _images(batch, input_shape)
        _check_rows(_predict(model, x, training=False), batch, classes, label)
        _check_rows(_predict(model, x, training=True), batch, classes, label)

    builds()


def check_training_contract(
    regularizer: Regularizer,
    architecture: Architecture,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    claims: Mapping[str, bool] | None = None,
) -> None:
    """Train the way the trainer does (sparse labels; its loss, optimizer and callbacks; two tiny
    epochs with validation data, then one without, as in the final retraining), then save and
    reload with compile=False as the trainer does: a custom layer that Keras cannot reload, or a
    callback that needs val_loss to exist, fails here, not after an hour of training."""
    keras = import_keras()
    claimed = _claims(regularizer, claims)
    label = f"{regularizer.name} on {architecture.name}"
    values = regularizer.resolve(params)
    model = build_model(architecture, regularizer, values, input_shape, classes, seed=0)
    loss, optimizer, callbacks = _contract(regularizer, values, classes)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    x, y = _images(8, input_shape, seed=1), _labels(8, classes, seed=1)
    history = model.fit(
        x, y, validation_data=(x, y), epochs=2, batch_size=4, callbacks=callbacks, verbose=0
    ).history
    final = model.fit(x, y, epochs=1, batch_size=4, callbacks=callbacks, verbose=0).history
    for key, seen in (("loss", history), ("val_loss", history), ("loss", final)):
        _require(bool(seen.get(key)), f"{label}: fit recorded no {key}")
        _require(bool(np.all(np.isfinite(seen[key]))), f"{label}: {key} {seen[key]}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        try:
            model.save(path)
            reloaded = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # whatever Keras raises, the author needs the same hint
            raise AssertionError(
                f"{label}: the trained model does not survive save and load ({exc}); register "
                "custom layers with keras.saving.register_keras_serializable"
            ) from exc
    if not claimed["stochastic_inference"]:
        _require(
            np.allclose(_predict(model, x, False), _predict(reloaded, x, False), atol=1e-6),
            f"{label}: the reloaded model predicts differently",
        )


def check_regularizer(
    regularizer: Regularizer,
    architectures: Sequence[Architecture] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    max_examples: int = 5,
    claims: Mapping[str, bool] | None = None,
) -> None:
    """Every check above, on `architectures` (default: all installed that take `input_shape`).

    `claims` overrides what the regularizer declares, for one whose class you cannot edit.
    """
    archs = installed_architectures(input_shape) if architectures is None else list(architectures)
    _require(bool(archs), f"no architecture takes input {input_shape}")
    check_declaration(regularizer)
    check_backend_neutral(regularizer)
    check_refuses_out_of_bounds(regularizer)
    for architecture in archs:
        check_model(
            regularizer, architecture, input_shape=input_shape, classes=classes, claims=claims
        )
    smallest = min(archs, key=lambda a: _baseline(a, input_shape, classes)[0]["total_params"])
    check_bounds_build(regularizer, smallest, input_shape=input_shape, classes=classes)
    check_random_params(regularizer, archs, input_shape=input_shape, max_examples=max_examples)
    check_training_contract(
        regularizer, smallest, input_shape=input_shape, classes=classes, claims=claims
    )
