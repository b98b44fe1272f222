"""docs/plugins.md: its complete examples run as documented, and every hook and every public
member of the plugin base classes is documented (a test that fails when one is added silently)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
from pathlib import Path

import numpy as np
import pytest

from regbench.api import Architecture, BuildContext, Regularizer, RunContext, Step, WeightAverage
from regbench.engine.models import build_model, count_params, describe_model
from regbench.plugins import hookspecs
from regbench.plugins.datasets import Dataset
from regbench.plugins.manager import Origin, build_registry
from regbench.plugins.visualizers import Visualizer
from regbench.testing import check_batches, check_dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TEXT = DOC.read_text()


def _example(name: str) -> types.ModuleType:
    marker = f"<!-- tested: {name} -->"
    found = re.search(re.escape(marker) + r"\s*```python\n(.*?)\n```", TEXT, re.S)
    assert found, f"{DOC} lost its tested {name} example (the block after {marker})"
    module = types.ModuleType(f"regbench_docs_{name}")
    exec(compile(found.group(1), str(DOC), "exec"), module.__dict__)
    return module


@pytest.fixture(autouse=True)
def _builtins_only(monkeypatch):
    """The examples are the extras' own resnet20 and mixup: load them alone, without a clash."""
    monkeypatch.setenv("REGBENCH_LOAD_PLUGINS", "")


def _registered(name: str):
    origin = Origin(f"docs-{name}", "0")
    registry = build_registry(extra_plugins=((_example(name), origin),))
    assert not [b for b in registry.broken if b.origin == origin]
    return registry, origin


@pytest.mark.slow
def test_the_resnet20_example_is_the_extras_model():
    registry, origin = _registered("architecture")
    (entry,) = [e for e in registry.entries["architectures"].values() if e.origin == origin]
    model = build_model(entry.obj, registry.get("regularizers", "l2"), seed=0)
    summary = describe_model(model)
    assert summary["total_params"] == 274_042 and summary["regularized_kernels"] == 22
    assert str(summary["total_params"]) in entry.obj.description.replace(",", "")


def test_the_mixup_example_rewrites_batches():
    registry, origin = _registered("regularizer")
    (entry,) = [e for e in registry.entries["regularizers"].values() if e.origin == origin]
    assert entry.obj.uses_batches
    check_batches(entry.obj, input_shape=(8, 8, 1), classes=3)


def test_the_optimizer_example_warms_up_in_front_of_the_protocols_schedule():
    from regbench.engine.optimizers import make_optimizer
    from regbench.plugins.keras import import_keras

    registry, _ = _registered("optimizer")
    warmup = registry.get("regularizers", "lr_warmup")
    keras = import_keras()
    params = warmup.resolve({"fraction": 0.1})
    run = RunContext(epochs=10, steps_per_epoch=10, lr_schedule="cosine")
    optimizer = make_optimizer(keras, warmup, params, "sgd", 0.1, {}, "cosine", run)
    rate = optimizer._learning_rate  # the schedule itself (`learning_rate` is its value now)
    protocol = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=100)
    for step, ramp in ((0, 0.1), (4, 0.5), (9, 1.0), (50, 1.0)):
        assert float(rate(step)) == pytest.approx(float(protocol(step)) * ramp, rel=1e-5)
    config = keras.optimizers.serialize(optimizer)["config"]["learning_rate"]
    assert config["config"]["inner"]["class_name"] == "CosineDecay"
    constant = make_optimizer(keras, warmup, params, "sgd", 0.1, {}, "constant", run)
    assert float(constant._learning_rate(0)) == pytest.approx(0.01, rel=1e-5)
    run = dataclasses.replace(run, lr_schedule="warmup_cosine")
    unchanged = make_optimizer(keras, warmup, params, "sgd", 0.1, {}, "warmup_cosine", run)
    assert type(unchanged._learning_rate).__name__ == "CosineDecay"


@pytest.mark.slow
def test_the_merge_example_drops_branches_at_the_merges_only_in_training():
    from regbench.engine.models import build
    from regbench.testing import check_effects

    registry, _ = _registered("merge")
    arch = _example("architecture").RESNET20
    drop = registry.get("regularizers", "merge_drop")
    built = build(arch, drop, {}, (16, 16, 3), 10, seed=0)
    merges = [item for item in built.inserted if item.point.meta.get("role") == "merge"]
    assert len(merges) == 9 and all(item.layers == 1 for item in merges)
    assert [item.point.shape for item in merges][::3] == [(16, 16, 16), (8, 8, 32), (4, 4, 64)]
    layers = [type(layer).__name__ for layer in built.model.layers]
    assert layers.count("DropBranchAdd") == 9 and "Add" not in layers
    plain = build(arch, registry.get("regularizers", "none"), {}, (16, 16, 3), 10, seed=0)
    assert count_params(built.model) == count_params(plain.model)
    check_effects(drop, arch, input_shape=(16, 16, 3))


@pytest.mark.slow
def test_the_step_example_is_sams_two_gradient_update():
    from regbench.testing import check_step

    registry, _ = _registered("step")
    sam = registry.get("regularizers", "sam")
    assert sam.uses_steps

    def by_hand(weights, gradient, params):
        g = gradient(weights)
        norm = np.sqrt(sum(float((x**2).sum()) for x in g))
        return gradient(
            [w + params["rho"] * x / (norm + 1e-12) for w, x in zip(weights, g, strict=True)]
        )

    check_step(sam, by_hand, {"rho": 0.3})


@pytest.mark.slow
def test_the_average_example_ends_with_the_mean_of_the_late_epochs():
    from regbench.testing import check_average

    registry, _ = _registered("average")
    check_average(registry.get("regularizers", "swa"), {"start": 0.5})


def test_the_dataset_example_conforms():
    registry, origin = _registered("dataset")
    (entry,) = [e for e in registry.entries["datasets"].values() if e.origin == origin]
    check_dataset(entry.obj)


def test_the_visualizer_example_draws(tmp_path, registry):
    plugins, origin = _registered("visualizer")
    (entry,) = [e for e in plugins.entries["visualizers"].values() if e.origin == origin]
    model = build_model(
        registry.get("architectures", "model1"),
        registry.get("regularizers", "none"),
        input_shape=(16, 16, 1),
        classes=3,
    )
    image = np.random.default_rng(0).random((16, 16, 1), dtype=np.float32)
    (path,) = entry.obj.render(model, image, tmp_path, {})
    assert path.exists() and path.stat().st_size > 0
    assert count_params(model)["total_params"] > 0


HOOKS = [
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("register_")
]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert f"`{hook}(" in TEXT, f"hook {hook} is not documented in {DOC.name}"


def _public(cls) -> list[str]:
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    names += [n for n in vars(cls) if not n.startswith("_")]
    if cls is Regularizer:
        names = [n for n in names if n not in ("name", "description")]
    return sorted(set(names))


@pytest.mark.parametrize(
    ("cls", "member"),
    [
        (cls, member)
        for cls in (
            Architecture,
            Regularizer,
            RunContext,
            BuildContext,
            Dataset,
            Visualizer,
            Step,
            WeightAverage,
        )
        for member in _public(cls)
    ],
    ids=str,
)
def test_every_public_member_of_a_base_class_is_documented(cls, member):
    pattern = rf"`(?:[\w.]+\.)?{re.escape(member)}\b"
    assert re.search(pattern, TEXT), f"{cls.__name__}.{member} is not documented in {DOC.name}"
