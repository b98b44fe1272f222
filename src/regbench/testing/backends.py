"""The training contract on every installed Keras backend, each in a fresh process: a plugin
that keeps references to the model's variables (a SAM-like callback that perturbs and restores
them) trains on TensorFlow and breaks on JAX, whose `fit` holds the weights outside them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regbench.api import Architecture, Regularizer
from regbench.engine.models import DEFAULT_CLASSES
from regbench.testing.probes import InputShape, require

BACKENDS = ("tensorflow", "jax")
_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

_HINTS = {
    "jax": (
        " (JAX's fit holds the weights outside the model's variables within an epoch: a "
        "callback that reads or assigns them per batch sees stale or missing values; act in a "
        "train_step or the layers instead)"
    ),
}

_CHILD = (
    "import importlib, json, sys\n"
    "from pathlib import Path\n"
    "from regbench.api import Regularizer\n"
    "from regbench.plugins.manager import build_registry\n"
    "from regbench.testing.training import check_training_contract\n"
    "spec = json.loads(sys.argv[1])\n"
    "module, _, attr = spec['path'].partition(':')\n"
    "obj = importlib.import_module(module)\n"
    "for part in attr.split('.'):\n"
    "    obj = getattr(obj, part)\n"
    "reg = obj if isinstance(obj, Regularizer) else obj()\n"
    "arch = build_registry().get('architectures', spec['architecture'])\n"
    "try:\n"
    "    check_training_contract(reg, arch, spec['params'], input_shape=tuple(spec['shape']),\n"
    "        classes=spec['classes'], fresh_process=False, xla=spec['xla'])\n"
    "except AssertionError as exc:\n"
    "    Path(spec['report']).write_text(str(exc))\n"
    "    raise SystemExit(1)\n"
)


def import_path(regularizer: Regularizer | str) -> str:
    """`module:attr` the child imports: as given, or the object's class (made with no
    arguments there), which must be defined at a module's top level to be found."""
    if isinstance(regularizer, str):
        require(":" in regularizer, f"{regularizer!r}: give the regularizer as 'module:attr'")
        return regularizer
    cls = type(regularizer)
    require(
        "<locals>" not in cls.__qualname__ and cls.__module__ != "__main__",
        f"{regularizer.name}: class {cls.__qualname__} cannot be imported in a fresh process; "
        "define it at a module's top level or pass 'module:attr'",
    )
    return f"{cls.__module__}:{cls.__qualname__}"


def installed_backend(backend: str) -> bool:
    """Whether `backend`'s package can be imported (found, not imported: that costs seconds)."""
    return importlib.util.find_spec(_PACKAGES.get(backend, backend)) is not None


def _environment(backend: str, pythonpath: Sequence[str | Path]) -> dict[str, str]:
    """This process's environment on `backend`, `pythonpath` in front of PYTHONPATH."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = [str(p) for p in pythonpath] + [p for p in [env.get("PYTHONPATH", "")] if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _run_child(spec: dict[str, Any], env: dict[str, str], timeout: float) -> str | None:
    """The child's failure in one line, or None when it passed."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.txt"
        spec = spec | {"report": str(report)}
        cmd = [sys.executable, "-c", _CHILD, json.dumps(spec)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:g} s"
        if done.returncode == 0:
            return None
        if report.exists():
            return report.read_text()
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def check_on_backends(
    regularizer: Regularizer | str,
    architecture: Architecture | str = "model1",
    params: Mapping[str, Any] | None = None,
    *,
    backends: Sequence[str] = BACKENDS,
    input_shape: InputShape = (8, 8, 3),
    classes: int = DEFAULT_CLASSES,
    xla: bool = True,
    pythonpath: Sequence[str | Path] = (),
    timeout: float = 600,
) -> dict[str, str]:
    """`check_training_contract` in a fresh process per backend (KERAS_BACKEND set there):
    a plugin tested only on its author's backend fails here, naming the backend, not in
    someone's grid. `regularizer` is a 'module:attr' path (a Regularizer, its class or a
    factory) or a Regularizer whose class imports from its module; `pythonpath` is put in
    front of the child's PYTHONPATH. A backend not installed is skipped with a warning.
    Returns each backend's outcome: "passed" or "skipped: ..."."""
    path = import_path(regularizer)
    arch = architecture if isinstance(architecture, str) else architecture.name
    spec = {
        "path": path,
        "architecture": arch,
        "params": dict(params or {}),
        "shape": list(input_shape),
        "classes": classes,
        "xla": xla,
    }
    outcomes: dict[str, str] = {}
    for backend in backends:
        if not installed_backend(backend):
            outcomes[backend] = f"skipped: {backend} is not importable"
            warnings.warn(
                f"{path}: not checked on {backend}, which is not importable", stacklevel=2
            )
            continue
        failure = _run_child(spec, _environment(backend, pythonpath), timeout)
        require(
            failure is None,
            f"{path} on {arch} fails on backend {backend}: {failure}{_HINTS.get(backend, '')}",
        )
        outcomes[backend] = "passed"
    return outcomes
