"""The library API: one validated Experiment for Python, TOML and the CLI; pinned identities."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import regbench
from regbench.cli import build_parser
from regbench.cli.grid import experiment as from_flags
from regbench.design.experiment import Experiment
from regbench.design.parsers import MAX_SEED
from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.errors import RegbenchError

FAKE = {"trainer": "fake_trainer:train", "executor": "inprocess"}

GOLDEN = RunSpec(
    arch="model1",
    reg="dropout",
    params={"rate": 0.1},
    seed=0,
    protocol=Protocol(dataset="digits", epochs=1),
    provenance={"arch_source": "regbench 0.2.0", "reg_source": "regbench 0.2.0"},
)


def test_identity_of_a_fixed_run_is_pinned():
    """Changing what a run's identity hashes must be deliberate: it turns stored runs pending
    (and needs a store migration that re-hashes them: identity 4 is m006)."""
    assert GOLDEN.config_hash == "f52d7ffd56e9a1d4"
    assert GOLDEN.cell_hash == "50bf6114565a10d7"
    assert GOLDEN.run_id == "model1-dropout-s0-f52d7ffd"


@given(steps=st.integers(1, 1000), pipeline=st.sampled_from(["auto", "arrays", "tf.data"]))
def test_speed_options_never_change_identity(steps, pipeline):
    spec = replace(GOLDEN, execution=Execution("auto", steps, pipeline))
    assert (spec.config_hash, spec.cell_hash) == (GOLDEN.config_hash, GOLDEN.cell_hash)


def test_an_explicit_xla_setting_is_a_run_of_its_own_except_on_the_vmapped_engine():
    """XLA on or off changes the arithmetic (and TensorFlow's random streams): each is its own
    cell, and Keras's choice ("auto") keeps the ids it had; the vmapped engine is one XLA
    program whatever is asked, so it records "auto"."""
    on, off = (replace(GOLDEN, execution=Execution(jit)) for jit in ("on", "off"))
    assert len({GOLDEN.cell_hash, on.cell_hash, off.cell_hash}) == 3
    packed = [replace(GOLDEN, execution=Execution(jit, engine="vmapped")) for jit in ("auto", "on")]
    assert packed[0].config_hash == packed[1].config_hash
    assert packed[1].row()["jit_compile"] == "auto"


@given(epochs=st.integers(2, 50), batch=st.integers(1, 512), seed=st.integers(1, MAX_SEED))
def test_protocol_and_seed_change_identity(epochs, batch, seed):
    assert replace(GOLDEN, protocol=replace(GOLDEN.protocol, epochs=epochs)).config_hash != (
        GOLDEN.config_hash
    )
    assert replace(GOLDEN, protocol=replace(GOLDEN.protocol, batch_size=batch + 64)).cell_hash != (
        GOLDEN.cell_hash
    )
    reseeded = replace(GOLDEN, seed=seed)
    assert reseeded.config_hash != GOLDEN.config_hash
    assert reseeded.cell_hash == GOLDEN.cell_hash


def test_a_row_gives_back_its_spec():
    spec = replace(
        GOLDEN,
        protocol=replace(GOLDEN.protocol, target=("val_accuracy", 0.5), learning_rate=0.1),
        execution=Execution("off", 4, "arrays"),
        tuned=("rate",),
    )
    assert RunSpec.from_row(spec.row()) == spec


def test_python_toml_and_flags_make_one_experiment(tmp_path):
    config = tmp_path / "e.toml"
    config.write_text(
        'arch = ["model1"]\nreg = "none,dropout"\ndataset = "digits"\nepochs = 1\nseeds = 2\n'
        "[params.dropout]\nrate = [0.1, 0.3]\n"
    )
    python = Experiment.create(
        arch=["model1"],
        reg=["none", "dropout"],
        dataset="digits",
        epochs=1,
        seeds=2,
        params={"dropout": {"rate": [0.1, 0.3]}},
    )
    assert Experiment.from_config(str(config)) == python
    args = build_parser().parse_args(
        ["run", "--arch", "model1", "--reg", "none,dropout", "--dataset", "digits"]
        + ["--epochs", "1", "--seeds", "2", "--param", "dropout.rate=0.1,0.3"]
    )
    flags = from_flags(args)
    assert flags.params == {"dropout": {"rate": ["0.1", "0.3"]}}
    assert replace(flags, params=python.params) == python


def test_flags_override_the_file_per_key(tmp_path):
    config = tmp_path / "e.toml"
    config.write_text('name = "mine"\nepochs = 3\n[params.l2]\nstrength = 0.001\n')
    chosen = Experiment.from_config(str(config), epochs="5", params=["dropout.rate=0.2"])
    assert chosen.epochs == 5
    assert chosen.params == {"l2": {"strength": 0.001}, "dropout": {"rate": "0.2"}}
    assert str(chosen.folder) == "reports/mine"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "epochs must be between 1"),
        ({"epochs": "ten"}, "epochs must be a whole number"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"batch_size": 10**20}, "batch_size must be between"),
        ({"learning_rate": math.inf}, "learning_rate must be a finite number"),
        ({"learning_rate": -1}, "learning_rate must be positive"),
        ({"seeds": "0,0"}, "seed 0 is given twice"),
        ({"seeds": [MAX_SEED + 1]}, "each seed must be between 0 and"),
        ({"seeds": 10**12}, "the number of seeds must be"),
        ({"seeds": ","}, "seeds chose no seed"),
        ({"target": "val_accuracy=nan"}, "target must be a finite number"),
        ({"target": "speed=1"}, "metric 'speed' is not recorded"),
        ({"params": ["dropout.rate=0.1", "dropout.rate=0.2"]}, "'dropout.rate' is given twice"),
        ({"params": ["rate=0.1"]}, "expects reg.name=value"),
        ({"experiment": ""}, "experiment must be a non-empty string"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"data_dir": "/no/such/folder"}, "data_dir /no/such/folder does not exist"),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_bad_settings_are_refused_by_field(settings, message):
    with pytest.raises(RegbenchError, match=message):
        Experiment.create(**settings)


@settings(max_examples=50)
@given(st.one_of(st.text(max_size=8), st.floats(allow_nan=True), st.integers(-(2**70), 2**70)))
def test_epochs_accepts_exactly_whole_numbers_in_range(value):
    try:
        chosen = Experiment.create(epochs=value)
    except RegbenchError as exc:
        assert str(exc).startswith("epochs must be")
        return
    assert isinstance(chosen.epochs, int) and 1 <= chosen.epochs <= 100_000
    assert not isinstance(value, float)


def test_config_that_is_not_utf8_is_one_line(tmp_path):
    config = tmp_path / "e.toml"
    config.write_text("epochs = 1\n", encoding="utf-16")
    with pytest.raises(RegbenchError, match="is not UTF-8 text"):
        Experiment.from_config(str(config))


def test_run_returns_results_and_load_reads_them_back(tmp_path):
    results = regbench.run(
        arch=["model1"],
        reg=["none", "dropout"],
        dataset="digits",
        epochs=1,
        experiment=tmp_path,
        **FAKE,
    )
    assert sorted(results.runs["reg"]) == ["dropout", "none"]
    assert (results.runs["status"] == "ok").all()
    again = regbench.load(tmp_path)
    assert sorted(again.runs["run_id"]) == sorted(results.runs["run_id"])
    board = results.leaderboard()
    assert len(board) == 2 and list(board["rank"]) == [1, 2]
    planned = regbench.plan(
        arch=["model1"],
        reg=["none", "dropout", "l2"],
        dataset="digits",
        epochs=1,
        experiment=tmp_path,
    )
    assert (planned.count("done"), planned.count("pending")) == (2, 1)


def test_bad_input_writes_nothing(tmp_path):
    folder = tmp_path / "never"
    with pytest.raises(RegbenchError, match="unknown architecture 'nope'"):
        regbench.run(arch=["nope"], dataset="digits", epochs=1, experiment=folder, **FAKE)
    assert not folder.exists()


@pytest.mark.slow
def test_readme_python_example(tmp_path, monkeypatch):
    """The README's Python example, as written there (real training, digits, one epoch)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block, "README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    runs = namespace["results"].runs
    assert len(runs) == 2 and (runs["status"] == "ok").all()


def test_tensorboard_logs_go_under_the_experiment_folder_and_never_change_identity(tmp_path):
    chosen = Experiment.create(experiment=tmp_path, tensorboard="on")
    assert chosen.execution.tensorboard_dir == str(tmp_path / "tensorboard")
    with pytest.raises(RegbenchError, match="tensorboard must be true or false"):
        Experiment.create(tensorboard="maybe")


def test_leaderboard_of_several_folders_compares_them(tmp_path, capsys):
    from regbench.cli import main

    for name in ("a", "b"):
        regbench.run(
            arch=["model1"],
            reg=["none"],
            dataset="digits",
            epochs=1,
            experiment=tmp_path / name,
            **FAKE,
        )
    assert main(["leaderboard", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    assert "model1" in capsys.readouterr().out


@pytest.mark.slow
def test_the_parent_of_a_grid_never_loads_keras(tmp_path):
    """Planning, checking the data and scheduling stay light: only workers import Keras (for
    layer-table architectures; a builder is built once here to learn its shapes and cost)."""
    import subprocess
    import sys

    code = (
        "import sys, regbench\n"
        "from regbench.study import check_data\n"
        "from regbench.study.grid import _specs  # the grid's own planning step\n"
        "from regbench.design.plan import order_by_cost\n"
        "from regbench.plugins.manager import registry\n"
        "e = regbench.Experiment.create(arch=['model1,model2,model3'], reg=['all'], "
        f"dataset='digits', experiment={str(tmp_path)!r})\n"
        "specs = _specs(e, registry(), False, applicability=False)\n"
        "check_data(specs, e, registry())\n"
        "order_by_cost(specs, registry())\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
