"""regbench-extras: more regularizers and a VGG-style architecture, as an outside plugin."""

__version__ = "0.1.0"
