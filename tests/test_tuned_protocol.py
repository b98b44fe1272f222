"""`run --tuned` trains values under the protocol they were tuned under (issue 29.2): tuning
records it and its seed; settings the caller gives win, and a line says which way it went;
a grid seed that is the tuning seed is named (issue 32.5)."""

from __future__ import annotations

import pytest

import regbench
from regbench.results.store import Store
from regbench.study import Observer
from regbench.study.tuning import tuned_settings

GRID = {"arch": ["model1"], "reg": ["dropout"], "dataset": "digits", "seeds": [0, 1]}


class Heard(Observer):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def tuned_folder(tmp_path, epochs: int | None = 1, seed: int = 0):
    """A folder whose tuning stage found rate=0.2 for model1 + dropout at `epochs` (None: by
    a regbench that recorded no protocol)."""
    under = regbench.Experiment.create(**GRID, epochs=epochs or 10, experiment=str(tmp_path))
    with Store(tmp_path) as store:
        store.record_best(
            "model1",
            "dropout",
            {"rate": 0.2},
            0.5,
            "search",
            dataset="digits",
            protocol=None if epochs is None else tuned_settings(under),
            seed=None if epochs is None else seed,
        )
    return tmp_path


def test_tuned_values_train_under_their_protocol_and_say_so(tmp_path):
    folder = tuned_folder(tmp_path)
    planned = regbench.plan(**GRID, experiment=str(folder), tuned=True)
    assert {r.spec.protocol.epochs for r in planned.runs} == {1}
    heard = Heard()
    results = regbench.run(
        **GRID, experiment=str(folder), tuned=True, trainer="fake_trainer:train", observer=heard
    )
    assert set(results.runs["epochs"]) == {1} and set(results.runs["params"].map(str)) == {
        "{'rate': 0.2}"
    }
    assert any(
        "training as the values were tuned, epochs=1 (not epochs=10)" in n for n in heard.notes
    )
    assert any("seed 0 scored the tuning trials" in n for n in heard.notes)


def test_a_setting_the_caller_gives_wins_and_is_said(tmp_path):
    folder = tuned_folder(tmp_path, seed=7)
    heard = Heard()
    results = regbench.run(
        **GRID,
        experiment=str(folder),
        epochs=2,
        tuned=True,
        trainer="fake_trainer:train",
        observer=heard,
    )
    assert set(results.runs["epochs"]) == {2}
    assert heard.notes == [
        "tuned: the values were tuned under epochs=1; training under epochs=2, as given"
    ]


def test_values_tuned_before_the_protocol_was_recorded_train_as_asked(tmp_path):
    folder = tuned_folder(tmp_path, epochs=None)
    planned = regbench.plan(**GRID, experiment=str(folder), tuned=True)
    assert {r.spec.protocol.epochs for r in planned.runs} == {10}  # unknown: the run's own


def test_python_without_an_observer_warns(tmp_path):
    folder = tuned_folder(tmp_path)
    with pytest.warns(regbench.study.TunedProtocol) as heard:
        regbench.run(
            **GRID,
            experiment=str(folder),
            tuned=True,
            trainer="fake_trainer:train",
            progress=False,
        )
    said = [str(w.message) for w in heard]
    assert any("training as the values were tuned" in line for line in said)
    assert all(w.filename == __file__ for w in heard)  # pointing at the caller's line


def test_the_command_line_keeps_the_flags_it_was_given(tmp_path, cli):
    folder = tuned_folder(tmp_path)
    args = ["run", "--arch", "model1", "--reg", "dropout", "--dataset", "digits", "--seeds", "1"]
    args += ["--tuned", "--trainer", "fake_trainer:train", "--experiment", str(folder)]
    given = cli(*args, "--epochs", "3")
    assert given.returncode == 0, given.stderr
    assert "tuned under epochs=1; training under epochs=3, as given" in given.stdout + given.stderr
    adopted = cli(*args)
    assert "choose another with --epochs" in adopted.stdout + adopted.stderr
    epochs = set(regbench.load(folder).runs["epochs"])
    assert epochs == {1, 3}
