"""pyproject's `filterwarnings`: a warning from regbench's own code fails a test, the known
third-party ones are silenced. Checked in a fresh pytest, so that this run's own `-W` flags
(which win over the file) cannot change the answer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("warnings")  # one worker starts the probing pytest

ROOT = Path(__file__).resolve().parents[1]


REGBENCH_WARNINGS = [
    ("regbench.design.plan", "UserWarning"),
    ("regbench.results.stats", "FutureWarning"),  # as pandas attributes its deprecations
    ("regbench_extras.losses", "DeprecationWarning"),  # the repository's own plugin too
]
THIRD_PARTY = """
emit("keras_tuner.src.engine.oracle", DeprecationWarning,
     "currentThread() is deprecated, use current_thread() instead")
emit("keras_tuner.src.engine.oracle", DeprecationWarning,
     "getName() is deprecated, get the name attribute instead")
emit("keras.src.backend.tensorflow.core", DeprecationWarning,
     "__array__ implementation doesn't accept a copy keyword, so passing copy=False")
emit("somelib", DeprecationWarning, "something else is deprecated")
"""


def run_pytest(tmp_path: Path, bodies: dict[str, str]) -> subprocess.CompletedProcess:
    """pytest, configured by the project's pyproject.toml, on one test per body (test_NAME runs
    bodies[NAME]): one pytest start for every probe."""
    test = tmp_path / "test_probe.py"
    test.write_text(
        "import warnings\n\n"
        "def emit(module, category, message):\n"
        "    # a warning raised by code of `module`: filters match the warning's module by it\n"
        "    code = compile('warnings.warn(message, category)', module, 'exec')\n"
        "    scope = {'__name__': module, 'warnings': warnings}\n"
        "    exec(code, scope, {'message': message, 'category': category})\n"
        + "".join(
            f"\n\ndef test_{name}():\n" + textwrap.indent(textwrap.dedent(body), "    ")
            for name, body in bodies.items()
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-n", "0", "-p", "no:randomly"]
        + ["-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
        timeout=120,
    )


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[str, str]:
    """Each probe's line in the short summary (`PASSED ...::test_NAME`, or `FAILED
    ... - Category: message`); the run's output under "stdout", its last line under "summary"."""
    bodies = {
        f"probe{i}": f"emit({module!r}, {category}, 'careful')\n"
        for i, (module, category) in enumerate(REGBENCH_WARNINGS)
    }
    result = run_pytest(tmp_path_factory.mktemp("probe"), {**bodies, "third_party": THIRD_PARTY})
    lines = result.stdout.splitlines()
    outcomes = [line for line in lines if line.startswith(("PASSED", "FAILED"))]
    found = {
        name: next((line for line in outcomes if f"::test_{name} " in f"{line} "), "")
        for name in [*bodies, "third_party"]
    }
    return {**found, "stdout": result.stdout, "summary": lines[-1] if lines else result.stderr}


@pytest.mark.slow
@pytest.mark.parametrize(("module", "category"), REGBENCH_WARNINGS)
def test_a_warning_from_regbench_code_fails_the_test(probes, module, category):
    line = probes[f"probe{REGBENCH_WARNINGS.index((module, category))}"]
    assert line.startswith("FAILED") and line.endswith(f"{category}: careful"), probes


def test_known_third_party_warnings_are_silenced_and_others_still_show(probes):
    assert probes["third_party"].startswith("PASSED"), probes
    assert "1 warning" in probes["summary"], probes  # only somelib's
    assert "something else is deprecated" in probes["stdout"]
