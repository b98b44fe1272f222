"""The compiled program of a pack (engine.packing): its members' train and evaluation steps,
side by side in one XLA program, over data already on the device. engine.vmapped turns specs
into a program's inputs and its outputs into result rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from regbench.engine.divergence import METRIC, crossentropy
from regbench.engine.training import compiled_loss, functional_step

EVAL_BATCH = 256
FIGURES = ("loss", "accuracy", METRIC)  # what a program sums per member and batch


def stack(variables_per_model: list[list[Any]]) -> list[Any]:
    import jax.numpy as jnp

    return [jnp.stack([v.value for v in group]) for group in zip(*variables_per_model, strict=True)]


def _member_steps(template: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """One member's train and evaluation steps, through its own compiled model's stateless API
    (its architecture, regularizer and values), loss and optimizer: the train step is
    regbench's functional step (engine.training), the regularizer's own where it has one."""
    import jax.numpy as jnp

    loss_fn = compiled_loss(template)

    def figures(loss_sum, y, y_pred, mask):
        """FIGURES of a batch: summed loss, correct count, summed crossentropy (the
        divergence rule's, engine.divergence) over the rows where `mask` is 1."""
        correct = jnp.sum((jnp.argmax(y_pred, axis=-1) == y) * mask)
        entropy = jnp.sum(crossentropy(y, y_pred, y_pred.shape[-1]) * mask)
        return jnp.stack([loss_sum, correct.astype(jnp.float32), entropy])

    def train_step(tv, ntv, ov, x, y):
        (tv, ntv, ov), loss, y_pred, _ = functional_step(template, (tv, ntv, ov), x, y)
        return tv, ntv, ov, figures(loss * x.shape[0], y, y_pred, jnp.ones(x.shape[0]))

    def eval_step(tv, ntv, x, y, mask):
        """FIGURES over the rows where `mask` is 1 (the padding of a last, partial batch is
        0), so every evaluation batch has one shape."""
        y_pred, _, losses = template.stateless_call(tv, ntv, x, training=False, return_losses=True)
        total = loss_fn(y, y_pred, sample_weight=mask) * mask.shape[0]  # mean over the batch
        if losses:
            total = total + sum(losses) * jnp.sum(mask)
        return figures(total, y, y_pred, mask)

    return train_step, eval_step


class Program:
    """The jitted train and evaluation functions of a pack's members, stepped side by side.

    `templates` are the members' compiled models (one per member), `data_of` the index of each
    member's data in the `x`, `y` arrays the program is called with (members of one seed share
    one copy). The state is, per member, its own variables; with `vmap` (one template's
    structure for all, benchmarks/bench_gpu_step.py) the members' variables are stacked and the
    first template's step is vmapped."""

    def __init__(
        self,
        templates: Sequence[Any],
        data_of: Sequence[int] | None = None,
        scan: bool | None = None,
        vmap: bool = False,
        unroll: int = 1,
    ) -> None:
        """`scan`/`vmap` default to what measured fastest on the backend (see below);
        benchmarks/bench_gpu_step.py sets them to compare."""
        import jax
        import jax.numpy as jnp

        self.size = len(templates)
        self.vmap = vmap
        data_of = list(range(self.size)) if data_of is None else list(data_of)
        members = [_member_steps(template) for template in templates]
        # XLA's CPU backend runs convolutions inside a loop (scan, map) ~10x slower than the
        # same step called on its own: on CPU each step is one call, elsewhere a whole epoch is
        # one scan. Vmapping turns the members' convolutions into grouped ones, which are
        # slower on both (an H100 step of model3's 3 seeds: 1.00 ms vmapped, 0.81 ms written
        # out per seed; benchmarks/RESULTS.md 5b), so by default each member's step is written
        # out, with its own variables (no stacking and slicing at every step).
        self.scan = jax.default_backend() != "cpu" if scan is None else scan

        def take(a, rows):  # each member's rows of its own data
            return [a[data_of[i]][rows[i]] for i in range(self.size)]

        if vmap:
            train_vmapped, eval_vmapped = jax.vmap(members[0][0]), jax.vmap(members[0][1])

            def members_step(state, xs, ys):
                tv, ntv, ov, sums = train_vmapped(*state, jnp.stack(xs), jnp.stack(ys))
                return (tv, ntv, ov), sums

            def members_eval(tv, ntv, xs, ys, mask):
                weights = jnp.broadcast_to(mask, (self.size, *mask.shape))
                return eval_vmapped(tv, ntv, jnp.stack(xs), jnp.stack(ys), weights)

        else:

            def members_step(state, xs, ys):
                outs = [
                    train(*(part[i] for part in state), xs[i], ys[i])
                    for i, (train, _) in enumerate(members)
                ]
                tv, ntv, ov, sums = zip(*outs, strict=True)
                return (tv, ntv, ov), jnp.stack(sums)

            def members_eval(tv, ntv, xs, ys, mask):
                outs = [
                    evaluate(tv[i], ntv[i], xs[i], ys[i], mask)
                    for i, (_, evaluate) in enumerate(members)
                ]
                return jnp.stack(outs)

        def steps(state, x, y, batches):
            """Steps over `batches` (steps, members, batch) of row indices."""

            def body(carry, rows):
                state, sums = carry
                state, more = members_step(state, take(x, rows), take(y, rows))
                return (state, sums + more), None

            start = (state, jnp.zeros((self.size, len(FIGURES)), jnp.float32))
            if self.scan:
                carry = jax.lax.scan(body, start, batches, unroll=unroll)[0]
            else:
                carry = body(start, batches[0])[0]
            return carry

        def evaluate(tv, ntv, x, y, rows, mask):
            """FIGURES summed over the rows (batch,) of every member's data."""
            members_rows = jnp.broadcast_to(rows, (self.size, *rows.shape))
            return members_eval(tv, ntv, take(x, members_rows), take(y, members_rows), mask)

        self._steps = jax.jit(steps, donate_argnums=(0,))
        self._evaluate = jax.jit(evaluate)
        self._compiled: dict[tuple[str, tuple[int, ...]], Any] = {}

    def state(self, models: Sequence[Any]) -> tuple[Any, Any, Any]:
        """The members' trainable, non-trainable and optimizer variables, as the program
        steps them (the optimizers built)."""
        parts = [
            [m.trainable_variables for m in models],
            [m.non_trainable_variables for m in models],
            [m.optimizer.variables for m in models],
        ]
        if self.vmap:
            return stack(parts[0]), stack(parts[1]), stack(parts[2])
        import jax.numpy as jnp

        # copies: the program donates its state, and the models keep their own buffers
        tv, ntv, ov = ([[jnp.array(v.value) for v in group] for group in part] for part in parts)
        return tuple(tv), tuple(ntv), tuple(ov)

    def member(self, state, index: int) -> tuple[list[Any], list[Any]]:
        """Member `index`'s trainable and non-trainable values."""
        tv, ntv, _ = state
        if self.vmap:
            return [v[index] for v in tv], [v[index] for v in ntv]
        return list(tv[index]), list(ntv[index])

    def step_shapes(self, rows: int, batch: int) -> list[tuple[int, int, int]]:
        """The shapes of the row-index arrays one epoch of `rows` rows calls the program with."""
        per_call = rows // batch if self.scan else 1
        shapes = [(per_call, self.size, batch)] if rows >= batch else []
        return shapes + ([(1, self.size, rows % batch)] if rows % batch else [])

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

    def train_steps(self, state, x, y, batches) -> tuple[Any, np.ndarray]:
        """Train over `batches` (steps, members, batch): one call, or one call per step on
        CPU. Returns the new state and each member's FIGURES summed over the batches
        (members, 3)."""
        if self.scan:
            state, sums = self._train_call(state, x, y, batches)
            return state, np.asarray(sums)
        total = np.zeros((self.size, len(FIGURES)))
        for rows in batches:
            state, sums = self._train_call(state, x, y, rows[None])
            total += np.asarray(sums)
        return state, total

    def evaluate(self, state, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean loss, accuracy and crossentropy per member over the whole of its data in x, y
        (data, n, ...): batches of EVAL_BATCH rows, the last one padded and masked."""
        import jax.numpy as jnp

        call = self._compiled.get(("eval", x.shape), self._evaluate)
        n = x.shape[1]
        total = np.zeros((self.size, len(FIGURES)))
        for start in range(0, n, EVAL_BATCH):
            rows = np.arange(start, start + EVAL_BATCH, dtype=np.int32)
            mask = (rows < n).astype(np.float32)
            total += np.asarray(
                call(state[0], state[1], x, y, jnp.asarray(np.minimum(rows, n - 1)), mask)
            )
        loss, accuracy, entropy = (total / n).T
        return loss, accuracy, entropy


def in_batches(order: np.ndarray, batch: int) -> list[np.ndarray]:
    """Index arrays (steps, ..., batch): the full batches, then the partial one if any."""
    steps = order.shape[-1] // batch
    parts = []
    if steps:
        full = order[..., : steps * batch].reshape(*order.shape[:-1], steps, batch)
        parts.append(np.moveaxis(full, -2, 0))
    if order.shape[-1] % batch:
        parts.append(order[..., steps * batch :][None])
    return parts
