"""Benchmark 5: the lab's grid on one GPU, as a user runs it, in one command for a short lease.

Writes a learnable CIFAR-10 in the real format (python pickles, 50,000 training and 10,000
test images; the lab keeps 25,000 to train), fills the dataset cache, then times whole
`regbench run --arch all --reg all --epochs 10` commands (worker start-up, data load,
compilation and evaluation included) with each engine, and the vmapped engine's seeds
against the same seeds one after another. Steps run in order until `--budget` seconds are
spent; the table is printed after every step and written to OUT/gpu_grid.{json,md}.

On the lent GPU machine (no TensorFlow there; Keras on JAX):

    KERAS_BACKEND=jax python benchmarks/bench_gpu_grid.py --out "$OUT"

The same on CPU in small (a check of the script, not a figure):

    KERAS_BACKEND=jax python benchmarks/bench_gpu_grid.py --out /tmp/g --per-batch 300 \\
        --epochs 1 --steps vmapped-4,seeds-vmapped
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = ["--arch", "all", "--reg", "all"]
SEEDS = ["--arch", "model3", "--reg", "batchnorm", "--seeds", "3", "--per-device", "1"]
# name: (what it is, regbench run flags)
STEPS = {
    "vmapped-4": (
        "lab grid, vmapped engine, 4 runs per GPU",
        [*GRID, "--engine", "vmapped", "--per-device", "4"],
    ),
    "seeds-vmapped": ("model3+batchnorm, 3 seeds as one program", [*SEEDS, "--engine", "vmapped"]),
    "seeds-standard": (
        "model3+batchnorm, 3 seeds one after another",
        [*SEEDS, "--engine", "standard"],
    ),
    "vmapped-12": (
        "lab grid, vmapped engine, 12 runs per GPU",
        [*GRID, "--engine", "vmapped", "--per-device", "12"],
    ),
    "standard-4": (
        "lab grid, standard engine (Keras fit), 4 per GPU, 32 steps per call",
        [*GRID, "--per-device", "4", "--steps-per-execution", "32"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="logs, experiment folders, tables")
    parser.add_argument("--steps", default=",".join(STEPS), help="which steps, in order")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-batch", type=int, default=10000, help="images per CIFAR batch file")
    parser.add_argument("--budget", type=float, default=480, help="seconds for every step together")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/regbench-gpu"), help="data and runs"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.work, args.per_batch)
    print(f"data ready in {time.perf_counter() - began:.1f} s", flush=True)
    env = {**os.environ, "KERAS_BACKEND": "jax", "REGBENCH_CACHE": str(args.work / "cache")}
    rows = []
    for name in args.steps.split(","):
        left = args.budget - (time.perf_counter() - began)
        if left < 20:
            print(f"{name}: skipped, {left:.0f} s of the budget left", flush=True)
            continue
        what, flags = STEPS[name]
        folder = args.work / name
        command = [
            sys.executable, "-m", "regbench", "run", *flags, "--dataset", "cifar10",
            "--data-dir", str(data), "--epochs", str(args.epochs), "--experiment", str(folder),
        ]  # fmt: skip
        rows.append(timed(name, what, command, env, folder, left, args.out))
        report(rows, args)


def prepare_data(work: Path, per_batch: int) -> Path:
    """The CIFAR folder (written once) and its dataset cache (filled once, outside the timings)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from fake_cifar import write_fake_cifar

    from regbench.builtins.cifar import load_arrays

    root = work / f"cifar-{per_batch}"
    if not (root / "done").exists():
        write_fake_cifar(root, per_batch=per_batch, style="py2", signal=0.35)
        (root / "done").write_text("")
    load_arrays(root, work / "cache")
    return root


def timed(name, what, command, env, folder, limit, out: Path) -> dict:
    """Run one command to the end (or `limit` seconds) and summarise the runs it stored."""
    start = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        try:
            code = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=limit
            ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    wall = time.perf_counter() - start
    row = {"step": name, "what": what, "wall_s": round(wall, 1), "exit": code}
    try:
        import regbench

        runs = regbench.load(folder).runs
    except Exception as exc:  # a step that stored nothing still gets its row
        row["error"] = str(exc)[:200]
        return row
    done = runs[runs["status"] == "ok"]
    row.update(
        ok=len(done),
        rows=len(runs),
        statuses=runs["status"].value_counts().to_dict(),
        sum_train_s=round(float(done["train_time_s"].sum()), 1),
        sum_total_s=round(float(done["total_time_s"].sum()), 1),
        mean_test_acc=round(float(done["test_accuracy"].mean()), 4) if len(done) else None,
        test_accs=[round(float(a), 4) for a in done["test_accuracy"]],
        device=str(runs["device"].dropna().iloc[0]) if runs["device"].notna().any() else "",
        engine=",".join(sorted(set(done["engine"].astype(str)))),
    )
    failed = runs[runs["status"] == "failed"]
    if len(failed):
        row["first_error"] = str(failed["error"].iloc[0])[:300]
    return row


def report(rows: list[dict], args: argparse.Namespace) -> None:
    lines = [
        f"{args.epochs} epochs, CIFAR-format data ({args.per_batch * 5:,} training images in the "
        f"archive, the lab's 25,000-image split when full size), batch 64, SGD; "
        f"device {next((r['device'] for r in rows if r.get('device')), '?')}.",
        "",
        "| step | what | wall s | ok / rows | sum of fit s | mean test acc |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['what']} | {r['wall_s']} | {r.get('ok', 0)}/{r.get('rows', 0)} "
            f"| {r.get('sum_train_s', '')} | {r.get('mean_test_acc', '')} |"
        )
    text = "\n".join(lines)
    print(text, flush=True)
    (args.out / "gpu_grid.md").write_text(text + "\n")
    (args.out / "gpu_grid.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
