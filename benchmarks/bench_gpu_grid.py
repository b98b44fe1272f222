"""Benchmark 5: the lab's grid on one GPU, as a user runs it, in one command for a short lease.

Writes a learnable CIFAR-10 in the real format (python pickles, 50,000 training and 10,000
test images; the lab keeps 25,000 to train), fills the dataset cache, then times whole
`regbench run` commands over the lab's 12 cells (`--epochs 10`) (worker start-up, data load,
compilation and evaluation included): the vmapped engine with its compilation cache empty and
warm, packed in one process or three, the standard engine (Keras fit) in the same benchmark run,
and the 60-run grid (5 seeds) with both; the GPU's busy share sampled from nvidia-smi; each
cell's validation accuracy under every step side by side. Steps run in order until `--budget`
seconds are spent; the table is printed after every step and written to
OUT/gpu_grid.{json,md}.

On the lent GPU machine (no TensorFlow there; Keras on JAX):

    KERAS_BACKEND=jax python benchmarks/bench_gpu_grid.py --out "$OUT"

The same on CPU in small (a check of the script, not a figure):

    KERAS_BACKEND=jax python benchmarks/bench_gpu_grid.py --out /tmp/g --per-batch 300 \\
        --epochs 1 --steps vmapped-cold,vmapped-warm,standard-4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = ["--arch", "model1,model2,model3", "--reg", "none,l2,dropout,batchnorm"]  # the lab's 12
SEEDS5 = [*GRID, "--seeds", "5"]
# name: (what it is, regbench run flags, empty the compilation cache first)
STEPS = {
    "vmapped-cold": (
        "lab grid, vmapped, packs of one architecture, compilation cache empty",
        [*GRID, "--engine", "vmapped"],
        True,
    ),
    "vmapped-warm": (
        "lab grid, vmapped, packs of one architecture, compilation cache warm",
        [*GRID, "--engine", "vmapped"],
        False,
    ),
    "vmapped-warm-3": (
        "lab grid, vmapped, 3 processes on the GPU (one pack each), cache warm",
        [*GRID, "--engine", "vmapped", "--per-device", "3"],
        False,
    ),
    "standard-4": (
        "lab grid, standard engine (Keras fit), 4 per GPU, 32 steps per call",
        [*GRID, "--per-device", "4", "--steps-per-execution", "32"],
        False,
    ),
    "seeds5-vmapped": (
        "lab grid x 5 seeds (60 runs), vmapped, packs of 16 or fewer",
        [*SEEDS5, "--engine", "vmapped"],
        False,
    ),
    "seeds5-standard": (
        "lab grid x 5 seeds (60 runs), standard engine, 4 per GPU, 32 steps per call",
        [*SEEDS5, "--per-device", "4", "--steps-per-execution", "32"],
        False,
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
        what, flags, cold = STEPS[name]
        folder = args.work / name
        if cold:  # the compiled programs of earlier runs go; the dataset cache stays
            shutil.rmtree(args.work / "cache" / "jax", ignore_errors=True)
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
    sampler = GpuSampler()
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
    row["gpu_busy"] = sampler.stop()
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
        mean_val_acc=round(float(done["val_accuracy"].mean()), 4) if len(done) else None,
        device=str(runs["device"].dropna().iloc[0]) if runs["device"].notna().any() else "",
        engine=",".join(sorted(set(done["engine"].astype(str)))),
    )
    row["cell_val_acc"] = {  # a grid never reads the test split
        f"{arch}+{reg}": round(float(group["val_accuracy"].mean()), 4)
        for (arch, reg), group in done.groupby(["arch", "reg"])
    }
    if "compile_time_s" in done and done["compile_time_s"].notna().any():
        programs = done.drop_duplicates("compile_time_s")  # members of a pack share theirs
        row["sum_compile_s"] = round(float(programs["compile_time_s"].sum()), 1)
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
        "| step | what | wall s | ok / rows | sum of fit s | compile s | GPU busy | mean val acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['what']} | {r['wall_s']} | {r.get('ok', 0)}/{r.get('rows', 0)} "
            f"| {r.get('sum_train_s', '')} | {r.get('sum_compile_s', '')} "
            f"| {r.get('gpu_busy') or ''} | {r.get('mean_val_acc', '')} |"
        )
    cells = sorted({cell for r in rows for cell in r.get("cell_val_acc", {})})
    if cells:  # both engines' accuracies, cell by cell
        steps = [r for r in rows if r.get("cell_val_acc")]
        lines += ["", "| cell | " + " | ".join(r["step"] for r in steps) + " |"]
        lines.append("|---" * (len(steps) + 1) + "|")
        for cell in cells:
            accs = [str(r["cell_val_acc"].get(cell, "")) for r in steps]
            lines.append(f"| {cell} | " + " | ".join(accs) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    (args.out / "gpu_grid.md").write_text(text + "\n")
    (args.out / "gpu_grid.json").write_text(json.dumps(rows, indent=1, default=str))


class GpuSampler:
    """The GPU's own busy fraction while a step runs: `nvidia-smi`'s utilization.gpu sampled
    every 200 ms in a thread (the share of time a kernel ran); None without nvidia-smi."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.process = None
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            try:
                self.samples.append(float(line.split(",")[0]))
            except ValueError:
                continue

    def stop(self) -> str | None:
        if self.process is None:
            return None
        self.process.terminate()
        self.process.wait()
        if not self.samples:
            return None
        return f"{sum(self.samples) / len(self.samples):.0f}%"


if __name__ == "__main__":
    main()
