"""`regbench tune` with the local executor: each cell's search in a worker process."""

from __future__ import annotations

import pytest
from test_plugins import make_distribution

from regbench.results.reader import load_trials
from regbench.results.store import Store

pytestmark = pytest.mark.slow  # real searches on digits, in worker processes

BASE = ["--arch", "model1", "--dataset", "digits", "--epochs", "1", "--max-trials", "2"]

FAILING = """
    from regbench import hookimpl
    from regbench.plugins.hparams import HParam
    from regbench.plugins.points import ANY
    from regbench.plugins.regularizer import Regularizer

    class Fails(Regularizer):
        name = "fails"
        description = "fails every trial"
        family = ANY
        hparams = (HParam("amount", 0.5, 0.0, 1.0),)

        def loss(self, params, loss):
            raise ValueError("boom in a worker")

    @hookimpl
    def register_regularizers(register):
        register(Fails())
"""


def _trials(folder):
    kept = ["arch", "reg", "trial_id", "status", "hp.rate", "hp.strength"]
    return load_trials(folder)[kept].sort_values(["reg", "trial_id"]).reset_index(drop=True)


def test_workers_find_what_one_process_finds(cli, tmp_path):
    """The same seeded searches, two cells at once in workers or one after another here:
    the same trials, the same values, the same best, all recorded by the parent."""
    regs = ["--reg", "dropout,l2"]
    local = tmp_path / "local"
    here = tmp_path / "here"
    two = cli("tune", *BASE, *regs, "--workers", "2", "--experiment", str(local))
    assert two.returncode == 0, two.stderr
    one = cli("tune", *BASE, *regs, "--executor", "inprocess", "--experiment", str(here))
    assert one.returncode == 0, one.stderr
    assert _trials(local).equals(_trials(here)) and len(_trials(local)) == 4
    scores = [load_trials(f).sort_values(["reg", "trial_id"])["score"] for f in (local, here)]
    assert scores[0].tolist() == pytest.approx(scores[1].tolist(), abs=0.02)
    assert Store(local).best_values() == Store(here).best_values()
    # lines of cells searched at once name their cell
    assert "model1 + l2 trial 0: ok" in two.stdout and "model1 + dropout trial 1" in two.stdout


def test_a_cell_failing_in_its_worker_keeps_the_others(cli_subprocess, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "regbench-fails", "rb_fails", FAILING)
    out = tmp_path / "exp"
    done = cli_subprocess(
        "tune",
        *BASE,
        "--reg",
        "dropout,fails",
        "--experiment",
        str(out),
        env={"PYTHONPATH": str(site)},
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # (keras-tuner prints each failed trial's)
    assert last.startswith("regbench: error: all 2 trials of model1/fails failed")
    assert last.endswith("ValueError: boom in a worker")
    trials = load_trials(out)
    assert sorted(trials["status"]) == ["failed", "failed", "ok", "ok"]
    assert set(Store(out).best_values()) == {("model1", "dropout")}


def test_an_observer_hears_each_search_start_its_trials_and_its_best(tmp_path):
    import regbench
    from regbench.study.settings import Observer

    heard: list[tuple[str, str]] = []

    class Heard(Observer):
        def search_started(self, arch, reg):
            heard.append((reg, "started"))

        def trial_ended(self, arch, reg, trial):
            heard.append((reg, f"trial {trial['trial_id']} {trial['status']}"))

        def search_ended(self, arch, reg, best):
            heard.append((reg, f"best {sorted(best['values'])}"))

    found = regbench.tune(
        arch="model1",
        reg="dropout,l2",
        dataset="digits",
        epochs=1,
        max_trials=2,
        workers=2,
        experiment=tmp_path / "exp",
        observer=Heard(),
    )
    assert set(found) == {("model1", "dropout"), ("model1", "l2")}
    for reg, name in (("dropout", "rate"), ("l2", "strength")):
        mine = [event for r, event in heard if r == reg]
        assert mine == ["started", "trial 0 ok", "trial 1 ok", f"best ['{name}']"]
