"""regbench: a plugin-based benchmark harness for regularization in CNNs."""

from regbench.plugins.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
