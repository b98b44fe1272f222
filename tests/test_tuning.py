"""The keras-tuner stage on the real digits data: tiny searches, each trial one short fit."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import doubles
import pandas as pd
import pytest
from doubles import RegularizersPlugin

from regbench.design.plan import Protocol
from regbench.engine.tuning import run_search, search_hash
from regbench.errors import RegbenchError
from regbench.plugins.hparams import HParam
from regbench.plugins.manager import Origin
from regbench.plugins.points import ANY
from regbench.plugins.regularizer import Regularizer
from regbench.results.reader import load_trials
from regbench.results.store import Store

PROTOCOL = Protocol(dataset="digits", epochs=1)
RATE = HParam("rate", 0.1, 0.0, 0.9)


class Interrupted(Exception):
    """Stands in for a Ctrl-C or a crash between trials."""


class Untouchable:
    """Stands in for the test split: any use of it is recorded and fails loudly."""

    def __init__(self, touched: list[str]) -> None:
        self._touched = touched

    def _touch(self, *args, **kwargs):
        self._touched.append("test split used")
        raise AssertionError("the tuning stage touched the test split")

    __array__ = __len__ = __getitem__ = __iter__ = _touch
    shape = property(_touch)
    dtype = property(_touch)


class Counted(Regularizer):
    """Dropout that counts its trainings (through its callbacks, which must reach fit)."""

    family = ANY

    def __init__(self, name: str, *hparams: HParam) -> None:
        self.name = name
        self.hparams = hparams
        self.fits: list[dict] = []

    def layers_at(self, point, params):
        from regbench.plugins.keras import import_keras

        return [import_keras().layers.Dropout(params["rate"])] if point.kind == "vector" else []

    def callbacks(self, params):
        from regbench.plugins.keras import import_keras

        fits, seen = self.fits, dict(params)

        class Count(import_keras().callbacks.Callback):
            def on_train_begin(self, logs=None):
                fits.append(seen)

        return [Count()]


class Noise(Regularizer):
    """A third-party regularizer with its own space: a log-scale float and an integer."""

    name = "test-noise"
    family = ANY
    hparams = (
        HParam("stddev", 0.05, 1e-3, 0.5, log=True),
        HParam("copies", 1, 1, 3, integer=True),
    )

    def layers_at(self, point, params):
        from regbench.plugins.keras import import_keras

        layers = import_keras().layers
        return [layers.GaussianNoise(params["stddev"]) for _ in range(params["copies"])]


class Broken(Regularizer):
    """Fails to build whenever `broken` is 1 (or always, with `always`)."""

    family = ANY
    hparams = (HParam("broken", 0, 0, 1, integer=True),)

    def __init__(self, name: str, always: bool = False) -> None:
        self.name = name
        self.always = always

    def loss(self, params, loss):
        if self.always or params["broken"] == 1:
            raise ValueError(f"boom at broken={params['broken']}")
        return loss


@pytest.fixture(scope="module")
def digits():
    """The real digits splits, cut to 300 training and 100 validation images: a trial is a fit."""
    from regbench.plugins.manager import registry

    full = registry().get("datasets", "digits").load(0, {"cache_dir": None})
    return dataclasses.replace(
        full,
        x_train=full.x_train[:300],
        y_train=full.y_train[:300],
        x_val=full.x_val[:100],
        y_val=full.y_val[:100],
    )


@pytest.fixture
def install(request):
    """Make in-test regularizers visible to `run_search`, as an installed plugin's would be."""

    def installed(*regularizers: Regularizer) -> None:
        doubles.install(request, RegularizersPlugin(*regularizers), Origin("test-plugin", "0"))

    return installed


def search(tmp_path: Path, data, on_trial=None, **kwargs):
    """`run_search` with a store that records what it reports, as `study.tune` does (the
    search itself never writes the store)."""
    options = {"arch": "model1", "protocol": PROTOCOL, "max_trials": 3, "seed": 0, **kwargs}
    store = Store(tmp_path / "exp")

    def trial(row):
        store.record_trial(row)
        if on_trial is not None:
            on_trial(row)

    def best(chosen):
        assert (chosen["arch"], chosen["dataset"]) == ("model1", options["protocol"].dataset)
        store.record_best(
            chosen["arch"],
            chosen["reg"],
            chosen["values"],
            chosen["score"],
            chosen["search_hash"],
            dataset=chosen["dataset"],
        )

    found = run_search(
        data=data, project_root=tmp_path / "kt", on_trial=trial, on_best=best, **options
    )
    return store, found


