"""The plugin example in docs/plugins.md runs as documented: exec it, register it, build with it."""

from __future__ import annotations

import re
import types
from pathlib import Path

from regbench.builtins.architectures import MODEL1
from regbench.engine.models import build_model
from regbench.plugins.manager import Origin, build_registry
from regbench.testing import check_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
MARKER = "<!-- tested: tests/test_docs_example.py runs the next block -->"


def _example_module() -> types.ModuleType:
    """The fenced python block right after the marker, executed as a module of its own."""
    found = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)\n```", DOC.read_text(), re.S)
    assert found, f"{DOC} lost its tested example (the block after {MARKER})"
    module = types.ModuleType("regbench_docs_example")
    exec(compile(found.group(1), str(DOC), "exec"), module.__dict__)
    return module


def test_documented_example_registers_and_builds() -> None:
    origin = Origin("docs-example", "0")
    registry = build_registry(extra_plugins=((_example_module(), origin),))
    assert not [broken for broken in registry.broken if broken.origin == origin]
    entry = registry.entries["regularizers"]["gaussian_dropout"]
    assert entry.origin == origin
    model = build_model(MODEL1, entry.obj, {"rate": 0.3})
    assert [type(layer).__name__ for layer in model.layers].count("GaussianDropout") == 2
    check_model(entry.obj, MODEL1)  # probability rows, no extra weights or losses
