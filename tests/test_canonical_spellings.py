"""One science, one id: options and combinations spelled two ways are one run, one cell and one
protocol table (docs/study.md, Identity), and a store from before is respelled to match."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from doubles import RegularizersPlugin, registry_with
from hypothesis import given
from hypothesis import strategies as st

from regbench.api import Regularizer
from regbench.design.experiment import Experiment
from regbench.design.plan import Protocol, RunSpec, make_plan
from regbench.results import protocols
from regbench.results.frozen import identity_v5, identity_v6


def planned(registry, reg="dropout", **settings) -> list[RunSpec]:
    """The specs `regbench run` would make of `settings`, given as the command line types them."""
    experiment = Experiment.create(arch="model1", reg=reg, seeds=2, **settings)
    return make_plan(
        registry,
        experiment.arch,
        experiment.reg,
        experiment.seeds,
        experiment.protocol,
        experiment.params,
        None,
        experiment.execution,
        applicability=False,
    )


def ids(specs: list[RunSpec]) -> list[tuple[str, str, str]]:
    return [(s.run_id, s.config_hash, s.cell_hash) for s in specs]


def table(specs: list[RunSpec]) -> list[dict[str, str]]:
    """The protocol table each spec's row lands in (results.protocols, as the leaderboard)."""
    return [{c: protocols.text(c, s.row()[c]) for c in protocols.PROTOCOL_COLUMNS} for s in specs]


SAME = {  # the spelling pairs of issue 33, item 3
    "momentum=0 is Keras's default": (
        {"optimizer_options": ["momentum=0"]},
        {},
    ),
    "nesterov=false is Keras's default": ({"optimizer_options": ["nesterov=false"]}, {}),
    "native=true is native=yes": (
        {"dataset": "digits", "dataset_options": ["native=true"]},
        {"dataset": "digits", "dataset_options": ["native=yes"]},
    ),
    "native=false is the default": (
        {"dataset": "digits", "dataset_options": ["native=false"]},
        {"dataset": "digits"},
    ),
    "noise=0.25 is the default": (
        {"dataset": "synthetic", "dataset_options": ["noise=0.25"]},
        {"dataset": "synthetic"},
    ),
    "noise=0.3 is noise=.3": (
        {"dataset": "synthetic", "dataset_options": ["noise=0.3"]},
        {"dataset": "synthetic", "dataset_options": ["noise=.3"]},
    ),
    "l2+dropout is dropout+l2": ({"reg": "l2+dropout"}, {"reg": "dropout+l2"}),
}


@pytest.mark.parametrize(("one", "other"), SAME.values(), ids=SAME.keys())
def test_each_spelling_pair_is_one_run_one_cell_one_protocol(registry, one, other):
    first, second = planned(registry, **one), planned(registry, **other)
    assert ids(first) == ids(second)
    assert table(first) == table(second)  # so the baseline is matched
    assert [s.reg for s in first] == [s.reg for s in second]


DIFFERENT = {
    "momentum=0.9 is no default": ({"optimizer_options": ["momentum=0.9"]}, {}),
    "native=true is no default": ({"dataset": "digits", "dataset_options": ["native=1"]}, {}),
    "noise=0.3 is no default": ({"dataset": "synthetic", "dataset_options": ["noise=0.3"]}, {}),
    "the order of dropout and batchnorm is science": (
        {"reg": "dropout+batchnorm"},
        {"reg": "batchnorm+dropout"},
    ),
}


@pytest.mark.parametrize(("one", "other"), DIFFERENT.values(), ids=DIFFERENT.keys())
def test_a_different_science_stays_a_different_run(registry, one, other):
    first, second = planned(registry, **one), planned(registry, **other)
    assert not {s.config_hash for s in first} & {s.config_hash for s in second}
    assert not {s.cell_hash for s in first} & {s.cell_hash for s in second}


def test_options_are_stored_typed_and_without_defaults(registry):
    (spec, _) = planned(
        registry,
        dataset="synthetic",
        dataset_options=["noise=.30", "size=0070", "height=32"],
        optimizer_options=["momentum=0.90", "nesterov=no"],
    )
    row = spec.row()
    assert row["dataset_options"] == {"noise": 0.3, "size": 70}
    assert row["optimizer_options"] == {"momentum": 0.9}
    assert row["split_scheme"] == "fixed-test"


# ---------------------------------------------------------------- spellings, generated


def number(value: float) -> st.SearchStrategy:
    """Ways to write `value` on the command line or in TOML."""
    texts = {repr(value), f"{value:.3f}", f"{value:e}", f"{value:g}", f"{value:.6g}0"}
    if 0 < value < 1:
        texts.add(repr(value)[1:])  # .3
    return st.sampled_from([value, *sorted(texts)])


def flag(value: bool, words: tuple[str, ...]) -> st.SearchStrategy:
    return st.sampled_from([value, *words, *(w.upper() for w in words)])


TRUE = ("true", "yes", "1")
FALSE = ("false", "no", "0")