def projects(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "kt").iterdir() if p.is_dir())


def test_search_hash_is_stable_and_changes_with_the_search():
    args = ("model1", "dropout", [RATE], PROTOCOL, "random", 4, 0)
    base = search_hash(*args)
    assert base == search_hash(*args)
    assert base == search_hash(*args[:2], [dataclasses.replace(RATE, help="text")], *args[3:])
    changed = [
        ("model3", *args[1:]),
        (*args[:2], [dataclasses.replace(RATE, high=0.5)], *args[3:]),
        (*args[:2], [dataclasses.replace(RATE, log=True, low=0.01)], *args[3:]),
        (*args[:3], dataclasses.replace(PROTOCOL, epochs=2), *args[4:]),
        (*args[:3], dataclasses.replace(PROTOCOL, learning_rate=0.1), *args[4:]),
        (*args[:4], "bayesian", *args[5:]),
        (*args[:5], 5, 0),
        (*args[:6], 1),
    ]
    hashes = {search_hash(*c) for c in changed}
    assert len(hashes) == len(changed) and base not in hashes


def test_unknown_tuner_and_empty_budget_are_refused(tmp_path, digits):
    with pytest.raises(
        RegbenchError, match="tuner must be one of random, bayesian, hyperband; got 'grid'"
    ):
        search(tmp_path, digits, reg="dropout", tuner="grid")
    with pytest.raises(RegbenchError, match="at least 1"):
        search(tmp_path, digits, reg="dropout", max_trials=0)


def test_regularizer_without_hparams_has_nothing_to_tune(tmp_path, digits):
    store, best = search(tmp_path, digits, reg="batchnorm")
    assert best is None
    assert store.best_values() == {}
    assert not (tmp_path / "kt").exists()


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_search_records_every_trial_and_uses_validation_only(tmp_path, digits, capsys):
    touched: list[str] = []
    data = dataclasses.replace(digits, x_test=Untouchable(touched), y_test=Untouchable(touched))
    seen: list[dict] = []
    store, best = search(tmp_path, data, reg="dropout", max_trials=2, on_trial=seen.append)

    assert touched == []
    assert set(best) == {"rate"} and 0.0 <= best["rate"] <= 0.9
    assert store.best_values() == {("model1", "dropout"): best}
    trials = load_trials(tmp_path / "exp")
    assert len(trials) == 2 and (trials["status"] == "ok").all()
    expected = search_hash("model1", "dropout", [RATE], PROTOCOL, "random", 2, 0)
    assert set(trials["search_hash"]) == {expected}
    assert trials["train_time_s"].gt(0).all() and trials["error"].isna().all()
    assert trials["hp.rate"].between(0.0, 0.9).all()
    top = trials.loc[trials["score"].idxmax()]
    assert top["hp.rate"] == pytest.approx(best["rate"])
    assert [row["trial_id"] for row in seen] == list(trials["trial_id"])
    assert [p.name for p in projects(tmp_path)] == [f"model1-dropout-{expected}"]
    assert capsys.readouterr().out == ""  # keras-tuner's banners are silenced


@pytest.mark.slow
def test_third_party_space_is_searched_as_declared(tmp_path, digits, install):
    install(Noise())
    store, best = search(tmp_path, digits, reg="test-noise", tuner="bayesian")

    assert set(best) == {"stddev", "copies"}
    assert 1e-3 <= best["stddev"] <= 0.5 and best["copies"] in (1, 2, 3)
    trials = load_trials(tmp_path / "exp")
    assert len(trials) == 3 and (trials["status"] == "ok").all()
    assert trials["hp.stddev"].between(1e-3, 0.5).all()
    assert trials["hp.copies"].isin([1, 2, 3]).all()
    (project,) = projects(tmp_path)
    space = json.loads((project / "oracle.json").read_text())["hyperparameters"]["space"]
    declared = {s["config"]["name"]: (s["class_name"], s["config"]) for s in space}
    assert declared.keys() == {"stddev", "copies"}
    assert declared["stddev"][0] == "Float" and declared["stddev"][1]["sampling"] == "log"
    assert (declared["stddev"][1]["min_value"], declared["stddev"][1]["max_value"]) == (1e-3, 0.5)
    assert declared["copies"][0] == "Int" and declared["copies"][1]["sampling"] == "linear"
    assert (declared["copies"][1]["min_value"], declared["copies"][1]["max_value"]) == (1, 3)


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_failed_trial_is_recorded_and_never_best(tmp_path, digits, install):
    install(Broken("test-broken"))
    # A space of two points: the search runs both (then it is exhausted), one of them fails.
    store, best = search(tmp_path, digits, reg="test-broken", max_trials=4)

    assert best == {"broken": 0}
    trials = load_trials(tmp_path / "exp").set_index("hp.broken")
    assert len(trials) == 2
    assert trials.loc[0, "status"] == "ok" and trials.loc[0, "score"] >= 0
    assert trials.loc[1, "status"] == "failed" and pd.isna(trials.loc[1, "score"])
    assert trials.loc[1, "error"] == "ValueError: boom at broken=1"
    assert store.best_values() == {("model1", "test-broken"): {"broken": 0}}


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_all_trials_failed_raises_with_the_first_error(tmp_path, digits, install):
    install(Broken("test-always-broken", always=True))
    with pytest.raises(RegbenchError, match=r"all 2 trials .* failed; the first: ValueError: boom"):
        search(tmp_path, digits, reg="test-always-broken", max_trials=2)
    trials = load_trials(tmp_path / "exp")
    assert list(trials["status"]) == ["failed", "failed"]
    assert Store(tmp_path / "exp").best_values() == {}


