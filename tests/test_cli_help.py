"""The command line explains itself: help on every flag, completion generated from the parser."""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from regbench.cli import build_parser, main
from regbench.cli.completion import options_by_command, script


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_visible_flag_has_help(name):
    command = _commands()[name]
    for action in command._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"regbench {name} {'/'.join(action.option_strings) or action.dest}"


def test_plan_offers_no_flags_that_only_run_uses():
    assert not {"--executor", "--workers", "--force", "--tune"} & set(
        options_by_command(build_parser())["plan"]
    )


def test_completion_lists_every_command(capsys):
    assert main(["completion", "bash"]) == 0
    text = capsys.readouterr().out
    for name, options in options_by_command(build_parser()).items():
        assert f"{name}) words=" in text
        assert all(option in text for option in options)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_a_flag():
    code = (
        script("bash", build_parser())
        + '\nCOMP_WORDS=(regbench run --exper); COMP_CWORD=2; _regbench; echo "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["--experiment"]


def test_param_typo_for_a_regularizer_outside_the_grid_is_refused(tmp_path, capsys):
    code = main(
        ["plan", "--arch", "model1", "--reg", "none", "--dataset", "digits"]
        + ["--param", "l2.strenght=0.1", "--experiment", str(tmp_path / "e")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "regbench: error: regularizer 'l2' has no hyperparameter 'strenght' (it has: strength)"
    )
