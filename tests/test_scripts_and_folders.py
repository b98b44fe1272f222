"""The first hour of a new user: the library from a plain script, a piped one and a notebook-like
`python -c` (no `__main__` guard), and the commands on one experiment folder from any working
folder, named relatively or absolutely."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import TESTS
from hypothesis import given, settings
from hypothesis import strategies as st

import regbench
from regbench.design.experiment import Experiment, RenamedSetting
from regbench.errors import RegbenchError
from regbench.results.reader import load
from regbench.study import FailedRuns

README = TESTS.parent / "README.md"

SCRIPT = """\
import regbench

results = regbench.run(
    arch=["model1"], reg=["none", "l2"], dataset="synthetic", trainer="fake_trainer:train",
    dataset_options={"size": 70, "height": 8, "width": 8}, epochs=1, experiment="exp",
)
print("statuses", sorted(results.runs["status"]))
"""


def _python(args: list[str], cwd: Path, stdin: str | None = None, **env: str):
    """A fresh Python in `cwd` that finds the tests' fake trainer, as a user's would find theirs."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    full = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", **env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "stdin", "-c"])
def test_the_library_runs_from_a_script_without_a_main_guard(tmp_path, how):
    """Workers never import the caller's main module: with multiprocessing's spawn, each one
    re-ran the script, met the folder's lock, and every run failed."""
    (tmp_path / "study.py").write_text(SCRIPT)
    log = tmp_path / "trained.log"
    args = {"script": ["study.py"], "stdin": ["-"], "-c": ["-c", SCRIPT]}[how]
    stdin = SCRIPT if how == "stdin" else None
    done = _python(args, tmp_path, stdin, FAKE_LOG=str(log))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("statuses") == 1 and "['ok', 'ok']" in done.stdout, done.stdout
    assert "Warning" not in done.stderr, done.stderr
    assert len(log.read_text().splitlines()) == 2  # each run trained once, by a worker
    assert (load(tmp_path / "exp").runs["status"] == "ok").all()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "stdin"])
