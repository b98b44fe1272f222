"""The vmapped engine: a cell's seeds trained as one JAX program give the standard path's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from regbench.engine.plan import Execution, Protocol, RunSpec
from regbench.engine.vmapped import unsupported

# one worker trains the module's cells once, for every test that compares them
pytestmark = pytest.mark.xdist_group("vmapped")

EPOCHS = 2

SEEDS = 3

# Runs in a fresh process: KERAS_BACKEND must be set before Keras is imported. With "drop-l2" the
# vmapped engine's model forgets its penalty losses (the mutant the equivalence test must catch).
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process
    from regbench.engine.plan import Execution, Protocol, RunSpec

    reg, engine, epochs, seeds, mutant = sys.argv[1:6]
    if mutant == "drop-l2":
        import keras

        real = keras.Model.stateless_call

        def without_penalties(self, *args, return_losses=False, **kwargs):
            out = real(self, *args, return_losses=return_losses, **kwargs)
            return (*out[:2], []) if return_losses else out

        keras.Model.stateless_call = without_penalties
    specs = [
        RunSpec(arch="model1", reg=reg, params={}, seed=seed,
                protocol=Protocol(dataset="digits", epochs=int(epochs)),
                execution=Execution(engine=engine))
        for seed in range(int(seeds))
    ]
    out = []
    run_in_process(specs, ExecutorOptions(), Hooks(on_result=lambda r: out.append(
        {"row": {k: v for k, v in r.row.items() if k not in ("summary", "traceback")},
         "epochs": r.epochs})))
    print("RESULT " + json.dumps(out, default=str))
    """
)


def _train(reg: str, engine: str, mutant: str = "-") -> list[dict]:
    pytest.importorskip("jax", reason="the vmapped engine needs JAX: pip install 'regbench[jax]'")
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, reg, engine, str(EPOCHS), str(SEEDS), mutant],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _spec(reg: str = "dropout", seed: int = 0, **protocol) -> RunSpec:
    return RunSpec(
        arch="model1",
        reg=reg,
        params={},
        seed=seed,
        protocol=Protocol(dataset="digits", **protocol),
        execution=Execution(engine="vmapped"),
    )


def test_the_vmapped_engine_refuses_what_it_cannot_train():
    assert "JAX backend" in unsupported([_spec()], "tensorflow")
    assert "one cell" in unsupported([_spec(), _spec(reg="none", seed=1)], "jax")
    assert "float32" in unsupported([_spec(precision="mixed_float16")], "jax")
    assert unsupported([_spec(seed=s) for s in range(3)], "jax") is None


def test_the_vmapped_engine_refuses_a_batch_rewrite_rather_than_train_without_it(monkeypatch):
    import regbench.engine.vmapped as vmapped
    from regbench.api import Regularizer

    class Swap(Regularizer):
        name = "swap"

        def batch(self, images, targets, params, seed, ctx):
            return images[::-1], targets[::-1]

    real = vmapped.registry()

    class WithSwap:
        def get(self, kind, name):
            return Swap() if name == "swap" else real.get(kind, name)

    monkeypatch.setattr(vmapped, "registry", WithSwap)
    assert "rewrite training batches (swap)" in unsupported([_spec(reg="swap")], "jax")


# the figures compared: accuracies and losses, held-out and training, the last epoch's and the
# clean-data evaluation's
COMPARED = (
    "val_accuracy",
    "val_loss",
    "train_accuracy",
    "train_loss",
    "train_accuracy_running",
    "train_loss_running",
)
SPREADS = 4.0  # how many standard errors of the difference two engines' means may be apart


def _figures(results: list[dict]) -> dict[str, list[float]]:
    """Each compared figure per seed; the running training loss is the last epoch's."""
    figures = {name: [float(r["row"][name]) for r in results] for name in COMPARED[:-1]}
    figures["train_loss_running"] = [
        next(
            e["value"]
            for e in sorted(r["epochs"], key=lambda e: -e["epoch"])
            if (e["split"], e["metric"]) == ("train", "loss")
        )
        for r in results
    ]
    return figures


def mismatches(ours: list[dict], theirs: list[dict]) -> dict[str, tuple[float, float]]:
    """The figures whose means differ by more than SPREADS standard errors of the difference,
    the standard error from the seed-to-seed spread of both engines: name -> (gap, tolerance)."""
    import statistics

    out = {}
    a, b = _figures(ours), _figures(theirs)
    for name in COMPARED:
        gap = abs(statistics.fmean(a[name]) - statistics.fmean(b[name]))
        spread = statistics.variance(a[name]) + statistics.variance(b[name])
        tolerance = SPREADS * (spread / len(a[name])) ** 0.5
        if gap > tolerance:
            out[name] = (gap, tolerance)
    return out


@pytest.fixture(scope="module")
def trained():
    """Each cell's seeds through both engines, trained once for the tests below."""
    cache: dict[tuple[str, str, str], list[dict]] = {}

    def get(reg: str, engine: str, mutant: str = "-") -> list[dict]:
        if (reg, engine, mutant) not in cache:
            cache[reg, engine, mutant] = _train(reg, engine, mutant)
        return cache[reg, engine, mutant]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("reg", ["l2", "dropout", "batchnorm"])
def test_the_two_engines_are_equivalent(trained, reg):
    """Seeds trained together (vmapped) and one by one (Keras fit) give rows with the same
    columns, the same runs and the same figures within the seed-to-seed spread."""
    vmapped, standard = trained(reg, "vmapped"), trained(reg, "standard")
    for results, engine in ((vmapped, "vmapped"), (standard, "standard")):
        assert [r["row"]["status"] for r in results] == ["ok"] * SEEDS, results[0]["row"]
        assert {r["row"]["engine"] for r in results} == {engine}
    for ours, theirs in zip(vmapped, standard, strict=True):
        assert ours["row"]["seed"] == theirs["row"]["seed"]
        filled = {k for k, v in ours["row"].items() if v is not None}
        assert filled == {k for k, v in theirs["row"].items() if v is not None}
        assert ours["row"]["epochs_run"] == ours["row"]["kept_epoch"] == EPOCHS
        keys = {(e["epoch"], e["split"], e["metric"]) for e in ours["epochs"]}
        assert keys == {(e["epoch"], e["split"], e["metric"]) for e in theirs["epochs"]}
        for key in ("total_params", "trainable_params", "n_train", "n_val", "initial_loss"):
            assert ours["row"][key] == pytest.approx(theirs["row"][key], rel=1e-5), key
        assert ours["row"]["test_accuracy"] is None  # a grid run never reads the test split
    assert len({r["row"]["val_accuracy"] for r in vmapped}) == SEEDS  # each seed its own
    assert mismatches(vmapped, standard) == {}


@pytest.mark.slow
def test_the_equivalence_test_catches_an_engine_that_drops_the_l2_term(trained):
    """The mutant: the vmapped engine's model without its penalty losses. Its losses fall
    outside the spread (the penalty is ~0.9 of a ~2.3 loss at the start), so the comparison
    above fails; the accuracies alone would not tell."""
    missing = mismatches(trained("l2", "vmapped", "drop-l2"), trained("l2", "standard"))
    assert {"val_loss", "train_loss", "train_loss_running"} <= set(missing), missing
