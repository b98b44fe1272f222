"""One spelling across commands: `--experiment` everywhere, `--param REG.NAME=V`, `--seeds`,
`--json` wherever results are read; output designed for 80 columns as well as 120."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from doubles import FAKE_TRAINER, TINY_DATA

from regbench.cli import build_parser
from regbench.cli.completion import options_by_command
from regbench.design.plan import Protocol, RunSpec
from regbench.results.store import Store

SYNTHETIC = TINY_DATA
FAKE = [*FAKE_TRAINER, "--executor", "inprocess"]
WITHOUT_AN_EXPERIMENT = {"list", "describe", "completion"}


def test_every_command_that_reads_or_writes_an_experiment_takes_experiment():
    for command, options in options_by_command(build_parser()).items():
        if command not in WITHOUT_AN_EXPERIMENT:
            assert "--experiment" in options, command
        assert "--out" not in options, command  # the old spelling is accepted, never offered


def test_every_command_that_reads_results_offers_json():
    for command, options in options_by_command(build_parser()).items():
        if command != "completion":
            assert "--json" in options, command


def test_no_help_shows_a_placeholder_made_from_a_flag_name():
    """argparse's default metavar is the dest in capitals: `--with WITH_` said nothing."""
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for name, command in sub.choices.items():
        assert "WITH_" not in command.format_help(), name


@pytest.fixture
def folder(cli, tmp_path) -> Path:
    """A small finished experiment (fake trainer): model1 x none, l2."""
    out = tmp_path / "exp"
    grid = ["--arch", "model1", "--reg", "none,l2", *SYNTHETIC, "--epochs", "1"]
    assert cli("run", *grid, *FAKE, "--experiment", str(out)).returncode == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("command", ["doctor", "leaderboard", "report"])
def test_a_reading_command_takes_the_folder_either_way(cli, folder, command):
    positional = cli(command, str(folder), "--json")
    flagged = cli(command, "--experiment", str(folder), "--json")
    assert positional.returncode == flagged.returncode == 0, positional.stderr + flagged.stderr
    assert json.loads(positional.stdout) == json.loads(flagged.stdout)


def test_two_different_folders_are_refused(cli, folder, tmp_path):
    result = cli("doctor", str(folder), "--experiment", str(tmp_path))
    assert result.returncode == 2 and "two experiment folders given" in result.stderr


def test_compare_takes_experiment_flags(cli, folder, tmp_path):
    other = tmp_path / "other"
    grid = ["--arch", "model1", "--reg", "none", *SYNTHETIC, "--epochs", "1"]
    assert cli("run", *grid, *FAKE, "--experiment", str(other)).returncode == 0
    flagged = cli("compare", "--experiment", str(folder), "--experiment", str(other), "--json")
    assert flagged.returncode == 0, flagged.stderr
    assert json.loads(flagged.stdout) == json.loads(
        cli("compare", str(folder), str(other), "--json").stdout
    )
    alone = cli("compare", "--experiment", str(folder))
    assert alone.returncode == 2 and "--experiment DIR --experiment DIR" in alone.stderr


def test_errors_name_the_current_flags(cli, folder):
    result = cli("visualize", "--arch", "model2", "--reg", "none", "--experiment", str(folder))
    assert result.returncode == 2
    assert f"--experiment {folder}" in result.stderr and "--out" not in result.stderr


@pytest.mark.slow
def test_json_of_plan_doctor_and_report(cli, folder):
    grid = ["--arch", "model1", "--reg", "none,l2,dropout", *SYNTHETIC, "--epochs", "1"]
    plan = json.loads(cli("plan", *grid, "--experiment", str(folder), "--json").stdout)
    assert plan["counts"] == {"done": 2, "pending": 1, "failed": 0, "skipped": 0}
    assert {r["reg"]: r["state"] for r in plan["runs"]} == {
        "none": "done",
        "l2": "done",
        "dropout": "pending",
    }
    doctor = json.loads(cli("doctor", str(folder), "--json").stdout)
    assert doctor["folder"] == str(folder) and any("ok" in note for note in doctor["notes"])
    report = json.loads(cli("report", str(folder), "--json").stdout)
    assert Path(report["html"]).is_file() and Path(report["markdown"]).is_file()


