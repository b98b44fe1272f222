"""Settings refused strictly, in one line, wherever they come from: KEY=VALUE flags, text with
stray spaces, yes/no options, the cache variable, the baseline of a comparison."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regbench.design.experiment import Experiment, check_protocol
from regbench.design.parsers import parse_assignments
from regbench.design.plan import Execution, Protocol
from regbench.errors import RegbenchError
from regbench.plugins.datasets import FALSE_WORDS, TRUE_WORDS, default_cache_dir, parse_flag

FAKE = ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
GRID = ["--arch", "model1", "--reg", "none", "--dataset", "digits", "--epochs", "1"]

keys = st.text(st.characters(blacklist_characters="=,", blacklist_categories=("Cs",)), min_size=1)
keys = keys.map(str.strip).filter(bool)
values = st.text(st.characters(blacklist_categories=("Cs",))).map(str.strip)


@given(st.dictionaries(keys, values, max_size=6))
def test_key_value_strings_parse_back_to_their_table(table):
    assert parse_assignments([f"{k}={v}" for k, v in table.items()], "--param") == table


@given(keys, values, values)
def test_a_key_given_twice_is_refused_never_overwritten(key, first, second):
    with pytest.raises(RegbenchError, match="is given twice") as error:
        parse_assignments([f"{key}={first}", f" {key} ={second}"], "--dataset-option")
    assert str(error.value).startswith("--dataset-option: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("item", ["native", "=true", " = 1"])
def test_an_item_without_a_key_is_refused_by_flag(item):
    with pytest.raises(RegbenchError, match=r"^--optimizer-option expects key=value"):
        parse_assignments([item], "--optimizer-option")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dataset_options": ["native=1", "native=0"]}, "dataset_options: 'native' is given twice"),
        ({"optimizer_options": ["rho=0.9", "rho=0.5"]}, "optimizer_options: 'rho' is given twice"),
        ({"target": "val_accuracy"}, "target must be metric=value"),
        ({"experiment": "E "}, "experiment 'E ' starts or ends with spaces"),
        ({"name": " lab"}, "name ' lab' starts or ends with spaces"),
        ({"dataset": "digits\t"}, "dataset 'digits\\t' starts or ends"),
        ({"optimizer": " adam"}, "optimizer ' adam' starts or ends"),
    ],
)
def test_settings_are_refused_in_one_line_by_name(settings, message):
    with pytest.raises(RegbenchError, match=re.escape(message)) as error:
        Experiment.create(**settings)
    assert "\n" not in str(error.value)


def test_a_folder_is_taken_exactly_as_given():
    assert Experiment.create(experiment="E").folder == Path("E")
    assert Experiment.create(experiment=Path("E ")).folder == Path("E ")  # a Path is the user's own


@given(st.one_of(st.booleans(), st.integers(-2, 2), st.text(max_size=6)))
def test_yes_no_values_are_read_strictly(value):
    word = str(value).strip().lower()
    try:
        chosen = parse_flag(value, "dataset option native")
    except RegbenchError as exc:
        assert str(exc) == f"dataset option native must be true or false; got {value!r}"
        assert not isinstance(value, bool) and word not in TRUE_WORDS + FALSE_WORDS
        return
    assert chosen is (value if isinstance(value, bool) else word in TRUE_WORDS)


def test_a_protocol_from_elsewhere_is_checked_by_the_experiment_rules():
    check_protocol(
        Protocol(dataset="digits", target=("val_loss", 0.5)), Execution(engine="vmapped")
    )
    for protocol, execution, message in (
        (Protocol(epochs=0), None, "epochs must be between 1"),
        (Protocol(optimizer="lbfgs"), None, "optimizer must be one of"),
        (Protocol(lr_schedule="linear"), None, "lr_schedule must be one of"),
        (Protocol(optimizer_options={"momentun": 0.9}), None, "unknown optimizer option"),
        (Protocol(), Execution(steps_per_execution=0), "steps_per_execution must be between"),
        (Protocol(), Execution(pipeline="queue"), "pipeline must be one of"),
    ):
        with pytest.raises(RegbenchError, match=message):
            check_protocol(protocol, execution)


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_cache_variable_is_refused(monkeypatch, value):
    monkeypatch.setenv("REGBENCH_CACHE", value)
    with pytest.raises(RegbenchError, match="REGBENCH_CACHE is set but empty"):
        default_cache_dir()
    monkeypatch.setenv("REGBENCH_CACHE", "~/c")
    assert default_cache_dir() == Path.home() / "c"
    monkeypatch.delenv("REGBENCH_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "regbench"


def test_an_empty_cache_variable_stops_a_run_before_anything_is_written(cli, tmp_path):
    folder = tmp_path / "exp"
    result = cli("run", *GRID, *FAKE, "--experiment", str(folder), env={"REGBENCH_CACHE": ""})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "regbench: error: REGBENCH_CACHE is set but empty; unset it or name a folder"
    )
    assert not folder.exists()


def test_an_experiment_folder_with_stray_spaces_is_refused(cli, tmp_path):
    result = cli("plan", *GRID, "--experiment", "E ", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "regbench: error: experiment 'E ' starts or ends with spaces; remove them"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["plan", *GRID],
        ["leaderboard", "somewhere"],
        ["report", "somewhere"],
    ],
)
def test_an_unknown_baseline_is_refused(cli, tmp_path, command):
    result = cli(*command, "--baseline", "nosuch", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("regbench: error: --baseline: unknown regularizer 'nosuch'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_baseline_may_be_any_installed_regularizer_or_combination(registry):
    from regbench.cli.common import baseline

    for name in [*registry.names("regularizers"), "batchnorm+dropout"]:
        assert baseline(name) == name


def test_describe_refuses_a_parameter_given_twice(cli):
    result = cli(
        "describe",
        "--arch",
        "model1",
        "--reg",
        "dropout",
        "--param",
        "rate=0.1",
        "--param",
        "rate=0.2",
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "regbench: error: --param: 'rate' is given twice; give each key once",
    )


def test_a_yes_no_dataset_option_that_is_neither_is_refused(cli, tmp_path):
    folder = tmp_path / "exp"
    argv = ["run", *GRID, *FAKE, "--experiment", str(folder), "--dataset-option", "native=maybe"]
    result = cli(*argv)
    assert result.returncode == 2
    assert "dataset option native must be true or false; got 'maybe'" in result.stderr
    assert not folder.exists()