@pytest.mark.slow
def test_missing_tensorboard_fails_every_trial_loudly(tmp_path, digits, monkeypatch):
    # keras-tuner imports TensorBoard's hparams API in every trial and, without it, fails each
    # one quietly while search() returns as if all went well.
    monkeypatch.setitem(sys.modules, "tensorboard.plugins.hparams", None)
    with pytest.raises(RegbenchError, match="all 2 trials .* the first: .*tensorboard"):
        search(tmp_path, digits, reg="dropout", max_trials=2)
    assert list(load_trials(tmp_path / "exp")["status"]) == ["failed", "failed"]


@pytest.mark.slow
def test_interrupted_search_resumes_and_a_changed_space_starts_fresh(tmp_path, digits, install):
    reg = Counted("test-counted", RATE)
    install(reg)

    def interrupt_after_two(row):
        if row["trial_id"] == "1":
            raise Interrupted

    with pytest.raises(Interrupted):
        search(tmp_path, digits, reg="test-counted", on_trial=interrupt_after_two)
    assert len(reg.fits) == 2
    first_two = list(reg.fits)

    search(tmp_path, digits, reg="test-counted")
    assert len(reg.fits) == 3  # only the missing trial was trained
    trials = load_trials(tmp_path / "exp")
    assert list(trials["trial_id"]) == ["0", "1", "2"] and (trials["status"] == "ok").all()
    assert [{"rate": r} for r in trials["hp.rate"][:2]] == first_two
    assert len(projects(tmp_path)) == 1

    narrow = Counted("test-counted", dataclasses.replace(RATE, high=0.3))
    install(narrow)
    _, best = search(tmp_path, digits, reg="test-counted")
    assert len(narrow.fits) == 3  # a new project: nothing reloaded from the old bounds
    assert all(fit["rate"] <= 0.3 for fit in narrow.fits) and best["rate"] <= 0.3
    assert len(projects(tmp_path)) == 2


@pytest.mark.slow
def test_hyperband_bookkeeping_does_not_leak(tmp_path, digits, install):
    reg = Counted("test-hyperband", RATE)
    install(reg)
    protocol = dataclasses.replace(PROTOCOL, epochs=3)  # a bracket of 3 one-epoch trials + 1
    seen: list[dict] = []
    store, best = search(
        tmp_path,
        digits,
        reg="test-hyperband",
        tuner="hyperband",
        max_trials=4,
        protocol=protocol,
        on_trial=seen.append,
    )

    assert set(best) == {"rate"} and 0.0 <= best["rate"] <= 0.9
    assert all(set(row["values"]) == {"rate"} for row in seen) and len(seen) == 4
    assert all(set(fit) == {"rate"} for fit in reg.fits)
    assert store.best_values()[("model1", "test-hyperband")] == best
    assert [c for c in load_trials(tmp_path / "exp").columns if c.startswith("hp.")] == ["hp.rate"]
    (project,) = projects(tmp_path)
    raw = [json.loads(p.read_text()) for p in project.glob("trial_*/trial.json")]
    keys = set().union(*(t["hyperparameters"]["values"] for t in raw))
    assert {"tuner/epochs", "tuner/trial_id"} <= keys  # keras-tuner did use them
