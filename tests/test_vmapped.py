"""The vmapped engine: a cell's seeds trained as one JAX program give the standard path's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.engine.vmapped import unsupported
from regbench.plugins.manager import registry

# one worker trains the module's cells once, for every test that compares them
pytestmark = pytest.mark.xdist_group("vmapped")

EPOCHS = 2

SEEDS = 3

# Runs in a fresh process: KERAS_BACKEND must be set before Keras is imported. The mutants the
# equivalence test must catch: with "drop-l2" the vmapped engine's model forgets its penalty
# losses; with "grad-l2" it reports them in its loss but trains without their gradient.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process
    from regbench.design.plan import Execution, Protocol, RunSpec

    reg, engine, epochs, seeds, mutant, params = sys.argv[1:7]
    if mutant == "drop-l2":
        import keras

        real = keras.Model.stateless_call

        def without_penalties(self, *args, return_losses=False, **kwargs):
            out = real(self, *args, return_losses=return_losses, **kwargs)
            return (*out[:2], []) if return_losses else out

        keras.Model.stateless_call = without_penalties
    if mutant == "grad-l2":
        import jax, keras

        real = keras.Model.stateless_call

        def penalties_without_gradient(self, *args, return_losses=False, **kwargs):
            out = real(self, *args, return_losses=return_losses, **kwargs)
            if not return_losses:
                return out
            return (*out[:2], [jax.lax.stop_gradient(loss) for loss in out[2]])

        keras.Model.stateless_call = penalties_without_gradient
    specs = [
        RunSpec(arch="model1", reg=reg, params=json.loads(params), seed=seed,
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


def _on_jax(script: str, *args: str) -> str:
    """What `script` prints after RESULT, run in a fresh process on JAX's CPU backend."""
    pytest.importorskip("jax", reason="the vmapped engine needs JAX: pip install 'regbench[jax]'")
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=1200
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    return lines[-1][len("RESULT ") :]


def _train(reg: str, engine: str, mutant: str = "-", params: str = "{}") -> list[dict]:
    return json.loads(_on_jax(SCRIPT, reg, engine, str(EPOCHS), str(SEEDS), mutant, params))


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
    assert "JAX backend" in unsupported([_spec()], "tensorflow", registry())
    assert unsupported([_spec(), _spec(reg="none", seed=1)], "jax", registry()) is None  # one pack
    other_arch = RunSpec(**{**_spec().__dict__, "arch": "model2"})
    assert "one architecture" in unsupported([_spec(), other_arch], "jax", registry())
    assert "one architecture" in unsupported([_spec(), _spec(epochs=3)], "jax", registry())
    assert "float32" in unsupported([_spec(precision="mixed_float16")], "jax", registry())
    assert unsupported([_spec(seed=s) for s in range(3)], "jax", registry()) is None


def test_the_vmapped_engine_refuses_a_batch_rewrite_rather_than_train_without_it():
    from regbench.api import Regularizer

    class Swap(Regularizer):
        name = "swap"

        def batch(self, images, targets, params, seed, ctx):
            return images[::-1], targets[::-1]

    real = registry()

    class WithSwap:
        def get(self, kind, name):
            return Swap() if name == "swap" else real.get(kind, name)

    reason = unsupported([_spec(reg="swap")], "jax", WithSwap())
    assert "rewrite training batches, which swap needs" in reason


