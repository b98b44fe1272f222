"""Reloading a saved model in a new Python process, as `regbench visualize` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from regbench.testing.probes import require

_RELOAD = (
    "import sys, numpy as np\n"
    "from regbench.plugins.manager import keras_with_plugins\n"
    "keras = keras_with_plugins()\n"
    "model = keras.saving.load_model(sys.argv[1], compile=False, safe_mode=True)\n"
    "x = np.load(sys.argv[2])\n"
    "np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x, training=False)))\n"
)


def check_reloads_in_fresh_process(path: Path, x: np.ndarray, expected: np.ndarray) -> None:
    """A saved model loads in a new Python process (safe mode, as regbench loads models) and
    predicts `expected` on `x`: a custom layer not registered through the plugin's
    `register_keras_objects` hook fails here, as it would in `regbench visualize`."""
    np.save(path.with_suffix(".x.npy"), x)
    out = path.with_suffix(".out.npy")
    done = subprocess.run(
        [sys.executable, "-c", _RELOAD, str(path), str(path.with_suffix(".x.npy")), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = (done.stderr.strip().splitlines() or [""])[-1]
    require(
        done.returncode == 0,
        f"{path.name} does not load in a fresh process ({last}); register custom layers with "
        "keras.saving.register_keras_serializable in a module your plugin's "
        "register_keras_objects hook imports",
    )
    require(
        bool(np.allclose(np.load(out), expected, atol=1e-5)),
        f"{path.name}: the model reloaded in a fresh process predicts differently",
    )
