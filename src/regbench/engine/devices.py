"""Find the GPUs without importing a framework, and the environment that pins a worker to one."""

from __future__ import annotations

import os
import shutil
import subprocess


def detect_gpus() -> list[str]:
    """GPU ids visible to this process: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def worker_env(device: str | None, threads: int) -> dict[str, str]:
    """Variables for a worker on `device` (a GPU id, or None for CPU with `threads` threads)."""
    # GPU memory grows as needed: import_keras sets that for every process that trains
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if device is None:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            env[name] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1" if threads == 1 else "2"
    else:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env
