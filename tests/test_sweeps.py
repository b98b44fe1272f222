"""Sweeps: a list of values for a hyperparameter gives one cell per value (per combination)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regbench.design.plan import Protocol, make_plan, sweep
from regbench.errors import RegbenchError
from regbench.results import leaderboard

PROTOCOL = Protocol(dataset="digits", epochs=1)


def test_a_list_of_rates_gives_one_cell_per_rate(registry):
    specs = make_plan(
        registry,
        ["model1"],
        ["none", "dropout"],
        [0, 1],
        PROTOCOL,
        {"dropout": {"rate": [0.1, 0.3]}},
    )
    dropout = [s for s in specs if s.reg == "dropout"]
    assert sorted((s.params["rate"], s.seed) for s in dropout) == [
        (0.1, 0),
        (0.1, 1),
        (0.3, 0),
        (0.3, 1),
    ]
    assert len({s.cell_hash for s in dropout}) == 2
    assert len({s.run_id for s in specs}) == len(specs) == 6  # none is not swept


def test_repeated_values_are_one_cell(registry):
    specs = make_plan(
        registry, ["model1"], ["dropout"], [0], PROTOCOL, {"dropout": {"rate": [0.2, 0.2, 0.20]}}
    )
    assert [s.params["rate"] for s in specs] == [0.2]


def test_a_default_value_in_the_list_is_the_default_cell(registry):
    default = registry.get("regularizers", "dropout").resolve({})["rate"]
    specs = make_plan(
        registry, ["model1"], ["dropout"], [0], PROTOCOL, {"dropout": {"rate": [default, 0.5]}}
    )
    plain = make_plan(registry, ["model1"], ["dropout"], [0], PROTOCOL)
    assert plain[0].config_hash in {s.config_hash for s in specs}


def test_every_swept_value_is_checked_against_its_bounds(registry):
    with pytest.raises(RegbenchError, match="rate"):
        make_plan(registry, ["model1"], ["dropout"], [0], PROTOCOL, {"dropout": {"rate": [0.1, 5]}})


def test_an_empty_list_is_refused(registry):
    with pytest.raises(RegbenchError, match="empty list"):
        make_plan(registry, ["model1"], ["dropout"], [0], PROTOCOL, {"dropout": {"rate": []}})


def test_two_hyperparameters_sweep_their_cartesian_product(registry):
    if "l1l2" not in registry.names("regularizers"):
        pytest.skip("the regbench-extras plugin (l1l2) is not installed")
    grid = {"l1": [1e-4, 1e-3], "l2": [1e-3, 1e-2, 1e-1]}
    specs = make_plan(registry, ["model1"], ["l1l2"], [0], PROTOCOL, {"l1l2": grid})
    assert sorted((s.params["l1"], s.params["l2"]) for s in specs) == sorted(
        itertools.product(grid["l1"], grid["l2"])
    )


@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3),
        st.one_of(st.floats(0, 1), st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple)),
        max_size=3,
    )
)
def test_sweep_is_the_cartesian_product(values):
    combos = sweep(values)
    sizes = [len(v) if isinstance(v, tuple) else 1 for v in values.values()]
    assert len(combos) == math.prod(sizes)
    for combo in combos:
        assert set(combo) == set(values)
        for name, value in combo.items():
            options = values[name] if isinstance(values[name], tuple) else (values[name],)
            assert value in options


def test_swept_values_label_the_leaderboard_rows(registry):
    import pandas as pd

    specs = make_plan(
        registry, ["model1"], ["dropout"], [0, 1], PROTOCOL, {"dropout": {"rate": [0.1, 0.3]}}
    )
    runs = pd.DataFrame(
        [
            {
                **spec.row(),
                "status": "ok",
                "val_accuracy": spec.params["rate"],
                "train_accuracy": 0.9,
                "test_accuracy": 0.5,
                "total_params": 1,
                "train_time_s": 1.0,
            }
            for spec in specs
        ]
    )
    epochs = pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value"])
    board = leaderboard.table(runs, epochs)
    assert list(board["params"]) == ["rate=0.3", "rate=0.1"]
    assert list(board["seeds"]) == [2, 2]
