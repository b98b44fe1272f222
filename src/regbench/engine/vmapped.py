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
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from regbench.engine import clean_eval
from regbench.engine.environment import environment
from regbench.engine.models import count_params, describe_model
from regbench.engine.plan import RunSpec
from regbench.engine.trainer import (
    Progress,
    RunResult,
    _not_applicable,
    _now,
    _one_line,
    build_and_compile,
    skipped_result,
)
from regbench.plugins.datasets import Splits
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import registry

ENGINE = "vmapped"
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
    if reg.callbacks(reg.resolve(spec.params)):
        return f"the vmapped engine cannot run {spec.reg}'s training callbacks"
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
    started, clock = _now(), time.perf_counter()
    rows: list[dict[str, Any]] = [{**s.row(), "started_at": started} for s in specs]
    epochs: list[list[dict[str, Any]]] = [[] for _ in specs]
    keras = import_keras()
    if reason := _not_applicable(specs[0]):  # decided here, so the parent never loads Keras
        return [skipped_result(replace(s, skip=reason)) for s in specs]
    try:
        reason = unsupported(specs, keras.backend.backend())
        if reason:
            raise ValueError(reason)
        env = environment()
        datas = [load_data(s) for s in specs]
        for row, data in zip(rows, datas, strict=True):
            row.update(env)
            row.update(data.sizes)
        outs = _train(keras, list(specs), datas, models_dir, epochs, progress)
        for row, out in zip(rows, outs, strict=True):
            row.update(out)
    except Exception as exc:
        for row in rows:
            row.update(status="failed", error=_one_line(exc), traceback=traceback.format_exc())
    finally:
        keras.backend.clear_session()
        gc.collect()
    ended, total = _now(), time.perf_counter() - clock
    return [
        RunResult({**row, "ended_at": ended, "total_time_s": total}, rows_of_epochs)
        for row, rows_of_epochs in zip(rows, epochs, strict=True)
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


def _train(keras, specs, datas, models_dir, epochs, progress) -> list[dict[str, Any]]:
    import jax.numpy as jnp

    spec = specs[0]
    protocol = spec.protocol
    reg = registry().get("regularizers", spec.reg)
    arch = registry().get("architectures", spec.arch)
    params = reg.resolve(spec.params)
    models = [
        build_and_compile(arch, reg, params, protocol, d, s.seed, s.execution)
        for s, d in zip(specs, datas, strict=True)
    ]
    for model in models:
        model.optimizer.build(model.trainable_variables)
    final = spec.stage == "final"
    fits = [
        (np.concatenate([d.x_train, d.x_val]), np.concatenate([d.y_train, d.y_val]))
        if final
        else (d.x_train, d.y_train)
        for d in datas
    ]
    if len({len(x) for x, _ in fits}) != 1:
        raise ValueError("the seeds' training sets differ in size; use the standard engine")
    x_fit = jnp.asarray(np.stack([x for x, _ in fits]))
    y_fit = jnp.asarray(np.stack([y for _, y in fits]).astype(np.int32))
    x_val = jnp.asarray(np.stack([d.x_val for d in datas]))
    y_val = jnp.asarray(np.stack([d.y_val for d in datas]).astype(np.int32))
    program = _Program(keras, models[0])
    state = (
        _stack([m.trainable_variables for m in models]),
        _stack([m.non_trainable_variables for m in models]),
        _stack([m.optimizer.variables for m in models]),
    )
    n_fit, batch = x_fit.shape[1], protocol.batch_size
    shufflers = [np.random.default_rng(s.seed) for s in specs]
    x_test = jnp.asarray(np.stack([d.x_test for d in datas]))
    y_test = jnp.asarray(np.stack([d.y_test for d in datas]).astype(np.int32))
    x_eval, y_eval = (x_test, y_test) if final else (x_val, y_val)
    start = time.perf_counter()
    program.prepare(
        state, x_fit, y_fit, program.step_shapes((len(specs), n_fit), batch), x_eval, y_eval
    )
    track = [dict[str, Any]() for _ in specs]
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
        for i, (s, log) in enumerate(zip(specs, logs, strict=True)):
            _record_epoch(s, epoch, log, elapsed, track[i], epochs[i], progress)
        if all("stopped" in t for t in track):
            break
    train_time = time.perf_counter() - start
    eval_start = time.perf_counter()
    test_loss, test_acc = program.evaluate(state[0], state[1], x_test, y_test)
    eval_time = time.perf_counter() - eval_start
    # the clean-data training figure, as the standard trainer's: inference mode, fixed subset
    clean = [clean_eval.subset(x, y) for x, y in fits]
    x_clean = jnp.asarray(np.stack([x for x, _ in clean]))
    y_clean = jnp.asarray(np.stack([y for _, y in clean]).astype(np.int32))
    clean_loss, clean_acc = program.evaluate(state[0], state[1], x_clean, y_clean)
    outs = []
    for i, (s, model) in enumerate(zip(specs, models, strict=True)):
        _assign(model, state, i)
        outs.append(_outcome(s, model, track[i], n_fit, 0 if final else x_val.shape[1], train_time))
        if "diverged" in track[i]:
            continue
        outs[-1].update(
            train_accuracy=float(clean_acc[i]),
            train_loss=float(clean_loss[i]),
            test_loss=float(test_loss[i]),
            test_accuracy=float(test_acc[i]),
            eval_time_s=eval_time,
            status="ok",
            error=None,
        )
        if models_dir is not None:
            outs[-1]["model_path"] = _save(model, models_dir, s.run_id)
    return outs


def _record_epoch(spec, epoch, logs, elapsed, state, rows, progress) -> None:
    """One seed's epoch: the tidy rows, divergence, time to target and progress (as the
    standard trainer's callback records them); nothing once the seed has diverged."""
    if "stopped" in state:
        return
    for key, value in logs.items():
        split, metric = ("val", key[4:]) if key.startswith("val_") else ("train", key)
        rows.append(
            {"epoch": epoch, "split": split, "metric": metric, "value": value, "elapsed_s": elapsed}
        )
    state["epochs_run"], state["last"] = epoch, logs
    if not math.isfinite(logs["loss"]):
        state["diverged"] = f"loss became {logs['loss']} at epoch {epoch}"
        state["stopped"] = True
    if spec.protocol.target and "epochs_to_target" not in state:
        metric, goal = spec.protocol.target
        value = logs.get(metric)
        if value is not None and (value <= goal if "loss" in metric else value >= goal):
            state["epochs_to_target"], state["seconds_to_target"] = epoch, elapsed
    if progress:
        progress({"run_id": spec.run_id, "epoch": epoch, "epochs": spec.protocol.epochs, **logs})


def _outcome(spec, model, state, n_fit, n_val, train_time) -> dict[str, Any]:
    last = state.get("last", {})
    run = state.get("epochs_run", 0)
    out: dict[str, Any] = {
        **count_params(model),
        "pipeline": "device",
        "n_train": n_fit,
        "n_val": n_val,
        "epochs_run": run,
        "train_time_s": train_time,
        "images_per_s": n_fit * run / train_time if train_time else None,
        "train_accuracy": last.get("accuracy"),
        "train_accuracy_running": last.get("accuracy"),
        "train_loss": last.get("loss"),
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "epochs_to_target": state.get("epochs_to_target"),
        "seconds_to_target": state.get("seconds_to_target"),
        "summary": describe_model(model),
    }
    if "diverged" in state:
        out.update(status="diverged", error=state["diverged"])
    return out


def _assign(model, state, index: int) -> None:
    """Copy seed `index`'s trained values back into its Keras model."""
    tv, ntv, _ = state
    for variable, value in zip(model.trainable_variables, tv, strict=True):
        variable.assign(value[index])
    for variable, value in zip(model.non_trainable_variables, ntv, strict=True):
        variable.assign(value[index])


def _save(model, models_dir: Path, run_id: str) -> str:
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{run_id}.keras"
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    tmp.replace(path)
    return str(path)