def test_the_readme_python_example_runs_as_a_script(tmp_path, how):
    """The README's example as written, saved as a file: `python readme_api.py` and
    `python - < readme_api.py` both exit 0 with every run ok."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no python example"
    (tmp_path / "readme_api.py").write_text(block.group(1))
    if how == "script":
        done = _python(["readme_api.py"], tmp_path)
    else:
        done = _python(["-"], tmp_path, stdin=block.group(1))
    assert done.returncode == 0, done.stderr[-3000:]
    runs = load(tmp_path / "reports" / "api").runs
    assert len(runs) == 2 and (runs["status"] == "ok").all(), runs[["run_id", "error"]]
    assert "FailedRuns" not in done.stderr


def test_failed_runs_are_a_warning_and_rows_from_python(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DIE_ON", "model1/l2")
    with pytest.warns(FailedRuns, match=r"1 of 2 run\(s\) did not finish ok \(1 failed\)"):
        results = regbench.run(
            arch=["model1"],
            reg=["none", "l2"],
            dataset="synthetic",
            dataset_options={"size": 70, "height": 8, "width": 8},
            epochs=1,
            trainer="fake_trainer:train",
            experiment=tmp_path,
            workers=1,
        )
    status = dict(zip(results.runs["reg"], results.runs["status"], strict=True))
    assert status == {"none": "ok", "l2": "failed"}


# ---------------------------------------------------------------- settings and their names


@pytest.mark.parametrize("function", ["run", "plan", "tune"])
def test_every_setting_is_in_the_signature_and_the_help(function):
    import inspect
    import pydoc
    from dataclasses import fields

    target = getattr(regbench, function)
    parameters = inspect.signature(target).parameters
    text = pydoc.render_doc(target, renderer=pydoc.plaintext)
    for f in fields(Experiment):
        assert parameters[f.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[f.name].annotation == f.type
        assert f"{f.name}: {f.type}" in text
    assert "**settings" not in text
    assert parameters["epochs"].default == 10 and parameters["experiment"].default is None


def test_the_old_name_out_still_works_with_a_one_line_warning(tmp_path):
    with pytest.warns(RenamedSetting, match="'out' is deprecated; name it 'experiment'") as seen:
        chosen = Experiment.create(out=tmp_path / "e")
    assert chosen.folder == tmp_path / "e"
    assert seen[0].filename == __file__  # pointing at the caller's line, not regbench's
    with pytest.warns(RenamedSetting):
        assert chosen.update(out="f").folder == Path("f")
    with pytest.raises(RegbenchError, match="out is the old name of experiment; give only"):
        Experiment.create(out="a", experiment="b")
    config = tmp_path / "old.toml"
    config.write_text('out = "elsewhere"\nepochs = 2\n')
    with pytest.warns(RenamedSetting, match=r"config .*old\.toml: the setting 'out'"):
        assert Experiment.from_config(str(config)).folder == Path("elsewhere")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Experiment.create(experiment="g").folder == Path("g")  # the new name is quiet


def test_an_experiment_file_with_the_old_key_gets_one_line_from_the_cli(cli, tmp_path):
    config = tmp_path / "old.toml"
    config.write_text(f'out = "{tmp_path / "e"}"\narch = "model1"\nreg = "none"\n')
    result = cli("plan", "--config", str(config), "--dataset", "digits")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"regbench: config {config}: the setting 'out' is deprecated; name it 'experiment'"
    ]
    assert f"-> {tmp_path / 'e'}" in result.stdout


# ---------------------------------------------------------------- one folder, any working folder


@pytest.mark.slow
def test_one_relative_folder_works_from_every_working_folder(cli, tmp_path):
    """run with a relative folder, then visualize, final, doctor and export from the folder
    above it, from elsewhere by its absolute path, and after moving it."""
    home = tmp_path / "home"
    (home / "rel").mkdir(parents=True)
    grid = ["--arch", "model1", "--reg", "none", "--dataset", "digits", "--epochs", "1"]
    done = cli("run", *grid, "--experiment", "rel/exp", "--executor", "inprocess", cwd=home)
    assert done.returncode == 0, done.stderr
    row = load(home / "rel" / "exp").runs.iloc[0]
    assert row["model_path"] == f"models/{row['run_id']}.keras"
    cell = ["--arch", "model1", "--reg", "none", "--with", "filters"]
    inside = cli("visualize", *cell, "--experiment", "exp", cwd=home / "rel")
    assert inside.returncode == 0, inside.stderr
    assert Path(home / "rel", inside.stdout.strip()).is_file()
    absolute = str(home / "rel" / "exp")
    away = cli("visualize", *cell, "--experiment", absolute, "--json", cwd=tmp_path)
    assert away.returncode == 0, away.stderr
    assert all(Path(p).is_file() for p in json.loads(away.stdout)["files"])
    final = cli(
        "final", "--arch", "model1", "--reg", "none", "--experiment", "exp", cwd=home / "rel"
    )
    assert final.returncode == 0, final.stderr
    figure = final.stdout.split("figure: ")[1].strip()
    assert (home / "rel" / figure).is_file()
    assert cli("doctor", "--experiment", absolute, cwd=tmp_path).returncode == 0
    (home / "rel" / "exp").rename(tmp_path / "moved")
    by_id = ["--run", row["run_id"], "--with", "filters"]
    again = cli("visualize", *by_id, "--experiment", "moved", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    exported = cli("export", "moved", "--tracking-uri", uri, "--json", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert '"models_missing": []' in exported.stdout
    assert len(list((tmp_path / "mlruns").rglob("*.keras"))) == 2  # the grid's and the final's


@settings(max_examples=30)
@given(
    form=st.sampled_from(["today", "absolute", "moved", "cwd-relative"]),
    parts=st.lists(st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), min_size=1, max_size=3),
)
def test_a_stored_model_path_of_any_era_finds_the_file(tmp_path_factory, form, parts):
    """Stores written before model paths were relative to the folder keep working: absolute
    paths (the folder since moved or not) and the Ray executor's paths relative to the working
    folder it ran from."""
    from regbench.results.lookup import model_file

    folder = tmp_path_factory.mktemp("exp")
    (folder / "models").mkdir()
    model = folder / "models" / "r.keras"
    model.write_bytes(b"model")
    stored = {
        "today": "models/r.keras",
        "absolute": str(model),
        "moved": str(Path("/gone", *parts, "models", "r.keras")),
        "cwd-relative": str(Path(*parts, "models", "r.keras")),
    }[form]
    assert model_file(folder, stored) == model
    assert model_file(folder, None) is None and model_file(folder, "") is None
