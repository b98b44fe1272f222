"""What a result was measured on: versions, backend, device, host, git revision."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from regbench.version import __version__


@functools.cache
def git_revision(start: str | None = None) -> str:
    """The checkout's commit (with '+dirty' when it has local changes), or '' outside git."""
    cwd = start or str(Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{rev}+dirty" if rev and dirty else rev


def describe_device(keras) -> str:
    """The accelerator the backend will use, or the CPU's name."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"GPU: {details.get('device_name', gpus[0].name)}"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return f"GPU: {device.device_kind}"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU: {torch.cuda.get_device_name(0)}"
    except Exception:  # a failed probe must not fail the run
        pass
    return f"CPU: {platform.processor() or platform.machine()}"


@functools.cache
def environment() -> dict[str, str]:
    """Environment columns recorded with every run (call inside the process that trains)."""
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    try:
        tf_version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tf_version = ""
    return {
        "python_version": platform.python_version(),
        "tf_version": tf_version,
        "keras_version": keras.__version__,
        "regbench_version": __version__,
        "backend": keras.backend.backend(),
        "device": describe_device(keras),
        "host": socket.gethostname(),
        "git_revision": git_revision(),
    }
