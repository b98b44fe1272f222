"""The JAX fast path: a pack of runs (engine.packing) trained together as one XLA program.

At batch 64 the lab's models are bound by per-step host work, not by the accelerator: on an
H100 a scanned step of model3 takes 0.27 ms, a step called from Python 1.06 ms
(benchmarks/RESULTS.md 5b), and runs in separate processes take turns on the GPU. Here each
member of the pack (a cell's seeds, or several cells of one architecture) is stepped through its
own model's stateless API (`model.stateless_call`, `optimizer.stateless_apply`) side by side
with the others, and on an accelerator a whole epoch of steps runs in one call (`lax.scan`) over
data already on the device, with every program compiled at once in parallel before the first
epoch and kept in JAX's persistent cache. The protocol is the standard trainer's: the same
compiled model, optimizer and loss, batch size, epochs, a shuffle per seed and epoch, the last
partial batch trained; the same metrics and result rows, with `engine` = 'vmapped' and
`program_runs` saying how many runs shared the program whose times the row records. A
regularizer's own training step (SAM, R-Drop) and weight average (SWA, EMA) run inside the
program, as regbench's functional step (engine.training); regularizer callbacks (a Keras fit
loop feature) and batch rewrites (Mixup, CutMix: the standard trainer's soft-target wrapper)
make a skipped cell with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from regbench.design.engine_sides import engine_cannot
from regbench.design.plan import RunSpec
from regbench.engine import averaging, clean_eval, tensorboard, training
from regbench.engine.environment import environment
from regbench.engine.outcome import (
    Progress,
    Recorder,
    RunResult,
    Scores,
    evaluates,
    failure,
    finished,
    now,
    outcome,
    reads_test,
    skip_if_not_applicable,
    skipped_result,
)
from regbench.engine.packing import pack_key
from regbench.engine.program import FIGURES, Program, in_batches
from regbench.engine.trainer import build_and_compile, context_for
from regbench.plugins.context import RunContext
from regbench.plugins.datasets import Splits
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import Registry, registry


def unsupported(specs: Sequence[RunSpec], backend: str, plugins: Registry) -> str | None:
    """Why these specs cannot be trained together here (None: they can)."""
    if backend != "jax":
        return f"the vmapped engine needs the JAX backend (KERAS_BACKEND=jax); got {backend}"
    if len({pack_key(s) for s in specs}) != 1:
        return (
            "the vmapped engine trains runs of one architecture, stage and protocol together; "
            "got several"
        )
    if specs[0].protocol.precision != "float32":
        return f"the vmapped engine trains in float32 only; got {specs[0].protocol.precision}"
    for spec in specs:
        reason = cannot_run(spec, plugins)
        if reason:
            return reason
    return None


def cannot_run(spec: RunSpec, plugins: Registry) -> str | None:
    """Why the vmapped engine cannot train this run's regularizer (design.engine_sides; its
    cell is then skipped with the reason)."""
    reg = plugins.get("regularizers", spec.reg)
    run = RunContext(epochs=spec.protocol.epochs, batch_size=spec.protocol.batch_size)
    return engine_cannot("vmapped", spec.reg, reg, reg.resolve(spec.params), run)


def _skip_if_cannot_run(spec: RunSpec, plugins: Registry) -> RunResult | None:
    reason = cannot_run(spec, plugins)
    return skipped_result(replace(spec, skip=reason)) if reason else None


def train_pack(
    specs: Sequence[RunSpec],
    load_data: Callable[[RunSpec], Splits],
    models_dir: Path | None,
    progress: Progress | None = None,
) -> list[RunResult]:
    """Train every spec (a pack: engine.packing) at once; any exception becomes a `failed` row
    for each of them instead of escaping. Cells not applicable are skipped, and a pack of
    several cells that fails as a whole (a plugin raising as its model is built) is trained
    again cell by cell, so one cell's failure is its own."""
    # here, so the parent never loads Keras
    plugins = registry()
    skipped = [skip_if_not_applicable(s, plugins) or _skip_if_cannot_run(s, plugins) for s in specs]
    todo = [s for s, result in zip(specs, skipped, strict=True) if result is None]
    results = _train_together(todo, load_data, models_dir, progress, plugins) if todo else []
    cells = {s.cell_hash: [m for m in todo if m.cell_hash == s.cell_hash] for s in todo}
    if len(cells) > 1 and all(r.row["status"] == "failed" for r in results):
        results = [
            r for cell in cells.values() for r in train_pack(cell, load_data, models_dir, progress)
        ]
    trained = {r.row["run_id"]: r for r in results}
    return [result or trained[s.run_id] for s, result in zip(specs, skipped, strict=True)]


