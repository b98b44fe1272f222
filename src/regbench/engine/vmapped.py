"""The JAX fast path: the seeds of one cell trained together as one XLA program.

At batch 64 the lab's models are bound by per-step host work, not by the accelerator: on an
H100 a scanned step of model3 takes 0.27 ms, a step called from Python 1.06 ms
(benchmarks/RESULTS.md 5b). Here the seeds' parameters are stacked and stepped through Keras's
stateless API (`model.stateless_call`, `optimizer.stateless_apply`), and on an accelerator a
whole epoch of steps runs in one call (`lax.scan`) over data already on the device, with every
program compiled at once in parallel before the first epoch. The protocol is the
standard trainer's: the same compiled model, optimizer and loss, batch size, epochs, a shuffle
per seed and epoch, the last partial batch trained; the same metrics and result rows, with
`engine` = 'vmapped'. Regularizer callbacks (a Keras fit loop feature) and batch rewrites
(Mixup, CutMix: the standard trainer's soft-target wrapper) are refused with a reason.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regbench.engine import clean_eval, tensorboard
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
)
from regbench.engine.plan import RunSpec
from regbench.engine.trainer import build_and_compile, context_for, run_callbacks
from regbench.plugins.datasets import Splits
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import registry

EVAL_BATCH = 256


def unsupported(specs: Sequence[RunSpec], backend: str) -> str | None:
    """Why these specs cannot be trained together here (None: they can)."""
    if backend != "jax":
        return f"the vmapped engine needs the JAX backend (KERAS_BACKEND=jax); got {backend}"
    if len({s.cell_hash for s in specs}) != 1:
        return "the vmapped engine trains the seeds of one cell together; got several cells"
    spec = specs[0]
    if spec.protocol.precision != "float32":
        return f"the vmapped engine trains in float32 only; got {spec.protocol.precision}"
    reg = registry().get("regularizers", spec.reg)
    if reg.uses_batches:
        return (
            f"the vmapped engine cannot rewrite training batches ({spec.reg}); "
            "use --engine standard"
        )
    return None


def train_seeds(
    specs: Sequence[RunSpec],
    load_data: Callable[[RunSpec], Splits],
    models_dir: Path | None,
    progress: Progress | None = None,
) -> list[RunResult]:
    """Train every spec (the seeds of one cell) at once; any exception becomes a `failed` row
    for each of them instead of escaping."""
    clock = time.perf_counter()
    keras = import_keras()
    # decided here, so the parent never loads Keras
    skipped = [skip_if_not_applicable(s) for s in specs]
    if all(result is not None for result in skipped):
        return [result for result in skipped if result is not None]
    rows: list[dict[str, Any]] = [{**s.row(), "started_at": now()} for s in specs]
    recorders = [Recorder(s, progress) for s in specs]
    try:
        reason = unsupported(specs, keras.backend.backend())
        if reason:
            raise ValueError(reason)
        env = environment()
        datas = [load_data(s) for s in specs]
        for row, data in zip(rows, datas, strict=True):
            row.update(env)
            row.update(data.sizes)
        for recorder in recorders:
            recorder.log = tensorboard.open_log(recorder.spec)
        outs = _train(keras, list(specs), datas, models_dir, recorders)
        for row, out in zip(rows, outs, strict=True):
            row.update(out)
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit fails its runs only
        for row in rows:
            row.update(failure(exc))
    finally:
        for row, recorder in zip(rows, recorders, strict=True):
            if recorder.log is not None:
                recorder.log.close(row)
        keras.backend.clear_session()
        gc.collect()
    return [
        RunResult(finished(row, clock), recorder.epoch_rows())
        for row, recorder in zip(rows, recorders, strict=True)
    ]


def _stack(variables_per_model: list[list[Any]]) -> list[Any]:
    import jax.numpy as jnp

    return [jnp.stack([v.value for v in group]) for group in zip(*variables_per_model, strict=True)]


class _Program:
    """The jitted train and evaluation functions of one compiled template model, over seeds."""

    def __init__(
        self,
        keras,
        template: Any,
        scan: bool | None = None,
        vmap: bool = False,
        unroll: int = 1,
    ) -> None:
        """`scan`/`vmap` default to what measured fastest on the backend (see below);
        benchmarks/bench_gpu_step.py sets them to compare."""
        import jax
        import jax.numpy as jnp

        loss_fn = template.loss if callable(template.loss) else keras.losses.get(template.loss)
        optimizer = template.optimizer

        def forward(tv, ntv, x, y, training):
            y_pred, ntv, losses = template.stateless_call(
                tv, ntv, x, training=training, return_losses=True
            )
            loss = loss_fn(y, y_pred)
            if losses:
                loss = loss + sum(losses)
            correct = jnp.sum(jnp.argmax(y_pred, axis=-1) == y)
            return loss, (ntv, correct)

        def train_step(tv, ntv, ov, x, y):
            grad = jax.value_and_grad(forward, has_aux=True)
            (loss, (ntv, correct)), grads = grad(tv, ntv, x, y, True)
            tv, ov = optimizer.stateless_apply(ov, grads, tv)
            return tv, ntv, ov, loss, correct

        def eval_step(tv, ntv, x, y, mask):
            """Summed loss and correct count over the rows where `mask` is 1 (the padding of a
            last, partial batch is 0), so every evaluation batch has one shape."""
            y_pred, _, losses = template.stateless_call(
                tv, ntv, x, training=False, return_losses=True
            )
            total = loss_fn(y, y_pred, sample_weight=mask) * mask.shape[0]  # mean over the batch
            if losses:
                total = total + sum(losses) * jnp.sum(mask)
            correct = jnp.sum((jnp.argmax(y_pred, axis=-1) == y) * mask)
            return total, correct

        # XLA's CPU backend runs convolutions inside a loop (scan, map) ~10x slower than the
        # same step called on its own: on CPU each step is one call, elsewhere a whole epoch is
        # one scan. Vmapping the seeds turns their convolutions into grouped ones, which are
        # slower on both (an H100 step of model3's 3 seeds: 1.00 ms vmapped, 0.81 ms written
        # out per seed; benchmarks/RESULTS.md 5b), so by default each seed's step is written out.
        self.scan = jax.default_backend() != "cpu" if scan is None else scan
        if vmap:
            seeds_step, seeds_eval = jax.vmap(train_step), jax.vmap(eval_step)
        else:
            seeds_step, seeds_eval = _unrolled(train_step), _unrolled(eval_step)

        def take(a, rows):  # each seed's rows of its own data
            return jnp.stack([a[i][rows[i]] for i in range(a.shape[0])])

        def steps(state, x, y, batches):
            """Steps over `batches` (steps, seeds, batch) of row indices."""

            def body(carry, rows):
                tv, ntv, ov, loss_sum, correct_sum = carry
                tv, ntv, ov, loss, correct = seeds_step(tv, ntv, ov, take(x, rows), take(y, rows))
                n = rows.shape[1]
                return (tv, ntv, ov, loss_sum + loss * n, correct_sum + correct), None

            seeds = x.shape[0]
            start = (*state, jnp.zeros(seeds, jnp.float32), jnp.zeros(seeds, jnp.int32))
            if self.scan:
                carry = jax.lax.scan(body, start, batches, unroll=unroll)[0]
            else:
                carry = body(start, batches[0])[0]
            tv, ntv, ov, loss_sum, correct_sum = carry
            return (tv, ntv, ov), loss_sum, correct_sum

        def evaluate(tv, ntv, x, y, rows, mask):
            """Summed loss and correct count over the rows (batch,) of every seed's data."""
            seeds = x.shape[0]
            weights = jnp.broadcast_to(mask, (seeds, *mask.shape))
            return seeds_eval(tv, ntv, x[:, rows], y[:, rows], weights)

        self._steps = jax.jit(steps, donate_argnums=(0,))
        self._evaluate = jax.jit(evaluate)
        self._compiled: dict[tuple[str, tuple[int, ...]], Any] = {}

    def step_shapes(self, order_shape: tuple[int, int], batch: int) -> list[tuple[int, int, int]]:
        """The shapes of the row-index arrays one epoch calls the train program with."""
        seeds, rows = order_shape
        per_call = rows // batch if self.scan else 1
        shapes = [(per_call, seeds, batch)] if rows >= batch else []
        return shapes + ([(1, seeds, rows % batch)] if rows % batch else [])

    def prepare(self, state, x, y, step_shapes, x_eval, y_eval) -> None:
        """Compile every program the run calls, in parallel threads (XLA's compiler releases
        the GIL): the first epoch waits for the slowest compilation, not for their sum."""
        from concurrent.futures import ThreadPoolExecutor

        import jax

        def spec(shape, dtype=np.int32):
            return jax.ShapeDtypeStruct(shape, dtype)

        lowered = {
            ("train", shape): self._steps.lower(state, x, y, spec(shape)) for shape in step_shapes
        }
        lowered[("eval", x_eval.shape)] = self._evaluate.lower(
            state[0], state[1], x_eval, y_eval, spec((EVAL_BATCH,)), spec((EVAL_BATCH,), np.float32)
        )
        with ThreadPoolExecutor(len(lowered)) as pool:
            compiled = pool.map(lambda low: low.compile(), lowered.values())
            self._compiled.update(zip(lowered, compiled, strict=True))

    def _train_call(self, state, x, y, rows):
        import jax.numpy as jnp

        call = self._compiled.get(("train", rows.shape), self._steps)
        return call(state, x, y, jnp.asarray(rows))

    def train_steps(self, state, x, y, batches):
        """Train over `batches` (steps, seeds, batch): one call, or one call per step on CPU."""
        if self.scan:
            return self._train_call(state, x, y, batches)
        loss_sum = correct_sum = 0
        for rows in batches:
            state, loss, correct = self._train_call(state, x, y, rows[None])
            loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
        return state, loss_sum, correct_sum

    def evaluate(self, tv, ntv, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy per seed over the whole of x, y (seeds, n, ...): batches of
        EVAL_BATCH rows, the last one padded and masked."""
        import jax.numpy as jnp

        call = self._compiled.get(("eval", x.shape), self._evaluate)
        n = x.shape[1]
        loss_sum = np.zeros(x.shape[0])
        correct_sum = np.zeros(x.shape[0])
        for start in range(0, n, EVAL_BATCH):
            rows = np.arange(start, start + EVAL_BATCH, dtype=np.int32)
            mask = (rows < n).astype(np.float32)
            loss, correct = call(tv, ntv, x, y, jnp.asarray(np.minimum(rows, n - 1)), mask)
            loss_sum += np.asarray(loss)
            correct_sum += np.asarray(correct)
        return loss_sum / n, correct_sum / n


def _unrolled(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step` over a leading seeds axis, written out once per seed (no loop in the program)."""
    import jax

    def run(*args):
        seeds = jax.tree_util.tree_leaves(args[-1])[0].shape[0]
        outs = [step(*jax.tree_util.tree_map(lambda a, i=i: a[i], args)) for i in range(seeds)]
        return jax.tree_util.tree_map(lambda *parts: jax.numpy.stack(parts), *outs)

    return run


def _in_batches(order: np.ndarray, batch: int) -> list[np.ndarray]:
    """Index arrays (steps, ..., batch): the full batches, then the partial one if any."""
    steps = order.shape[-1] // batch
    parts = []
    if steps:
        full = order[..., : steps * batch].reshape(*order.shape[:-1], steps, batch)
        parts.append(np.moveaxis(full, -2, 0))
    if order.shape[-1] % batch:
        parts.append(order[..., steps * batch :][None])
    return parts


def _train(keras, specs, datas, models_dir, recorders) -> list[dict[str, Any]]:
    import jax.numpy as jnp

    spec = specs[0]
    protocol = spec.protocol
    reg = registry().get("regularizers", spec.reg)
    arch = registry().get("architectures", spec.arch)
    params = reg.resolve(spec.params)
    final = spec.stage == "final"
    fits = [
        (np.concatenate([d.x_train, d.x_val]), np.concatenate([d.y_train, d.y_val]))
        if final
        else (d.x_train, d.y_train)
        for d in datas
    ]
    if len({len(x) for x, _ in fits}) != 1:
        raise ValueError("the seeds' training sets differ in size; use the standard engine")
    runs = [
        context_for(protocol, d, s.seed, s.stage, len(x))
        for s, d, (x, _) in zip(specs, datas, fits, strict=True)
    ]
    if any(run_callbacks(reg, params, run) for run in runs):
        raise ValueError(f"the vmapped engine cannot run {spec.reg}'s training callbacks")
    models = [
        build_and_compile(arch, reg, params, protocol, d, s.seed, s.execution, run)
        for s, d, run in zip(specs, datas, runs, strict=True)
    ]
    for model in models:
        model.optimizer.build(model.trainable_variables)
    x_fit = jnp.asarray(np.stack([x for x, _ in fits]))
    y_fit = jnp.asarray(np.stack([y for _, y in fits]).astype(np.int32))
    x_val = jnp.asarray(np.stack([d.x_val for d in datas]))
    y_val = jnp.asarray(np.stack([d.y_val for d in datas]).astype(np.int32))
    clean = [clean_eval.subset(x, y) for x, y in fits]
    x_clean = jnp.asarray(np.stack([x for x, _ in clean]))
    y_clean = jnp.asarray(np.stack([y for _, y in clean]).astype(np.int32))
    program = _Program(keras, models[0])
    state = (
        _stack([m.trainable_variables for m in models]),
        _stack([m.non_trainable_variables for m in models]),
        _stack([m.optimizer.variables for m in models]),
    )
    n_fit, batch = x_fit.shape[1], protocol.batch_size
    shufflers = [np.random.default_rng(s.seed) for s in specs]
    x_eval, y_eval = (x_clean, y_clean) if final else (x_val, y_val)
    compile_start = time.perf_counter()
    _remember_compiled()
    program.prepare(
        state, x_fit, y_fit, program.step_shapes((len(specs), n_fit), batch), x_eval, y_eval
    )
    compile_time = time.perf_counter() - compile_start
    initial = program.evaluate(state[0], state[1], x_clean, y_clean)
    for recorder, loss, share in zip(recorders, *initial, strict=True):
        recorder.start(Scores(float(loss), float(share)))
    start = time.perf_counter()
    stopped = [False] * len(specs)
    for epoch in range(1, protocol.epochs + 1):
        order = np.stack([r.permutation(n_fit) for r in shufflers]).astype(np.int32)
        loss_sum = np.zeros(len(specs))
        correct_sum = np.zeros(len(specs))
        for batches in _in_batches(order, batch):
            state, loss, correct = program.train_steps(state, x_fit, y_fit, batches)
            loss_sum += np.asarray(loss)
            correct_sum += np.asarray(correct)
        logs = [
            {"loss": float(total / n_fit), "accuracy": float(right / n_fit)}
            for total, right in zip(loss_sum, correct_sum, strict=True)
        ]
        if not final:
            vloss, vcorrect = program.evaluate(state[0], state[1], x_val, y_val)
            for log, mean, share in zip(logs, vloss, vcorrect, strict=True):
                log.update(val_loss=float(mean), val_accuracy=float(share))
        elapsed = time.perf_counter() - start
        for i, (recorder, log) in enumerate(zip(recorders, logs, strict=True)):
            if not stopped[i]:  # a diverged seed's later epochs are not its history
                stopped[i] = recorder.epoch_end(epoch, log, elapsed)
        if all(stopped):
            break
    train_time = time.perf_counter() - start
    eval_start = time.perf_counter()
    clean_scores = program.evaluate(state[0], state[1], x_clean, y_clean)
    test_scores = None
    if reads_test(spec):
        x_test = jnp.asarray(np.stack([d.x_test for d in datas]))
        y_test = jnp.asarray(np.stack([d.y_test for d in datas]).astype(np.int32))
        test_scores = program.evaluate(state[0], state[1], x_test, y_test)
    eval_time = time.perf_counter() - eval_start
    outs = []
    for i, (s, model, recorder) in enumerate(zip(specs, models, recorders, strict=True)):
        _assign(model, state, i)
        good = evaluates(recorder)
        out = outcome(
            s,
            recorder,
            network=model,
            optimizer=model.optimizer,
            train_time=train_time,
            n_train=n_fit,
            n_val=0 if final else x_val.shape[1],
            clean=Scores(float(clean_scores[0][i]), float(clean_scores[1][i])) if good else None,
            test=None
            if test_scores is None or not good
            else Scores(float(test_scores[0][i]), float(test_scores[1][i])),
            models_dir=models_dir,
        )
        outs.append(
            {**out, "pipeline": "device", "eval_time_s": eval_time, "compile_time_s": compile_time}
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


def _assign(model, state, index: int) -> None:
    """Copy seed `index`'s trained values back into its Keras model."""
    tv, ntv, _ = state
    for variable, value in zip(model.trainable_variables, tv, strict=True):
        variable.assign(value[index])
    for variable, value in zip(model.non_trainable_variables, ntv, strict=True):
        variable.assign(value[index])