def test_run_json_keeps_stdout_for_the_json(cli, tmp_path):
    grid = ["--arch", "model1", "--reg", "none", *SYNTHETIC, "--epochs", "1"]
    result = cli("run", *grid, *FAKE, "--experiment", str(tmp_path / "e"), "--json")
    assert result.returncode == 0, result.stderr
    board = json.loads(result.stdout)
    assert [row["reg"] for row in board["leaderboard"]] == ["none"]
    assert "[1/1]" in result.stderr  # the progress went to stderr


def test_describe_takes_a_parameter_spelled_as_run_does(cli):
    spelled = ["describe", "--arch", "model1", "--reg", "dropout", "--json"]
    as_run = cli(*spelled, "--param", "dropout.rate=0.3")
    short = cli(*spelled, "--param", "rate=0.3")
    assert as_run.returncode == short.returncode == 0, as_run.stderr + short.stderr
    layers = [
        [(layer["type"], layer["params"]) for layer in json.loads(shown.stdout)["layers"]]
        for shown in (as_run, short)
    ]
    assert layers[0] == layers[1] and ("Dropout", 0) in layers[0]
    wrong = cli(*spelled, "--param", "l2.strength=0.1")
    assert wrong.returncode == 2 and "uses regularizer 'dropout'" in wrong.stderr


@pytest.mark.parametrize(
    ("flags", "seeds"),
    [([], (0,)), (["--seeds", "2"], (0, 1)), (["--seeds", "3,5"], (3, 5)), (["--seed", "4"], (4,))],
)
def test_final_reads_seeds_as_run_does(flags, seeds):
    from regbench.cli.stages import _seeds

    args = build_parser().parse_args(["final", "--best", *flags])
    assert _seeds(args) == seeds


def test_final_refuses_seed_and_seeds_together(cli):
    result = cli("final", "--best", "--seed", "1", "--seeds", "2")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


# ---------------------------------------------------------------- one vocabulary


@pytest.mark.parametrize("command", ["run", "plan", "tune", "final"])
def test_seeds_are_spelled_one_way_in_every_command(command):
    text = _help(command)
    assert "--seeds" in text and "--seed " not in text and "--seed\n" not in text


@pytest.mark.parametrize("command", ["visualize", "report"])
def test_output_folders_are_spelled_one_way(command):
    text = _help(command)
    assert "--output-dir" in text
    assert "--figures" not in text and "--report-dir" not in text


@pytest.mark.parametrize(
    ("flags", "commands"),
    [
        (("--executor", "--workers"), ("run", "tune")),  # where runs or searches train
        (("--baseline",), ("run", "plan", "tune", "leaderboard", "report", "compare")),
        (("--dataset", "--data-dir", "--cache-dir"), ("run", "plan", "tune", "visualize", "final")),
    ],
)
def test_a_setting_has_one_flag_in_every_command_it_acts_in(flags, commands):
    options = options_by_command(build_parser())
    for command in commands:
        assert set(flags) <= set(options[command]), command


@pytest.mark.parametrize("command", ["run", "plan", "tune", "visualize", "final"])
def test_dataset_names_the_dataset_plugin_in_every_command(command):
    """`--dataset` picks the dataset everywhere (in visualize and final: the runs trained on
    it), never only a default folder."""
    text = " ".join(_help(command).split())
    assert re.search(r"--dataset DATASET\s+(dataset plugin)", text), text


def _help(command: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args([command, "--help"])
    return out.getvalue()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["visualize", "--figures", "F"], "--figures is deprecated; use --output-dir"),
        (["report", "--report-dir", "F"], "--report-dir is deprecated; use --output-dir"),
    ],
)
def test_an_old_spelling_still_works_and_says_the_new_one(old, new, capsys):
    from regbench.cli.stages import _output

    args = build_parser().parse_args(old)
    flag = old[1]
    assert _output(args, flag) == "F"
    assert new in capsys.readouterr().err


def test_final_seed_still_works_and_says_seeds(capsys):
    from regbench.cli.stages import _seeds

    assert _seeds(build_parser().parse_args(["final", "--best", "--seed", "4"])) == (4,)
    assert "--seed is deprecated; use --seeds 4," in capsys.readouterr().err


# ---------------------------------------------------------------- 80 and 120 columns

