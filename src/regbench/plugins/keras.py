"""The one place that imports Keras, so listing and --help never pay for TensorFlow."""

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide what native code writes to fd 2 while it loads (TensorFlow logs a dozen lines
    before its log level applies); Python errors still surface after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras() -> ModuleType:
    """Import Keras quietly, unless TF_CPP_MIN_LOG_LEVEL asks for TensorFlow's logs. Plugins'
    Keras objects are registered where models are built or loaded
    (`regbench.plugins.manager.keras_with_plugins`), so importing Keras loads no plugin."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # a GPU may be shared by several runs (--per-device): take memory as needed, not most of it
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "1"):
        import keras

        return keras
    with _quiet_native_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":  # device discovery logs too: do it now
            import tensorflow as tf

            tf.config.list_physical_devices()
    return keras
