"""The settings table (design.settings.SETTINGS) is the one declaration of every setting: the
Experiment's fields and validation, the flags and their help, an experiment file's keys and
docs/settings.md are read from it, and a setting added to it appears in each."""

from __future__ import annotations

import contextlib
import io
from dataclasses import fields, replace
from pathlib import Path

import pytest

from regbench.cli import build_parser
from regbench.cli.completion import options_by_command
from regbench.design import parsers, settings
from regbench.design.experiment import FILE_KEYS, Experiment, settings_page
from regbench.design.plan import MEASURED, Execution, Protocol, RunSpec, protocol_columns

DOC = Path(__file__).parents[1] / "docs" / "settings.md"
BY_NAME = {s.name: s for s in settings.SETTINGS}


def test_every_experiment_field_is_one_row_of_the_table():
    assert [f.name for f in fields(Experiment)] == [s.name for s in settings.SETTINGS]
    assert len(BY_NAME) == len(settings.SETTINGS)
    assert {s.role for s in settings.SETTINGS} <= set(settings.ROLES)


def test_the_protocol_and_the_execution_are_made_of_their_roles_settings():
    """A protocol also holds what no one sets (the Keras backend, found where a run trains);
    every protocol setting is a field of it."""
    protocol = {f.name for f in fields(Protocol)}
    assert {s.name for s in settings.SETTINGS if s.role == "protocol"} <= protocol
    for name in protocol & set(BY_NAME):
        assert BY_NAME[name].role == "protocol", name
    made = {f.name.removesuffix("_dir") for f in fields(Execution)}  # tensorboard_dir
    assert {s.name for s in settings.SETTINGS if s.role == "execution"} == made


def test_docs_settings_is_the_table_as_generated():
    assert DOC.read_text(encoding="utf-8") == settings_page(), (
        "docs/settings.md is out of date: python -m regbench.design.experiment > docs/settings.md"
    )


def test_every_flag_of_the_table_is_offered_where_its_role_says():
    options = options_by_command(build_parser())
    for setting in settings.SETTINGS:
        for command in ("run", "plan", "tune"):
            offered = setting.spelling in options[command]
            wanted = command in setting.commands and not setting.hidden
            assert offered == wanted, (setting.name, command)


def _with_new_setting():
    """A copy of the table with one more protocol setting (as a new one would be added)."""
    new = settings.Setting(
        "label_smoothing",
        parsers.positive,
        "protocol",
        "smooth the one-hot labels by this much (default none)",
    )
    return (*settings.SETTINGS, new)


def test_a_setting_added_to_the_table_is_a_flag_a_file_key_a_parser_and_documented():
    table = _with_new_setting()
    parser = build_parser(table)
    args = parser.parse_args(["run", "--label-smoothing", "0.1"])
    assert args.label_smoothing == "0.1"
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        parser.parse_args(["tune", "--help"])
    assert "--label-smoothing" in help_text.getvalue()
    assert "label_smoothing" in settings.file_keys(table)
    assert settings.parsers(table)["label_smoothing"]("0.1", "label_smoothing") == 0.1
    assert "label_smoothing" in protocol_columns(table)  # a column (its migration adds it)
    doc = settings_page(table)
    assert "| `label_smoothing` | `--label-smoothing` | yes | protocol |" in doc


# a value other than the default of each protocol setting; a setting added to the table fails
# the test below until it is given one here
ANOTHER = {
    "dataset": "digits",
    "dataset_options": {"native": True},
    "epochs": 11,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.5,
    "optimizer_options": {"momentum": 0.9},
    "lr_schedule": "cosine",
    "precision": "mixed_float16",
}


def test_every_protocol_setting_is_a_column_and_part_of_the_identity():
    """Two runs that differ in one protocol setting (but the measured `target`) are two runs
    and two protocols; the measured one changes neither."""
    protocol = [s.name for s in settings.SETTINGS if s.role == "protocol"]
    assert set(ANOTHER) == set(protocol) - set(MEASURED)
    assert set(ANOTHER) <= set(protocol_columns())

    def run(**changed):
        return RunSpec(arch="model1", reg="none", params={}, seed=0, protocol=Protocol(**changed))

    for name, value in ANOTHER.items():
        assert run(**{name: value}).config_hash != run().config_hash, name
    assert run(target=("val_accuracy", 0.5)).config_hash == run().config_hash


def test_a_bad_value_is_refused_with_the_settings_name_whatever_the_source():
    from regbench.errors import RegbenchError

    for source, value in (("", "0"), ("config lab: ", 0)):
        with pytest.raises(RegbenchError, match=f"{source}epochs must be between 1"):
            Experiment.create(source, epochs=value)


def test_a_file_may_set_every_setting_but_the_trainer():
    assert set(FILE_KEYS) == {s.name for s in settings.SETTINGS} - {"trainer"}
    assert not replace(BY_NAME["trainer"], hidden=False).in_file
