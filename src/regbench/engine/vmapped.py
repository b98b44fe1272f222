"""The JAX fast path: the seeds of one cell trained together as one XLA program.

At batch 64 the lab's models are bound by per-step host work, not by the accelerator
(benchmarks/RESULTS.md). Here the seeds' parameters are stacked and `jax.vmap`ped through
Keras's stateless API (`model.stateless_call`, `optimizer.stateless_apply`), and a whole epoch
of steps runs in one call (`lax.scan`) over data already on the device. The protocol is the
standard trainer's: the same compiled model, optimizer and loss, batch size, epochs, a shuffle
per seed and epoch, the last partial batch trained; the same metrics and result rows, with
`engine` = 'vmapped'. Regularizer callbacks (a Keras fit loop feature) are not supported.
"""

from __future__ import annotations

import gc
import math
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regbench.engine import clean_eval
from regbench.engine.environment import environment
from regbench.engine.models import count_params, describe_model
from regbench.engine.plan import RunSpec
from regbench.engine.trainer import Progress, RunResult, _now, _one_line, build_and_compile
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
    """The jitted, vmapped train and evaluation functions of one compiled template model."""

    def __init__(self, keras, template: Any) -> None:
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

        def eval_step(tv, ntv, x, y):
            loss, (_, correct) = forward(tv, ntv, x, y, False)
            return loss, correct

        # XLA's CPU backend runs convolutions inside a loop (scan, map) ~10x slower than the
        # same step called on its own, and vmapped ones (grouped convolutions) slower still:
        # on CPU the seeds are unrolled in the program and each step is one call; elsewhere
        # the seeds are vmapped and a whole epoch is one scan.
        self.scan = jax.default_backend() != "cpu"
        if self.scan:
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
                carry = jax.lax.scan(body, start, batches)[0]
            else:
                carry = body(start, batches[0])[0]
            tv, ntv, ov, loss_sum, correct_sum = carry
            return (tv, ntv, ov), loss_sum, correct_sum

        def evaluate(tv, ntv, x, y, rows):
            """Summed loss and correct count over the rows (batch,) of every seed's data."""
            loss, correct = seeds_eval(tv, ntv, x[:, rows], y[:, rows])
            return loss * rows.shape[0], correct

        self._steps = jax.jit(steps, donate_argnums=(0,))
        self.evaluate = jax.jit(evaluate)

    def train_steps(self, state, x, y, batches):
        """Train over `batches` (steps, seeds, batch): one call, or one call per step on CPU."""
        import jax.numpy as jnp

        if self.scan:
            return self._steps(state, x, y, jnp.asarray(batches))
        loss_sum = correct_sum = 0
        for rows in batches:
            state, loss, correct = self._steps(state, x, y, jnp.asarray(rows[None]))
            loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
        return state, loss_sum, correct_sum


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
    val_batches = _in_batches(np.arange(x_val.shape[1]), max(batch, EVAL_BATCH))
    track = [dict[str, Any]() for _ in specs]
    start = time.perf_counter()
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
            vloss, vcorrect = _evaluate(program, state, x_val, y_val, val_batches)
            for log, mean, share in zip(logs, vloss, vcorrect, strict=True):
                log.update(val_loss=float(mean), val_accuracy=float(share))
        elapsed = time.perf_counter() - start
        for i, (s, log) in enumerate(zip(specs, logs, strict=True)):
            _record_epoch(s, epoch, log, elapsed, track[i], epochs[i], progress)
        if all("stopped" in t for t in track):
            break
    train_time = time.perf_counter() - start
    eval_start = time.perf_counter()
    x_test = jnp.asarray(np.stack([d.x_test for d in datas]))
    y_test = jnp.asarray(np.stack([d.y_test for d in datas]).astype(np.int32))
    test_loss, test_acc = _evaluate(
        program, state, x_test, y_test, _in_batches(np.arange(x_test.shape[1]), EVAL_BATCH)
    )
    eval_time = time.perf_counter() - eval_start
    # the clean-data training figure, as the standard trainer's: inference mode, fixed subset
    clean = [clean_eval.subset(x, y) for x, y in fits]
    x_clean = jnp.asarray(np.stack([x for x, _ in clean]))
    y_clean = jnp.asarray(np.stack([y for _, y in clean]).astype(np.int32))
    clean_loss, clean_acc = _evaluate(
        program, state, x_clean, y_clean, _in_batches(np.arange(x_clean.shape[1]), EVAL_BATCH)
    )
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


def _evaluate(program, state, x, y, batches) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and accuracy per seed over the whole of x, y."""
    import jax.numpy as jnp

    tv, ntv, _ = state
    loss_sum = np.zeros(x.shape[0])
    correct_sum = np.zeros(x.shape[0])
    for group in batches:
        for rows in group:
            loss, correct = program.evaluate(tv, ntv, x, y, jnp.asarray(rows))
            loss_sum += np.asarray(loss)
            correct_sum += np.asarray(correct)
    return loss_sum / x.shape[1], correct_sum / x.shape[1]


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
