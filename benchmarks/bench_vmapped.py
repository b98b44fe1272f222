"""The vmapped engine's figure: the seeds of one cell trained together as one JAX program
against the same runs trained one after another by the standard trainer, in one process each
(JAX import, data load and compilation included). Time each command as a whole process:

    /usr/bin/time -v python benchmarks/bench_vmapped.py --engine vmapped
    /usr/bin/time -v python benchmarks/bench_vmapped.py --engine standard

Prints each run's status and accuracies (so the two can be compared as well as timed).
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("standard", "vmapped"), default="vmapped")
    parser.add_argument("--arch", default="model1")
    parser.add_argument("--reg", default="batchnorm")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported
    from regbench.design.plan import Execution, Protocol, RunSpec
    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process

    specs = [
        RunSpec(
            arch=args.arch,
            reg=args.reg,
            params={},
            seed=seed,
            protocol=Protocol(dataset=args.dataset, epochs=args.epochs),
            execution=Execution(engine=args.engine),
        )
        for seed in range(args.seeds)
    ]

    def on_result(result) -> None:
        row = result.row
        print(
            f"{row['run_id']} {row['status']} engine={row['engine']} backend={row.get('backend')} "
            f"train_acc={row.get('train_accuracy')} val_acc={row.get('val_accuracy')} "
            f"test_acc={row.get('test_accuracy')} fit_s={row.get('train_time_s')}",
            flush=True,
        )

    run_in_process(specs, ExecutorOptions(), Hooks(on_result=on_result))


if __name__ == "__main__":
    main()
