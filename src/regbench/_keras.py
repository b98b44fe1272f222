"""The one place that imports Keras, so listing and --help never pay for TensorFlow."""

import os


def import_keras():
    """Import Keras quietly (TensorFlow's C++ log chatter off unless the user asked for it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    import keras

    return keras
