"""The conformance kit: checks a plugin author calls from their own tests.

`check_regularizer(reg)` runs the regularizer's checks. A regularizer that passes builds on
every architecture it is given (default: all installed) and gives (batch, classes) probability
rows; adds only the weights and losses it claims (the `adds_params`, `adds_losses` and
`stochastic_inference` attributes of `regbench.api.Regularizer`); builds at its declared bounds
and refuses values outside them with `RegbenchError`; rewrites batches into soft targets of the
right shape (if it has a `batch` hook); trains on every architecture exactly as the trainer
does, compiled with XLA; reloads the saved model in a fresh process; and its whole package
imports no backend directly. `check_architecture(arch)` and `check_dataset(ds)` do the same for
the other plugin kinds. Each check is also public, so a test can run one alone. Needs
`regbench[test]` (hypothesis); plain `AssertionError`s, no pytest.
"""

from __future__ import annotations

import ast
import inspect
import math
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regbench.engine.models import (
    DEFAULT_CLASSES,
    DEFAULT_INPUT_SHAPE,
    build,
    build_model,
    count_params,
    count_regularized_kernels,
)
from regbench.errors import RegbenchError
from regbench.plugins.datasets import Dataset, Splits
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import build_registry
from regbench.plugins.seam import (
    Architecture,
    HParam,
    OptimizerSpec,
    Regularizer,
    RunContext,
    invoke,
)

