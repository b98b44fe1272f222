"""Scale: a 1,000-run plan (the 12 lab cells x 84 seeds = 1,008 runs) through each stage with the
fake trainer (tests/fake_trainer.py: trains nothing), each stage timed on its own:

- plan: make_plan + order_by_cost, as `regbench run` makes it (applicability is decided by the
  workers); "plan, applicability" as `regbench plan` makes it (Keras imported, one model built
  per cell that inserts layers)
- schedule: the local executor with 2 workers, results only handed back (nothing recorded)
- record: Store.record_run of every result and the closing CSV export, as the CLI does
- leaderboard: load the store + the leaderboard table + its rendering
- report: write_report (HTML, Markdown, figures)

    PYTHONPATH=src:tests python benchmarks/bench_scale.py [--seeds 84]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from _results import record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=84)
    parser.add_argument(
        "--keep", type=Path, help="write the store here and keep it (for timing the CLI)"
    )
    args = parser.parse_args()
    from rich.console import Console

    from regbench.engine.executor import ExecutorOptions, Hooks, run_with_workers
    from regbench.engine.plan import Protocol, make_plan, order_by_cost
    from regbench.plugins.manager import registry
    from regbench.reporting.report import write_report
    from regbench.results import leaderboard
    from regbench.results.reader import load
    from regbench.results.store import Store

    seconds: dict[str, float] = {}
    for stage, applicability in (("plan", False), ("plan, applicability", True)):
        start = time.perf_counter()
        specs = make_plan(
            registry(),
            ["model1", "model2", "model3"],
            ["none", "l2", "dropout", "batchnorm"],
            list(range(args.seeds)),
            Protocol(dataset="digits", epochs=1),
            applicability=applicability,
        )
        specs = order_by_cost(specs, registry())
        seconds[stage] = time.perf_counter() - start

    results = []
    start = time.perf_counter()
    options = ExecutorOptions(devices=[], workers=2, trainer="fake_trainer:train")
    run_with_workers(specs, options, Hooks(on_result=results.append))
    seconds["schedule"] = time.perf_counter() - start
    assert len(results) == len(specs)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "scale"
        store = Store(folder)
        start = time.perf_counter()
        for result in results:
            store.record_run(result.row, result.epochs)
        store.close()
        seconds["record"] = time.perf_counter() - start

        start = time.perf_counter()
        runs, epochs = load(folder)
        assert len(runs) == len(specs), (len(runs), len(specs))
        leaderboard.render(runs, epochs, Console(file=io.StringIO(), width=160))
        seconds["leaderboard"] = time.perf_counter() - start

        start = time.perf_counter()
        write_report(folder)
        seconds["report"] = time.perf_counter() - start

    for stage, value in seconds.items():
        print(f"{stage}: {value:.2f} s", flush=True)
    body = (
        f"{len(specs)} runs (12 lab cells x {args.seeds} seeds), fake trainer, 2 workers; "
        "seconds per stage (target ≤ 2 s each).\n\n| stage | s | per run ms |\n|---|---|---|\n"
        + "".join(
            f"| {stage} | {value:.2f} | {value / len(specs) * 1000:.2f} |\n"
            for stage, value in seconds.items()
        )
    )
    command = "PYTHONPATH=src:tests python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])
    record("6. A 1,000-run plan", command.strip(), body)


if __name__ == "__main__":
    main()
