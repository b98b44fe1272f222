"""Scale: a 1,000-run plan (the 12 lab cells x 84 seeds = 1,008 runs) through each stage with the
fake trainer (tests/fake_trainer.py: trains nothing), each stage timed on its own:

- plan: make_plan + order_by_cost, as `regbench run` makes it (applicability is decided by the
  workers); "plan, applicability" as `regbench plan` makes it (Keras imported, one model built
  per cell that inserts layers)
- schedule: the local executor with 2 workers, results only handed back (nothing recorded)
- record: Store.record_run of every result and the closing CSV export, as the CLI does
- leaderboard: load the store + the leaderboard table + its rendering
- report: write_report (HTML, Markdown, figures)

    PYTHONPATH=src:tests python benchmarks/bench_scale.py [--seeds 84] [--runs 3]

Each run is a fresh process (the first report imports matplotlib, the first applicability check
Keras, as a user's command does); the table gives each stage's median over the runs.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
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
    parser.add_argument("--runs", type=int, default=3, help="fresh processes; the median counts")
    parser.add_argument("--json", action="store_true", help="one run; print its seconds as JSON")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(stages(args)))
        return
    command = [sys.executable, __file__, "--json", "--seeds", str(args.seeds)]
    runs = [json.loads(subprocess.check_output(command, text=True)) for _ in range(args.runs)]
    runs_count = runs[0].pop("runs")
    for run in runs[1:]:
        run.pop("runs")
    table = "".join(
        f"| {stage} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} "
        f"| {statistics.median(values) / runs_count * 1000:.2f} |\n"
        for stage in runs[0]
        for values in [[run[stage] for run in runs]]
    )
    print(table, flush=True)
    body = (
        f"{runs_count} runs (12 lab cells x {args.seeds} seeds), fake trainer, 2 workers; "
        f"seconds per stage, median of {args.runs} fresh processes (target ≤ 2 s each).\n\n"
        "| stage | s (median) | min-max | per run ms |\n|---|---|---|---|\n" + table
    )
    cli = "PYTHONPATH=src:tests python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])
    record("6. A 1,000-run plan", cli.strip(), body)


def stages(args: argparse.Namespace) -> dict[str, float]:
    """One pass through every stage in this process: seconds per stage (and the run count)."""
    from rich.console import Console

    from regbench.design.plan import Protocol, make_plan, order_by_cost
    from regbench.engine.executor import ExecutorOptions, Hooks, run_with_workers
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

    results: list = []
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

    return {**seconds, "runs": len(specs)}


if __name__ == "__main__":
    main()