def _train_together(specs, load_data, models_dir, progress, plugins) -> list[RunResult]:
    clock = time.perf_counter()
    keras = import_keras()
    rows: list[dict[str, Any]] = [{**s.row(), "started_at": now()} for s in specs]
    recorders = [Recorder(s, progress) for s in specs]
    try:
        reason = unsupported(specs, keras.backend.backend(), plugins)
        if reason:
            raise ValueError(reason)
        env = environment()
        datas = _load(specs, load_data)
        for row, data in zip(rows, datas, strict=True):
            row.update(env)
            row.update(data.sizes)
        for recorder in recorders:
            recorder.log = tensorboard.open_log(recorder.spec)
        outs = _train(keras, list(specs), datas, models_dir, recorders, plugins)
        for row, out in zip(rows, outs, strict=True):
            row.update(out)
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit fails its runs only
        for row in rows:
            row.update(failure(exc))
    finally:
        for row, recorder in zip(rows, recorders, strict=True):
            if recorder.log is not None:
                recorder.log.close(row)
        keras.backend.clear_session()  # and a full garbage collection (free_memory=True)
    return [
        RunResult(finished(row, clock), recorder.epoch_rows())
        for row, recorder in zip(rows, recorders, strict=True)
    ]


def _load(specs: Sequence[RunSpec], load_data: Callable[[RunSpec], Splits]) -> list[Splits]:
    """Each member's data, loaded in seed order (a worker keeps one dataset loaded at a time:
    members of one seed share one copy)."""
    datas: dict[int, Splits] = {}
    for index in sorted(range(len(specs)), key=lambda i: specs[i].seed):
        datas[index] = load_data(specs[index])
    return [datas[i] for i in range(len(specs))]