SWEEP = ["--arch", "model1,model3", "--reg", "none,l2,dropout+batchnorm"]
SWEEP += ["--param", "l2.strength=0.0602797,0.001", "--seeds", "2", "--dataset", "digits"]


@pytest.mark.parametrize("columns", ["80", "120"])
def test_plan_never_breaks_a_run_id_or_a_number(cli, tmp_path, columns):
    result = cli("plan", *SWEEP, "--experiment", str(tmp_path / "e"), env={"COLUMNS": columns})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= int(columns) for line in lines[1:-2])  # the table
    planned = json.loads(cli("plan", *SWEEP, "--experiment", str(tmp_path / "e"), "--json").stdout)
    for run in planned["runs"]:
        assert any(line.split()[:1] == [run["run_id"]] for line in lines), run["run_id"]
    for value in ("strength=0.0602797", "strength=0.001", "dropout.rate=0.1"):
        assert value in result.stdout


@pytest.mark.parametrize("columns", ["80", "120"])
def test_printed_paths_are_never_wrapped(cli, tmp_path, columns, capsys, monkeypatch):
    from regbench.cli.common import say

    monkeypatch.setenv("COLUMNS", columns)
    deep = tmp_path / ("a-long-folder-name-" * 6) / "figures" / "visualize" / "featuremaps.png"
    say(str(deep))
    assert capsys.readouterr().out == f"{deep}\n"


def test_plan_estimates_the_time_left_from_measured_epochs(cli, tmp_path):
    spec = RunSpec(arch="model1", reg="none", params={}, seed=0, protocol=Protocol("digits"))
    with Store(tmp_path) as store:
        store.record_run(
            {**spec.row(), "status": "ok", "train_time_s": 30.0, "epochs_run": 10}, []
        )  # 3 s per epoch
    grid = ["--arch", "model1", "--reg", "none,l2", "--dataset", "digits", "--seeds", "0,1"]
    result = cli("plan", *grid, "--epochs", "20", "--experiment", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (
        "estimate: about 2.0 min of training for 2 of the 4 run(s) to train, one after another "
        "(from finished runs' seconds per epoch; the other 2 are in cells not timed yet)"
    ) in result.stdout
    again = cli("plan", *grid, "--epochs", "20", "--experiment", str(tmp_path), "--json")
    planned = json.loads(again.stdout)
    assert planned["estimate_s"] == pytest.approx(120.0) and planned["estimated_runs"] == 2


# ---------------------------------------------------------------- progress


def test_final_progress_is_labelled_final():
    from rich.console import Console

    from regbench.study.progress import GridProgress

    shown = GridProgress(Console(force_terminal=True, width=80), label="final")
    shown.begin(1, 0, Path("exp"))
    try:
        assert [task.description for task in shown._progress.tasks] == ["final"]
    finally:
        shown.end()


def test_tuning_says_how_long_the_rest_will_take(monkeypatch):
    from regbench.cli import tune

    clock = iter([0.0, 10.0, 20.0, 30.0])
    monkeypatch.setattr(tune.time, "perf_counter", lambda: next(clock))
    trials = tune.TrialClock(total=4)
    assert trials.tick() == "1/4, about 30 s left"  # 10 s a trial, 3 to go
    assert trials.tick() == "2/4, about 20 s left"
    assert re.fullmatch(r"3/4, about 10 s left", trials.tick())


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")  # beside tests/test_mlflow.py, which makes the empty store
def test_export_says_which_model_files_did_not_reach_mlflow(cli, tmp_path, mlflow_db):
    spec = RunSpec(arch="model1", reg="none", params={}, seed=0, protocol=Protocol("digits"))
    with Store(tmp_path / "exp") as store:
        store.record_run(
            {**spec.row(), "status": "ok", "model_path": f"models/{spec.run_id}.keras"}, []
        )
    result = cli("export", "--experiment", str(tmp_path / "exp"), "--tracking-uri", mlflow_db)
    assert result.returncode == 0, result.stderr
    assert "exported 1 run(s)" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (  # after MLflow's own logging
        f"regbench: 1 run(s) saved a model that is no longer in {tmp_path / 'exp'}/models, so "
        f"MLflow has no model file for them: {spec.run_id}"
    )
