"""Where a vmapped-engine step's time goes: one epoch (25,000 CIFAR-shaped images, batch 64)
of the lab's models through the engine's own program, in several shapes of program:

- `scan`: the whole epoch in one call (`lax.scan`), or one call per step;
- `vmap`: the seeds' steps vmapped (convolutions become grouped ones) or written out per seed;
- `unroll`: steps per scan iteration.

Prints milliseconds per step and per seed-step after a warm-up epoch (compilation excluded).
Run it twice to compare XLA flags (they are read when JAX starts), e.g. on a lent GPU:

    KERAS_BACKEND=jax python benchmarks/bench_gpu_step.py
    XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUDNN,WHILE \\
        KERAS_BACKEND=jax python benchmarks/bench_gpu_step.py
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

# (arch, seeds, scan, vmap, unroll)
CASES = [
    ("model3", 1, True, True, 1),
    ("model3", 1, False, False, 1),
    ("model3", 1, True, True, 8),
    ("model3", 3, True, True, 1),
    ("model3", 3, True, False, 1),
    ("model1", 1, True, True, 1),
    ("model1", 3, True, True, 1),
    ("model2", 1, True, True, 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=25000)
    parser.add_argument("--reg", default="none")
    parser.add_argument("--cases", default="all", help="indices into CASES, e.g. 0,3")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp

    from regbench.design.plan import Protocol
    from regbench.engine.program import Program, in_batches
    from regbench.engine.trainer import build_and_compile
    from regbench.plugins.datasets import Splits
    from regbench.plugins.keras import import_keras
    from regbench.plugins.manager import registry

    rng = np.random.default_rng(0)
    x = rng.random((args.images, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.images)
    data = Splits(x, y, x[:10], y[:10], x[:10], y[:10], tuple("abcdefghij"))
    print(
        f"{jax.devices()[0].device_kind}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}", flush=True
    )
    print("arch   seeds scan  vmap  unroll  ms/step  ms/seed-step  compile s", flush=True)
    chosen = range(len(CASES)) if args.cases == "all" else [int(i) for i in args.cases.split(",")]
    for arch_name, seeds, scan, vmap, unroll in (CASES[i] for i in chosen):
        arch = registry().get("architectures", arch_name)
        reg = registry().get("regularizers", args.reg)
        protocol = Protocol(dataset="cifar10", epochs=1)
        models = [
            build_and_compile(arch, reg, reg.resolve({}), protocol, data, s) for s in range(seeds)
        ]
        for model in models:
            model.optimizer.build(model.trainable_variables)
        program = Program(
            models, [0] * seeds, scan=scan, vmap=vmap, unroll=unroll
        )  # every seed reads the one copy of the data
        state = program.state(models)
        xs, ys = jnp.asarray(x[None]), jnp.asarray(y[None].astype(np.int32))
        order = np.stack([rng.permutation(args.images) for _ in range(seeds)]).astype(np.int32)
        full = in_batches(order, 64)[0]
        start = time.perf_counter()
        state, sums = program.train_steps(state, xs, ys, full)
        np.asarray(sums)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        state, sums = program.train_steps(state, xs, ys, full)
        np.asarray(sums)
        step_ms = (time.perf_counter() - start) * 1000 / len(full)
        print(
            f"{arch_name}  {seeds:5d} {scan!s:5} {vmap!s:5} {unroll:6d}  {step_ms:7.2f}  "
            f"{step_ms / seeds:12.2f}  {compile_s:9.1f}",
            flush=True,
        )
        import_keras().backend.clear_session()


if __name__ == "__main__":
    main()