def test_the_plan_skips_what_the_vmapped_engine_cannot_run_with_the_reason(monkeypatch):
    """Each engine declares the sides it lacks (design.engine_sides): on the vmapped engine a
    batch rewrite or a callback regularizer is a skipped cell at plan time, with the reason;
    the standard engine plans the same cells to train."""
    from doubles import RegularizersPlugin, registry_with

    from regbench.api import Regularizer
    from regbench.design.plan import make_plan

    class Swap(Regularizer):
        name = "swap"

        def batch(self, images, targets, params, seed, ctx):
            return images[::-1], targets[::-1]

    class Calls(Regularizer):
        name = "calls"

        def callbacks(self, params):
            return [object()]

    class Quiet(Regularizer):  # overrides callbacks, but has none: nothing to refuse
        name = "quiet"
        hparams = ()

        def callbacks(self, params):
            return []

        def loss(self, params, loss):
            return loss * 2

    registry = registry_with(RegularizersPlugin(Swap(), Calls(), Quiet()))
    protocol = Protocol(dataset="digits", epochs=1)

    def skips(engine):
        specs = make_plan(
            registry,
            ["model1"],
            ["swap", "calls", "quiet"],
            [0],
            protocol,
            execution=Execution(engine=engine),
        )
        return {s.reg: s.skip for s in specs}

    vmapped = skips("vmapped")
    assert vmapped["swap"] == (
        "the vmapped engine cannot rewrite training batches, which swap needs; "
        "use --engine standard"
    )
    assert (
        "cannot run training callbacks (a Keras fit feature), which calls needs"
        in (vmapped["calls"])
    )
    assert vmapped["quiet"] is None
    assert skips("standard") == {"swap": None, "calls": None, "quiet": None}


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
ALPHA = 1e-3  # per figure: with 18 figures compared, a false alarm about 2% of the time


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
    """The figures whose means differ beyond Welch's t-test at ALPHA, the spread taken from the
    seeds of both engines: name -> (gap, tolerance). Near chance, accuracy jumps between seeds
    (model1+l2 after 2 epochs: 0.11-0.40), so few seeds need the t quantile, not a normal one."""
    import statistics

    from scipy.stats import t

    out = {}
    a, b = _figures(ours), _figures(theirs)
    for name in COMPARED:
        n = len(a[name])
        va, vb = statistics.variance(a[name]) / n, statistics.variance(b[name]) / n
        gap = abs(statistics.fmean(a[name]) - statistics.fmean(b[name]))
        df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1)) if va + vb else 1.0
        tolerance = float(t.ppf(1 - ALPHA / 2, df)) * (va + vb) ** 0.5
        if gap > tolerance:
            out[name] = (gap, tolerance)
    return out


# Same initial weights, same batch order: one epoch through Keras fit and through the vmapped
# program must give the same weights and the same evaluation (model1 on digits: bit for bit).
STEPS = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    import numpy as np, keras, jax.numpy as jnp
    from regbench.builtins.datasets import Digits
    from regbench.design.plan import Protocol
    from regbench.engine.trainer import build_and_compile, context_for
    from regbench.engine.program import Program, in_batches
    from regbench.plugins.manager import registry

    reg_name, mutant = sys.argv[1:3]
    if mutant == "drop-l2":
        real = keras.Model.stateless_call

        def without_penalties(self, *args, return_losses=False, **kwargs):
            out = real(self, *args, return_losses=return_losses, **kwargs)
            return (*out[:2], []) if return_losses else out
    data = Digits().load(0, {})
    protocol = Protocol(dataset="digits", epochs=1)
    reg = registry().get("regularizers", reg_name)
    arch = registry().get("architectures", "model1")
    run = context_for(protocol, data, 0, "grid", len(data.x_train))
    fit, stepped = (build_and_compile(arch, reg, {}, protocol, data, 0, None, run) for _ in "ab")
    stepped.set_weights(fit.get_weights())
    fit.fit(data.x_train, data.y_train, batch_size=64, epochs=1, shuffle=False, verbose=0)
    if mutant == "drop-l2":
        keras.Model.stateless_call = without_penalties
    stepped.optimizer.build(stepped.trainable_variables)
    program = Program([stepped])
    state = program.state([stepped])
    x, y = jnp.asarray(data.x_train[None]), jnp.asarray(data.y_train[None].astype(np.int32))
    for batches in in_batches(np.arange(len(x[0]), dtype=np.int32)[None], 64):
        state, _ = program.train_steps(state, x, y, batches)
    gap = max(float(np.max(np.abs(np.asarray(v.value) - np.asarray(s))))
              for v, s in zip(fit.trainable_variables, program.member(state, 0)[0]))
    xv, yv = jnp.asarray(data.x_val[None]), jnp.asarray(data.y_val[None].astype(np.int32))
    loss, accuracy, _ = program.evaluate(state, xv, yv)
    keras_scores = fit.evaluate(data.x_val, data.y_val, verbose=0, return_dict=True)
    print("RESULT", gap, abs(float(loss[0]) - keras_scores["loss"]),
          abs(float(accuracy[0]) - keras_scores["accuracy"]))
    """
)


def _steps(reg: str, mutant: str = "-") -> list[float]:
    return [float(v) for v in _on_jax(STEPS, reg, mutant).split()]


@pytest.mark.slow
@pytest.mark.parametrize("reg", ["l2", "batchnorm"])
def test_the_engines_take_the_same_steps(reg):
    """The mechanics, without seed noise: same start, same batches, same weights after an
    epoch, and the same validation loss and accuracy."""
    weights, loss, accuracy = _steps(reg)
    assert weights < 1e-5 and loss < 1e-5 and accuracy < 1e-6, (weights, loss, accuracy)


@pytest.mark.slow
def test_the_same_steps_catch_an_engine_that_drops_the_l2_term():
    weights, loss, _ = _steps("l2", "drop-l2")
    assert weights > 1e-4 and loss > 0.1, (weights, loss)  # 50x the tolerance above


@pytest.fixture(scope="module")
def trained():
    """Each cell's seeds through both engines, trained once for the tests below."""
    cache: dict[tuple[str, str, str, str], list[dict]] = {}

    def get(reg: str, engine: str, mutant: str = "-", params: str = "{}") -> list[dict]:
        if (reg, engine, mutant, params) not in cache:
            cache[reg, engine, mutant, params] = _train(reg, engine, mutant, params)
        return cache[reg, engine, mutant, params]

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
        # the vmapped engine compiles ahead and says how long; Keras fit compiles inside it
        assert filled - {"compile_time_s"} == {k for k, v in theirs["row"].items() if v is not None}
        assert ours["row"]["compile_time_s"] > 0
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


