"""A trainer plugin that trains nothing: for testing and timing the scheduler itself.

FAKE_SLEEP (seconds per run), FAKE_DIE_ON (a run's arch/reg: its worker kills itself),
FAKE_DIE_MID_MESSAGE_ON (the same, halfway through a message to the parent), FAKE_LOG (a file
each run appends its id to), FAKE_FAIL_ON (a run's arch/reg: it fails, with a traceback to log)
and FAKE_MODEL_BYTES (each ok run saves a model of that many bytes through
`outcome.save_model`, as the real trainers do) steer it. `faultplan` may inject write faults.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime

import faultplan

from regbench.engine.outcome import TRAINING, RunResult, failure, save_model


def train(spec, load_data, models_dir, progress):
    if os.environ.get("FAKE_DIE_ON") == f"{spec.arch}/{spec.reg}":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("FAKE_DIE_MID_MESSAGE_ON") == f"{spec.arch}/{spec.reg}":
        _die_mid_message()
    progress({"run_id": spec.run_id, "event": TRAINING})  # as a real trainer does
    slept = float(os.environ.get("FAKE_SLEEP", "0"))
    time.sleep(slept)
    if log := os.environ.get("FAKE_LOG"):
        with open(log, "a") as handle:
            handle.write(f"{spec.run_id} {os.getpid()}\n")
    progress({"run_id": spec.run_id, "epoch": 1, "epochs": 1, "accuracy": 0.5})
    now = datetime.now(UTC).isoformat()
    score = (hash(spec.run_id) % 1000) / 1000
    if os.environ.get("FAKE_FAIL_ON") == f"{spec.arch}/{spec.reg}":
        return RunResult({**spec.row(), "started_at": now, "ended_at": now, **_failed()})
    saved = {}
    if size := int(os.environ.get("FAKE_MODEL_BYTES", "0")):
        try:
            saved["model_path"] = save_model(_Blob(size), models_dir, spec.run_id)
        except Exception as exc:
            return RunResult({**spec.row(), "started_at": now, "ended_at": now, **failure(exc)})
    return RunResult(
        {
            **spec.row(),
            **saved,
            "status": "ok",
            "train_accuracy": score,
            "val_accuracy": score,
            "test_accuracy": score,
            "total_params": 1,
            "train_time_s": slept,  # its one epoch: cells with FAKE_SLEEP are timed
            "epochs_run": 1,
            "started_at": now,
            "ended_at": now,
            "device": f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}",
            "host": str(os.getpid()),
        },
        [{"epoch": 1, "split": "val", "metric": "accuracy", "value": score, "elapsed_s": 0.0}],
    )


def _failed():
    try:
        raise RuntimeError("FAKE_FAIL_ON asked this run to fail")
    except RuntimeError as exc:
        return failure(exc)


class _Blob:
    """A stand-in model: `save` writes `size` bytes (through `faultplan`, which may fail it)."""

    def __init__(self, size):
        self.size = size

    def save(self, path):
        faultplan.check("model", path)
        with open(path, "wb") as out:
            out.write(b"\0" * self.size)


def _die_mid_message():
    """Be killed the way the out-of-memory killer may strike: with half a message written on
    every pipe end this worker could write to (the one to the parent among them)."""
    import gc
    import struct
    from multiprocessing.connection import Connection

    for pipe in [obj for obj in gc.get_objects() if isinstance(obj, Connection)]:
        if pipe.writable and not pipe.closed:
            os.write(pipe.fileno(), struct.pack("!i", 1 << 20) + b"half a message")
    os.kill(os.getpid(), signal.SIGKILL)
