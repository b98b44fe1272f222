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

EPOCHS = 2

# Runs in a fresh process: KERAS_BACKEND must be set before Keras is imported.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process
    from regbench.engine.plan import Execution, Protocol, RunSpec

    reg, engine, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    specs = [
        RunSpec(arch="model1", reg=reg, params={}, seed=seed,
                protocol=Protocol(dataset="digits", epochs=epochs),
                execution=Execution(engine=engine))
        for seed in range(3)
    ]
    out = []
    run_in_process(specs, ExecutorOptions(), Hooks(on_result=lambda r: out.append(
        {"row": {k: v for k, v in r.row.items() if k != "summary"}, "epochs": r.epochs})))
    print("RESULT " + json.dumps(out, default=str))
    """
)


def _train(reg: str, engine: str) -> list[dict]:
    pytest.importorskip("jax", reason="the vmapped engine needs JAX: pip install 'regbench[jax]'")
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, reg, engine, str(EPOCHS)],
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


@pytest.mark.slow
@pytest.mark.parametrize("reg", ["dropout", "batchnorm"])
def test_seeds_trained_together_match_the_standard_path(reg):
    vmapped, standard = _train(reg, "vmapped"), _train(reg, "standard")
    for results, engine in ((vmapped, "vmapped"), (standard, "standard")):
        assert [r["row"]["status"] for r in results] == ["ok"] * 3, results[0]["row"].get("error")
        assert {r["row"]["engine"] for r in results} == {engine}
    for ours, theirs in zip(vmapped, standard, strict=True):
        assert ours["row"]["run_id"] == theirs["row"]["run_id"]  # the same runs, same identity
        assert ours["row"]["epochs_run"] == EPOCHS
        keys = {(e["epoch"], e["split"], e["metric"]) for e in ours["epochs"]}
        assert keys == {(e["epoch"], e["split"], e["metric"]) for e in theirs["epochs"]}
        for key in ("total_params", "trainable_params", "n_train", "n_val"):
            assert ours["row"][key] == theirs["row"][key]
    # batch-norm's moving statistics after 2 short epochs make held-out accuracy vary widely
    # between seeds (either engine), so held-out means get a wider tolerance than training's
    # (the clean train accuracy is an inference-mode figure too, so it varies as they do)
    for metric, tolerance in (
        ("train_accuracy_running", 0.06),
        ("train_accuracy", 0.2),
        ("val_accuracy", 0.2),
        ("test_accuracy", 0.2),
    ):
        ours = [r["row"][metric] for r in vmapped]
        theirs = [r["row"][metric] for r in standard]
        assert len(set(ours)) == 3  # each seed its own initialisation, shuffle and dropout
        assert abs(sum(ours) / 3 - sum(theirs) / 3) < tolerance, (metric, ours, theirs)