# L2 at its bound, where its gradient shapes training: 42 SGD steps at 0.01 shrink the weights by
# 2 * 0.01 * 0.1 each, the penalty (most of an 11.3 starting loss) by 15%. At the default 0.01
# they shrink it by 1.7%: the mutant below moves the losses there by 0.013-0.020, well inside
# the tolerances of 0.05-0.08 that the seeds' spread sets, so no comparison could tell.
STRONG_L2 = json.dumps({"strength": 0.1})


@pytest.mark.slow
def test_the_equivalence_test_catches_an_engine_that_trains_without_the_l2_gradient(trained):
    """The mutant: the vmapped engine's penalties reported in its loss but cut off from its
    gradient (jax.lax.stop_gradient), so its weights never shrink. Where the penalty's
    gradient shapes training, the correct engine's losses match and the mutant's do not
    (val_loss 1.38 apart, beyond a tolerance of 0.21; the accuracies alone would not tell)."""
    standard = trained("l2", "standard", params=STRONG_L2)
    assert mismatches(trained("l2", "vmapped", params=STRONG_L2), standard) == {}
    mutant = mismatches(trained("l2", "vmapped", "grad-l2", STRONG_L2), standard)
    assert {"val_loss", "train_loss", "train_loss_running"} <= set(mutant), mutant


def test_compiled_programs_are_remembered_in_regbenchs_cache(tmp_path, monkeypatch):
    """A second run of a grid loads its programs (on this machine: 28.3 s of compilation fell
    to 7.3 s of tracing for a 3-seed model1 cell; benchmarks/RESULTS.md 9)."""
    jax = pytest.importorskip("jax")
    from regbench.engine.vmapped import _remember_compiled

    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path))
    before = jax.config.jax_compilation_cache_dir
    try:
        _remember_compiled()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