def _train(keras, specs, datas, models_dir, recorders, plugins) -> list[dict[str, Any]]:
    import jax.numpy as jnp

    protocol = specs[0].protocol
    final = specs[0].stage == "final"
    arch = plugins.get("architectures", specs[0].arch)
    unique = list({id(d): d for d in datas}.values())  # members of one seed share their data
    data_of = [next(k for k, d in enumerate(unique) if d is data) for data in datas]
    fits = [
        (np.concatenate([d.x_train, d.x_val]), np.concatenate([d.y_train, d.y_val]))
        if final
        else (d.x_train, d.y_train)
        for d in unique
    ]
    if len({len(x) for x, _ in fits}) != 1:
        raise ValueError("the members' training sets differ in size; use the standard engine")
    regs = [plugins.get("regularizers", s.reg) for s in specs]
    params = [reg.resolve(s.params) for reg, s in zip(regs, specs, strict=True)]
    n_fit = len(fits[0][0])
    runs = [
        context_for(protocol, d, s.seed, s.stage, n_fit) for s, d in zip(specs, datas, strict=True)
    ]
    models = [
        build_and_compile(arch, reg, values, protocol, d, s.seed, s.execution, run)
        for reg, values, s, d, run in zip(regs, params, specs, datas, runs, strict=True)
    ]
    for model in models:
        model.optimizer.build(model.trainable_variables)

    def stacked(arrays, dtype=None):
        return jnp.asarray(np.stack(arrays) if dtype is None else np.stack(arrays).astype(dtype))

    x_fit, y_fit = stacked([x for x, _ in fits]), stacked([y for _, y in fits], np.int32)
    x_val, y_val = stacked([d.x_val for d in unique]), stacked([d.y_val for d in unique], np.int32)
    clean = [clean_eval.subset(x, y) for x, y in fits]
    x_clean, y_clean = stacked([x for x, _ in clean]), stacked([y for _, y in clean], np.int32)
    program = Program(models, data_of)
    state = program.state(models)
    batch = protocol.batch_size
    shufflers = [np.random.default_rng(s.seed) for s in specs]
    x_eval, y_eval = (x_clean, y_clean) if final else (x_val, y_val)
    compile_start = time.perf_counter()
    _remember_compiled()
    program.prepare(state, x_fit, y_fit, program.step_shapes(n_fit, batch), x_eval, y_eval)
    compile_time = time.perf_counter() - compile_start
    initial = program.evaluate(state, x_clean, y_clean)
    for recorder, loss, share, data in zip(recorders, *initial[:2], datas, strict=True):
        recorder.start(Scores(float(loss), float(share)), data.classes)
    start = time.perf_counter()
    stopped = [False] * len(specs)
    for epoch in range(1, protocol.epochs + 1):
        order = np.stack([r.permutation(n_fit) for r in shufflers]).astype(np.int32)
        sums = np.zeros((len(specs), len(FIGURES)))
        for batches in in_batches(order, batch):
            state, more = program.train_steps(state, x_fit, y_fit, batches)
            sums += more
        logs = [dict(zip(FIGURES, (float(v) for v in row / n_fit), strict=True)) for row in sums]
        if not final:
            for log, *figures in zip(logs, *program.evaluate(state, x_val, y_val), strict=True):
                log.update({f"val_{k}": float(v) for k, v in zip(FIGURES, figures, strict=True)})
        elapsed = time.perf_counter() - start
        for i, (recorder, log) in enumerate(zip(recorders, logs, strict=True)):
            if not stopped[i]:  # a diverged member's later epochs are not its history
                stopped[i] = recorder.epoch_end(epoch, log, elapsed)
        if all(stopped):
            break
    train_time = time.perf_counter() - start
    eval_start = time.perf_counter()
    for i, (model, recorder) in enumerate(zip(models, recorders, strict=True)):
        _assign(model, *program.member(state, i))
        if evaluates(recorder):
            x_own = fits[data_of[i]][0]
            recorder.final_weights = averaging.finish(
                model, training.deployable(model), x_own, protocol.batch_size
            )
    averaged = [r.final_weights == "average" for r in recorders]
    if any(averaged):  # the averaged members' weights, as the models now hold them
        state = program.state(models)
        if not final:
            vloss, vcorrect, _ = program.evaluate(state, x_val, y_val)
            for k, own in enumerate(averaged):
                if own:
                    recorders[k].final_val = Scores(float(vloss[k]), float(vcorrect[k]))
    clean_scores = program.evaluate(state, x_clean, y_clean)
    test_scores = None
    if any(reads_test(s) for s in specs):
        x_test = stacked([d.x_test for d in unique])
        test_scores = program.evaluate(state, x_test, stacked([d.y_test for d in unique], np.int32))
    eval_time = time.perf_counter() - eval_start
    outs = []
    for i, (s, model, recorder) in enumerate(zip(specs, models, recorders, strict=True)):
        good = evaluates(recorder)
        out = outcome(
            s,
            recorder,
            network=training.deployable(model),
            optimizer=model.optimizer,
            train_time=train_time,
            n_train=n_fit,
            n_val=0 if final else x_val.shape[1],
            clean=Scores(float(clean_scores[0][i]), float(clean_scores[1][i])) if good else None,
            test=None
            if test_scores is None or not good or not reads_test(s)
            else Scores(float(test_scores[0][i]), float(test_scores[1][i])),
            models_dir=models_dir,
        )
        outs.append(
            {
                **out,
                "pipeline": "device",
                "eval_time_s": eval_time,
                "compile_time_s": compile_time,
                "program_runs": len(specs),
                "passes_per_step": training.passes_per_step(model),
                "xla": True,  # one jax.jit program
            }
        )
    return outs


def _remember_compiled() -> None:
    """JAX's persistent compilation cache, in regbench's cache folder ($REGBENCH_CACHE or
    ~/.cache/regbench, under jax/): a second run of the same grid, or a resumed one, loads its
    programs instead of compiling them again."""
    import jax

    from regbench.plugins.datasets import default_cache_dir

    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _assign(model, trainable: list[Any], non_trainable: list[Any]) -> None:
    """Copy a member's trained values back into its Keras model."""
    for variable, value in zip(model.trainable_variables, trainable, strict=True):
        variable.assign(value)
    for variable, value in zip(model.non_trainable_variables, non_trainable, strict=True):
        variable.assign(value)
