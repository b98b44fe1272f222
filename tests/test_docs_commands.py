"""Every command the README and docs/*.md show works as written: each ```bash command and
```python block runs in a fresh process, in order, in a temporary folder (one per document, so
a later block finds what an earlier one made), on digits for one epoch.

Rules, applied per command (a bash block's lines, `\\` continuations joined):
- a `regbench` command that trains gets `--dataset digits --epochs 1` where it would train on
  CIFAR-10 or for more epochs;
- a command in SKIP is not run, for the reason given there;
- a ```python block that is a plugin's source, not a program, is not run: one right after a
  `<!-- tested: ... -->` marker (tests/test_docs_*.py builds and checks it) or one that
  implements a hook (`@hookimpl`, a fragment of a plugin); nor is one that defines `test_`
  functions, a plugin's own test file for its own pytest run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS

ROOT = TESTS.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRAINS = {"run", "tune", "final"}

# the start of a command -> why it is not run here
SKIP = {
    "make demo": "builds a virtual environment and installs packages (the network)",
    "make test": "the whole test suite, of which this is a part",
    "python -m pytest": "the whole test suite, of which this is a part",
    "python -m pip install": "installs packages (the network)",
    "regbench run --config lab --data-dir": "needs the CIFAR-10 archive it names",
    "regbench run --arch all --reg all": "every installed architecture x regularizer: hours",
    "regbench run --config lab --per-device": "packs 4 runs on each GPU: a GPU's work",
    "KERAS_BACKEND=jax regbench run --config lab --engine vmapped": (
        "the lab's grid x 3 seeds on JAX, a GPU's work (tests/test_vmapped.py runs the engine)"
    ),
    "regbench run --config lab --executor ray": "Ray (tests/test_ray.py runs the executor)",
}
TESTED_MARKER = "<!-- tested:"


def blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of every bash and python block, in order; plugin sources and plugin
    test files are left out (the module's rules)."""
    text = path.read_text()
    found = []
    for match in re.finditer(r"```(bash|python)\n(.*?)```", text, re.S):
        language, code = match.groups()
        before = text[: match.start()].rstrip().splitlines()[-1:]
        tested = bool(before) and before[0].startswith(TESTED_MARKER)
        source = "@hookimpl" in code or "\ndef test_" in f"\n{code}"
        if language == "python" and (tested or source):
            continue
        found.append((language, code))
    return found


def commands(code: str) -> list[str]:
    """A bash block's commands: one a line, continuations joined, comments and blanks left."""
    joined = code.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def skipped(command: str) -> str | None:
    return next((why for start, why in SKIP.items() if command.startswith(start)), None)


def for_a_test(command: str) -> str:
    """The command on digits for one epoch, where it trains."""
    words = shlex.split(command, comments=True)
    start = next((i for i, w in enumerate(words) if w == "regbench"), None)
    if start is None or len(words) <= start + 1 or words[start + 1] not in TRAINS:
        return command
    if "--dataset" not in words:
        words += ["--dataset", "digits"]
    if "--epochs" in words:
        at = words.index("--epochs") + 1
        words[at] = "1"
    else:
        words += ["--epochs", "1"]
    return shlex.join(words)


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "MPLBACKEND": "Agg"}


def test_the_rules_find_and_adapt_the_commands():
    readme = [
        c
        for language, code in blocks(ROOT / "README.md")
        if language == "bash"
        for c in commands(code)
    ]
    assert "regbench report reports/digits" in [c.split("  ")[0] for c in readme]
    last = "regbench final --best --dataset digits --epochs 2   # the lab's last step"
    assert for_a_test(last) == "regbench final --best --dataset digits --epochs 1"
    assert for_a_test("regbench run --arch model3 --reg dropout,l2 --tuned") == (
        "regbench run --arch model3 --reg dropout,l2 --tuned --dataset digits --epochs 1"
    )
    assert for_a_test("regbench list --json") == "regbench list --json"
    plugin_sources = [
        code for language, code in blocks(ROOT / "docs" / "plugins.md") if language == "python"
    ]
    assert not [code for code in plugin_sources if "@hookimpl" in code]
    assert all(skipped(c) or c.startswith(("regbench", "REGBENCH_", "python -")) for c in readme)


def _succeeds(argv: list[str], folder: Path, shown: str) -> None:
    done = subprocess.run(
        argv, cwd=folder, env=_env(), capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"{shown}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the README's commands train ~30 runs: past the 900 s default
@pytest.mark.parametrize("document", [d for d in DOCUMENTS if blocks(d)], ids=lambda p: p.name)
def test_every_documented_command_works_as_written(document, tmp_path):
    for language, code in blocks(document):
        if language == "python":
            (tmp_path / "example.py").write_text(code)
            _succeeds([sys.executable, "example.py"], tmp_path, f"python block:\n{code}")
            continue
        for command in commands(code):
            if not skipped(command):
                adapted = for_a_test(command)
                _succeeds(["bash", "-c", adapted], tmp_path, adapted)