# A pack: several cells (and their seeds) as one program, each member with its own model,
# values and optimizer. What a member computes must be what it computes in a program of its own.
PACK = textwrap.dedent(
    """
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process
    from regbench.design.plan import Execution, Protocol, RunSpec

    pack = None if sys.argv[1] == "-" else int(sys.argv[1])
    specs = [
        RunSpec(arch="model1", reg=reg, params={}, seed=seed,
                protocol=Protocol(dataset="digits", epochs=1),
                execution=Execution(engine="vmapped"))
        for reg in ("none", "l2", "dropout", "batchnorm") for seed in (0, 1)
    ]
    out = {}
    keep = ("status", "val_loss", "val_accuracy", "train_loss", "initial_loss", "program_runs")
    run_in_process(specs, ExecutorOptions(pack=pack, devices=["cpu"]), Hooks(
        on_result=lambda r: out.update({r.row["run_id"]: {k: r.row.get(k) for k in keep}})))
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow
def test_a_pack_trains_each_member_as_it_would_train_alone():
    """Four cells x two seeds as one program give every run the figures it gets in its own
    cell's program, to the bit (a member stepped with another's model or values would not)."""
    packed = json.loads(_on_jax(PACK, "8"))
    alone = json.loads(_on_jax(PACK, "-"))
    assert packed.keys() == alone.keys() and len(packed) == 8
    assert {r["program_runs"] for r in packed.values()} == {8}
    assert {r["program_runs"] for r in alone.values()} == {2}
    for run_id, ours in packed.items():
        theirs = alone[run_id]
        assert ours["status"] == theirs["status"] == "ok", run_id
        for key in ("val_loss", "val_accuracy", "train_loss", "initial_loss"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), (run_id, key)
    # the cells differ from each other, so a mix-up of members would show
    assert len({round(r["train_loss"], 6) for r in packed.values()}) == 8


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.sampled_from(["model1", "model2"]),
            st.sampled_from(["none", "l2", "dropout"]),
            st.integers(0, 4),
            st.sampled_from([1, 2]),
        ),
        min_size=1,
        max_size=24,
        unique=True,
    ),
    size=st.none() | st.integers(1, 9),
)
def test_packs_cover_every_run_once_and_only_join_runs_that_share_a_program(runs, size):
    from regbench.engine.packing import pack_key, packs

    specs = [
        RunSpec(
            arch=arch,
            reg=reg,
            params={},
            seed=seed,
            protocol=Protocol(dataset="digits", epochs=epochs),
            execution=Execution(engine="vmapped"),
        )
        for arch, reg, seed, epochs in runs
    ]
    tasks = packs(specs, size)
    assert sorted(s.run_id for task in tasks for s in task) == sorted(s.run_id for s in specs)
    for task in tasks:
        assert len({pack_key(s) for s in task}) == 1
        if size is None:
            assert len({s.cell_hash for s in task}) == 1  # a cell's seeds, all of them
        else:
            assert len(task) <= size
    if size is not None:  # the groups of one key are as even as they can be
        by_key: dict[tuple[str, ...], list[int]] = {}
        for task in tasks:
            by_key.setdefault(pack_key(task[0]), []).append(len(task))
        assert all(max(sizes) - min(sizes) <= 1 for sizes in by_key.values())
    else:
        assert len(tasks) == len({s.cell_hash for s in specs})


# The accelerator's path on this CPU: a whole epoch as one `lax.scan`, and the seeds vmapped
# (benchmarks/bench_gpu_step.py), each against the step-by-step calls the CPU uses by default.
SCAN = textwrap.dedent(
    """
    import os
    os.environ["KERAS_BACKEND"] = "jax"
    import numpy as np, keras, jax.numpy as jnp
    from regbench.builtins.datasets import Digits
    from regbench.design.plan import Protocol
    from regbench.engine.trainer import build_and_compile, context_for
    from regbench.engine.program import Program, in_batches

    data = Digits().load(0, {})
    protocol = Protocol(dataset="digits", epochs=1)
    run = context_for(protocol, data, 0, "grid", len(data.x_train))
    x = jnp.asarray(data.x_train[None, :320])
    y = jnp.asarray(data.y_train[None, :320].astype(np.int32))
    order = np.stack([np.arange(320, dtype=np.int32)] * 2)
    gaps = []
    for pairs, kinds in ((("none", "l2"), ("scan",)), (("dropout", "dropout"), ("scan", "vmap"))):
        results = {}
        for kind in ("calls", *kinds):
            from regbench.plugins.manager import registry
            arch = registry().get("architectures", "model1")
            models = [
                build_and_compile(arch, registry().get("regularizers", r), {}, protocol, data,
                                  0, None, run)
                for r in pairs
            ]
            for model in models:
                model.optimizer.build(model.trainable_variables)
            program = Program(models, [0, 0], scan=kind != "calls", vmap=kind == "vmap")
            state = program.state(models)
            for batches in in_batches(order, 64):
                state, _ = program.train_steps(state, x, y, batches)
            results[kind] = [np.asarray(v) for i in range(2) for v in program.member(state, i)[0]]
            results[kind].append(np.asarray(program.evaluate(state, x, y)[0]))
            keras.backend.clear_session()
        for kind in kinds:
            gaps.append(max(float(np.max(np.abs(a - b)))
                            for a, b in zip(results["calls"], results[kind])))
    print("RESULT", *gaps)
    """
)


@pytest.mark.slow
def test_the_scanned_and_vmapped_paths_step_as_the_cpu_path_does():
    """Five steps of a two-member pack: one scan per epoch (the GPU's path) and vmapped members
    give the weights and losses of one call per step."""
    gaps = [float(v) for v in _on_jax(SCAN).split()]
    assert len(gaps) == 3 and max(gaps) < 1e-5, gaps


def test_pack_is_refused_without_the_vmapped_engine_and_checked_as_a_count():
    from regbench.design.experiment import Experiment
    from regbench.errors import RegbenchError

    with pytest.raises(RegbenchError, match="add --engine vmapped"):
        Experiment.create(arch="model1", reg="none", pack="4")
    with pytest.raises(RegbenchError, match="pack"):
        Experiment.create(arch="model1", reg="none", engine="vmapped", pack="0")
    assert Experiment.create(arch="model1", reg="none", engine="vmapped", pack="4").pack == 4