@st.composite
def spellings(draw):
    """(spelling, canonical spelling) of one random science: the same values, written
    another way, with defaults given or left out."""
    momentum, nesterov = draw(st.sampled_from([0.0, 0.9])), draw(st.booleans())
    native, noise = draw(st.booleans()), draw(st.sampled_from([0.25, 0.3, 1.5]))
    dataset = draw(st.sampled_from(["digits", "synthetic"]))
    written: dict[str, object] = {"optimizer_options": {}, "dataset_options": {}}
    canonical: dict[str, object] = {"optimizer_options": {}, "dataset_options": {}}
    if momentum or draw(st.booleans()):
        written["optimizer_options"]["momentum"] = draw(number(momentum))
    if momentum:
        canonical["optimizer_options"]["momentum"] = momentum
    if nesterov or draw(st.booleans()):
        words = TRUE if nesterov else FALSE
        written["optimizer_options"]["nesterov"] = draw(flag(nesterov, words))
    if nesterov:
        canonical["optimizer_options"]["nesterov"] = True
    if dataset == "digits":
        if native or draw(st.booleans()):
            words = (*TRUE, "on") if native else (*FALSE, "off")
            written["dataset_options"]["native"] = draw(flag(native, words))
        if native:
            canonical["dataset_options"]["native"] = True
    else:
        if noise != 0.25 or draw(st.booleans()):
            written["dataset_options"]["noise"] = draw(number(noise))
        if noise != 0.25:
            canonical["dataset_options"]["noise"] = noise
    reg = draw(st.sampled_from(["l2+dropout", "dropout+l2", "none", "batchnorm+l2"]))
    order = {"l2+dropout": "dropout+l2", "batchnorm+l2": "batchnorm+l2"}
    return (
        {**written, "dataset": dataset, "reg": reg},
        {**canonical, "dataset": dataset, "reg": order.get(reg, reg)},
    )


@given(pair=spellings())
def test_every_spelling_of_a_science_is_one_id(registry, pair):
    written, canonical = pair
    specs = planned(registry, **written)
    assert ids(specs) == ids(planned(registry, **canonical))
    for spec in specs:  # stored as the canonical spelling, which names the run alike
        row = spec.row()
        assert row["dataset_options"] == canonical["dataset_options"]
        assert identity_v6.config_hash(row) == spec.config_hash


@given(pair=spellings())
def test_a_row_stored_in_another_spelling_is_respelled_by_the_frozen_identity(registry, pair):
    """What m008 does to a stored row: the frozen identity of a row in any spelling (as a
    store from before holds it) is today's id of its canonical spelling."""
    written, canonical = pair
    (spec, *_) = planned(registry, **canonical)
    row = {**spec.row(), "reg": written["reg"], "split_scheme": spec.protocol.split_scheme}
    row["dataset_options"] = json.dumps(written["dataset_options"])
    row["optimizer_options"] = json.dumps(written["optimizer_options"])
    if written["reg"] != spec.reg:  # the components' provenance listed in the written order
        for key in ("reg_source", "reg_source_hash"):
            row[key] = "+".join(reversed(row[key].split("+")))
    for key in identity_v6.DATASET_PROVENANCE:  # not recorded then
        row[key] = None
    unrecorded = {k: v for k, v in spec.provenance.items() if not k.startswith("dataset_")}
    assert identity_v5.config_hash(row) == replace(spec, provenance=unrecorded).config_hash
    assert identity_v5.canonical(row)["reg"] == spec.reg


# ---------------------------------------------------------------- combination order


class Hooked(Regularizer):
    """A test double that overrides the given hooks (and nothing else)."""

    description = "test double"

    def __init__(self, name: str) -> None:
        self.name = name


def hooked(name: str, hook: str) -> Regularizer:
    def act(self, *args, **kwargs):
        return getattr(Regularizer, hook)(self, *args, **kwargs)

    return type(f"R_{name}", (Hooked,), {hook: act})(name)


DOUBLES = {
    "r_layers": "layers_at",
    "r_inputs": "input_layers",
    "r_loss": "loss",
    "r_calls": "callbacks",
    "r_opt": "optimizer",
    "r_layers2": "layers_at",
}


@pytest.fixture(scope="module")
def doubled():
    return registry_with(RegularizersPlugin(*(hooked(n, h) for n, h in DOUBLES.items())))


@given(names=st.lists(st.sampled_from(sorted(DOUBLES)), min_size=2, max_size=4, unique=True))
def test_a_combination_is_sorted_unless_two_components_share_a_hook(doubled, names):
    (spec, _) = planned(doubled, reg="+".join(names))
    hooks = [DOUBLES[n] for n in names]
    shared = len(set(hooks)) < len(hooks)
    assert spec.reg == "+".join(names if shared else sorted(names))
    reordered = planned(doubled, reg="+".join(reversed(names)))[0]
    assert (reordered.config_hash == spec.config_hash) is not shared


def test_values_given_under_another_order_reach_the_cell(registry):
    (spec, _) = planned(registry, reg="l2+dropout", params=["dropout.rate=0.3"])
    assert spec.reg == "dropout+l2" and spec.params["dropout.rate"] == 0.3
    tuned = {("model1", "l2+dropout"): {"dropout.rate": 0.4}}
    (spec,) = make_plan(
        registry,
        ["model1"],
        ["dropout+l2"],
        [0],
        Protocol(dataset="digits"),
        None,
        tuned,
        applicability=False,
    )
    assert spec.params["dropout.rate"] == 0.4 and spec.tuned == ("dropout.rate",)


@pytest.mark.slow  # imports Keras
def test_the_defaults_left_out_are_keras_own():
    """KERAS_OPTIMIZER_DEFAULTS (and its frozen copy) are what Keras's optimizers default to:
    an option left out must train what giving its value does."""
    import inspect

    import keras

    from regbench.design.choices import OPTIMIZERS
    from regbench.design.optimizer_options import KERAS_OPTIMIZER_DEFAULTS, OPTIMIZER_OPTIONS

    assert set(KERAS_OPTIMIZER_DEFAULTS) == set(OPTIMIZERS)
    for name in OPTIMIZERS:
        signature = inspect.signature(type(keras.optimizers.get(name)).__init__)
        defaults = {
            key: p.default
            for key, p in signature.parameters.items()
            if key in OPTIMIZER_OPTIONS and p.default is not None
        }
        assert KERAS_OPTIMIZER_DEFAULTS[name] == defaults, name
        assert identity_v5.OPTIMIZER_DEFAULTS[name] == defaults, name