__all__ = [
    "CLAIMS",
    "check_architecture",
    "check_backend_neutral",
    "check_batches",
    "check_dataset",
    "check_reloads_in_fresh_process",
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


def _kernels(model: Any) -> int:
    """How many kernels a run's kernel regularizer should cover: every Conv2D and Dense."""
    keras = import_keras()
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    return sum(isinstance(layer, kinds) for layer in _flat_layers(model))


def _flat_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_flat_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


class _Baseline(Regularizer):
    name = "none"


_BASELINES: dict[tuple, tuple[dict[str, int], int, int]] = {}


def _baseline(
    architecture: Architecture, input_shape: InputShape, classes: int
) -> tuple[dict[str, int], int, int]:
    """Parameter counts, loss count and kernel count of the unregularized model (memoized)."""
    key = (architecture.name, id(architecture), tuple(input_shape), classes)
    if key not in _BASELINES:
        model = build_model(architecture, _Baseline(), {}, input_shape, classes, seed=0)
        _BASELINES[key] = (count_params(model), len(model.losses), _kernels(model))
    return _BASELINES[key]


# ---------------------------------------------------------------- strategies


def hparam_values(regularizer: Regularizer) -> st.SearchStrategy[dict[str, float | int]]:
    """Complete, valid hyperparameter dicts: integers, or floats drawn on the declared scale."""

    def one(h: HParam) -> st.SearchStrategy[float | int]:
        if h.integer:
            return st.integers(math.ceil(h.low), math.floor(h.high))
        if h.log:  # uniform in log space, clamped since exp(log(x)) may land an ulp outside
            low, high = h.low, h.high
            return st.floats(math.log(low), math.log(high)).map(
                lambda v: min(max(math.exp(v), low), high)
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


def _package_files(obj: Any) -> list[Path]:
    """Every .py file of the package that defines `obj` (just its module when top-level)."""
    module = inspect.getmodule(obj)
    if module is None or not getattr(module, "__file__", None):
        return []
    top = sys.modules.get(module.__name__.partition(".")[0])
    if top is not None and getattr(top, "__path__", None) and top.__name__ != "regbench":
        return sorted(Path(next(iter(top.__path__))).rglob("*.py"))
    return [Path(str(module.__file__))]


def check_backend_neutral(plugin: Any) -> None:
    """The whole package defining `plugin` (a regularizer, an architecture's builder, a
    dataset, a visualizer, or a module) reaches the backend only through Keras: no tensorflow,
    torch or jax import and no `tf.` attribute, so it runs on every Keras backend."""
    targets: list[Any] = [plugin] if inspect.ismodule(plugin) else []
    if isinstance(plugin, Architecture):
        targets = [plugin.builder] if plugin.builder is not None else []
    elif not targets:
        targets = [cls for cls in type(plugin).__mro__ if cls.__module__ != "builtins"]
    files = {path for target in targets for path in _package_files(target)}
    for path in sorted(files):
        if path.name == "seam.py" and path.parent.name == "plugins":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError) as exc:
            raise AssertionError(f"cannot read the source {path}: {exc}") from exc
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
                    f"{path.stem} ({path}) line {node.lineno} uses {name} directly; use keras.ops",
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

    base_counts, base_losses, kernels = _baseline(architecture, input_shape, classes)
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
    if invoke(regularizer.kernel_regularizer, values, ctx=_run(input_shape, classes)) is not None:
        expected += kernels
        _require(
            count_regularized_kernels(model) == kernels,
            f"{label}: {count_regularized_kernels(model)} of {kernels} kernels regularized",
        )
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


def _run(input_shape: InputShape, classes: int, seed: int = 0) -> RunContext:
    return RunContext(classes=classes, input_shape=tuple(input_shape), seed=seed)


def _splits(input_shape: InputShape, classes: int, size: int = 8) -> Splits:
    x, y = _images(size, input_shape, seed=1), _labels(size, classes, seed=1)
    names = tuple(f"class {i}" for i in range(classes))
    return Splits(x, y, x, y, x, y, names)


def check_batches(
    regularizer: Regularizer,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
) -> None:
    """A `batch` hook (if any) returns images of the input's shape and finite soft targets:
    rows of (batch, classes) non-negative numbers summing to 1."""
    if not regularizer.uses_batches:
        return
    keras = import_keras()
    label = f"{regularizer.name}.batch"
    values = regularizer.resolve(params)
    x = _images(6, input_shape)
    onehot = np.eye(classes, dtype=np.float32)[_labels(6, classes)]
    seed = keras.random.SeedGenerator(0)
    images, targets = regularizer.batch(
        keras.ops.convert_to_tensor(x),
        keras.ops.convert_to_tensor(onehot),
        values,
        seed,
        _run(input_shape, classes),
    )
    images = np.asarray(keras.ops.convert_to_numpy(images))
    _require(images.shape == x.shape, f"{label}: images {images.shape}, not {x.shape}")
    _require(bool(np.all(np.isfinite(images))), f"{label}: images have NaN or inf")
    _check_rows(np.asarray(keras.ops.convert_to_numpy(targets)), 6, classes, f"{label} targets")


def check_reloads_in_fresh_process(path: Path, x: np.ndarray, expected: np.ndarray) -> None:
    """A saved model loads in a new Python process (safe mode, as regbench loads models) and
    predicts `expected` on `x`: a custom layer not registered through the plugin's
    `register_keras_objects` hook fails here, as it would in `regbench visualize`."""
    np.save(path.with_suffix(".x.npy"), x)
    script = (
        "import sys, numpy as np\n"
        "from regbench.plugins.keras import import_keras\n"
        "keras = import_keras()\n"
        "model = keras.saving.load_model(sys.argv[1], compile=False, safe_mode=True)\n"
        "x = np.load(sys.argv[2])\n"
        "np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x, training=False)))\n"
    )
    out = path.with_suffix(".out.npy")
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(path.with_suffix(".x.npy")), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = (done.stderr.strip().splitlines() or [""])[-1]
    _require(
        done.returncode == 0,
        f"{path.name} does not load in a fresh process ({last}); register custom layers with "
        "keras.saving.register_keras_serializable in a module your plugin's "
        "register_keras_objects hook imports",
    )
    _require(
        bool(np.allclose(np.load(out), expected, atol=1e-5)),
        f"{path.name}: the model reloaded in a fresh process predicts differently",
    )


def check_training_contract(
    regularizer: Regularizer,
    architecture: Architecture,
    params: Mapping[str, Any] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    claims: Mapping[str, bool] | None = None,
    fresh_process: bool = True,
) -> None:
    """Train exactly as the trainer does (its build_and_compile: loss, optimizer, schedule,
    soft targets for a batch hook; compiled with XLA; its callbacks), two tiny epochs with
    validation data, then one without as in the final retraining; then save the model as the
    trainer does and reload it, in a fresh process unless `fresh_process` is False. A custom
    layer Keras cannot reload, an op XLA cannot compile, or a callback that needs val_loss to
    exist fails here, not after an hour of training."""
    from regbench.engine.plan import Execution, Protocol
    from regbench.engine.trainer import build_and_compile, run_callbacks

    keras = import_keras()
    claimed = _claims(regularizer, claims)
    label = f"{regularizer.name} on {architecture.name}"
    values = regularizer.resolve(params)
    _contract(regularizer, values, classes)
    data = _splits(input_shape, classes)
    protocol = Protocol(dataset="conformance", epochs=2, batch_size=4)
    try:
        model = build_and_compile(
            architecture, regularizer, values, protocol, data, 0, Execution(jit_compile="on")
        )
    except RegbenchError:
        raise
    run = _run(input_shape, classes)
    callbacks = run_callbacks(regularizer, values, run)
    x, y = data.x_train, data.y_train
    try:
        history = model.fit(
            x, y, validation_data=(x, y), epochs=2, batch_size=4, callbacks=callbacks, verbose=0
        ).history
        final = model.fit(x, y, epochs=1, batch_size=4, callbacks=callbacks, verbose=0).history
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise AssertionError(f"{label}: training compiled with XLA fails: {first}") from exc
    for key, seen in (("loss", history), ("val_loss", history), ("loss", final)):
        _require(bool(seen.get(key)), f"{label}: fit recorded no {key}")
        _require(bool(np.all(np.isfinite(seen[key]))), f"{label}: {key} {seen[key]}")

    network = getattr(model, "inner", model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        try:
            network.save(path)
            reloaded = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # whatever Keras raises, the author needs the same hint
            raise AssertionError(
                f"{label}: the trained model does not survive save and load ({exc}); register "
                "custom layers with keras.saving.register_keras_serializable"
            ) from exc
        if not claimed["stochastic_inference"]:
            expected = _predict(network, x, False)
            _require(
                np.allclose(expected, _predict(reloaded, x, False), atol=1e-6),
                f"{label}: the reloaded model predicts differently",
            )
            if fresh_process:
                check_reloads_in_fresh_process(path, x, expected)


def check_architecture(
    architecture: Architecture,
    *,
    input_shapes: Sequence[InputShape] = (DEFAULT_INPUT_SHAPE, (16, 16, 1)),
    classes: int = DEFAULT_CLASSES,
    fresh_process: bool = True,
) -> None:
    """An architecture that passes has a name and description; builds probability rows on
    each of `input_shapes`; makes fresh layers at every build (two builds share no layer);
    puts the run's kernel regularizer on every Conv2D/Dense kernel; names its points uniquely
    with kind "maps" or "vector"; trains compiled with XLA and reloads in a fresh process; and
    its package imports no backend directly."""
    from regbench.builtins.regularizers import L2

    label = architecture.name or type(architecture).__name__
    _require(bool(architecture.name), f"{label}: no name")
    _require(bool(architecture.description), f"{label}: no description for the list")
    check_backend_neutral(architecture)
    for shape in input_shapes:
        first = build(architecture, _Baseline(), {}, shape, classes, seed=0)
        second = build(architecture, _Baseline(), {}, shape, classes, seed=0)
        x = _images(2, shape)
        _check_rows(_predict(first.model, x, False), 2, classes, f"{label} at {shape}")
        shared = {id(layer) for layer in _flat_layers(first.model)} & {
            id(layer) for layer in _flat_layers(second.model)
        }
        _require(not shared, f"{label}: two builds share {len(shared)} layer(s); make them fresh")
        names = [point.name for point in first.points]
        _require(len(set(names)) == len(names), f"{label}: point names repeat: {names}")
        for point in first.points:
            _require(
                point.kind in ("maps", "vector"),
                f"{label}: point {point.name} has kind {point.kind!r}",
            )
        penalised = build_model(architecture, L2(), {}, shape, classes, seed=0)
        kernels, covered = _kernels(penalised), count_regularized_kernels(penalised)
        _require(
            kernels > 0 and covered == kernels,
            f"{label}: {covered} of {kernels} "
            "kernels carry the run's kernel regularizer; make them with ctx.conv/ctx.dense",
        )
    check_training_contract(
        _Baseline(),
        architecture,
        input_shape=input_shapes[0],
        classes=classes,
        fresh_process=fresh_process,
    )


def check_dataset(
    dataset: Dataset, options: Mapping[str, Any] | None = None, seeds: Sequence[int] = (0, 1)
) -> None:
    """A dataset that passes loads splits of float32 NHWC images in [0, 1] and int64 labels in
    range, all splits of one image shape, at least two classes each seen in training, and the
    same splits again for the same seed."""
    label = dataset.name or type(dataset).__name__
    _require(bool(dataset.name), f"{label}: no name")
    _require(bool(dataset.description), f"{label}: no description for the list")
    check_backend_neutral(dataset)
    full = {"data_dir": None, "cache_dir": None, **dict(options or {})}
    for seed in seeds:
        splits = dataset.load(seed, full)
        _require(isinstance(splits, Splits), f"{label}: load() must return Splits")
        again = dataset.load(seed, full)
        _require(
            np.array_equal(splits.x_train, again.x_train)
            and np.array_equal(splits.y_test, again.y_test),
            f"{label}: seed {seed} gives different splits on a second load",
        )
        _require(splits.classes >= 2, f"{label}: {splits.classes} class name(s)")
        for name in ("train", "val", "test"):
            x, y = getattr(splits, f"x_{name}"), getattr(splits, f"y_{name}")
            where = f"{label} {name} (seed {seed})"
            _require(x.dtype == np.float32, f"{where}: images are {x.dtype}, not float32")
            _require(
                x.ndim == 4 and x.shape[1:] == splits.x_train.shape[1:],
                f"{where}: images {x.shape}, not N x {splits.input_shape}",
            )
            _require(len(x) == len(y) and len(x) > 0, f"{where}: {len(x)} images, {len(y)} labels")
            _require(bool(x.min() >= 0.0 and x.max() <= 1.0), f"{where}: pixels outside [0, 1]")
            _require(y.dtype == np.int64, f"{where}: labels are {y.dtype}, not int64")
            _require(
                bool(y.min() >= 0 and y.max() < splits.classes),
                f"{where}: labels outside 0..{splits.classes - 1}",
            )
        seen = np.unique(splits.y_train)
        _require(len(seen) == splits.classes, f"{label}: training split lacks some classes")


def check_regularizer(
    regularizer: Regularizer,
    architectures: Sequence[Architecture] | None = None,
    *,
    input_shape: InputShape = DEFAULT_INPUT_SHAPE,
    classes: int = DEFAULT_CLASSES,
    max_examples: int = 5,
    claims: Mapping[str, bool] | None = None,
    fresh_process: bool = True,
) -> None:
    """Every check above, on `architectures`: training runs on each architecture given, and
    the first reloads in a fresh process. By default the checks run on every installed
    architecture that takes `input_shape`, and training on the smallest of them.

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
    check_batches(regularizer, input_shape=input_shape, classes=classes)
    check_bounds_build(regularizer, smallest, input_shape=input_shape, classes=classes)
    check_random_params(regularizer, archs, input_shape=input_shape, max_examples=max_examples)
    trained = archs if architectures is not None else [smallest]
    for index, architecture in enumerate(trained):
        check_training_contract(
            regularizer,
            architecture,
            input_shape=input_shape,
            classes=classes,
            claims=claims,
            fresh_process=fresh_process and index == 0,
        )
