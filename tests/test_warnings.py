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

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """pytest, configured by the project's pyproject.toml, on one test that runs `body`."""
    test = tmp_path / "test_probe.py"
    test.write_text(
        "import warnings\n\n"
        "def emit(module, category, message):\n"
        "    # a warning raised by code of `module`: filters match the warning's module by it\n"
        "    code = compile('warnings.warn(message, category)', module, 'exec')\n"
        "    scope = {'__name__': module, 'warnings': warnings}\n"
        "    exec(code, scope, {'message': message, 'category': category})\n\n"
        "def test_probe():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:randomly"]
        + ["-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("module", "category"),
    [
        ("regbench.engine.plan", "UserWarning"),
        ("regbench.results.stats", "FutureWarning"),  # as pandas attributes its deprecations
        ("regbench_extras.losses", "DeprecationWarning"),  # the repository's own plugin too
    ],
)
def test_a_warning_from_regbench_code_fails_the_test(tmp_path, module, category):
    result = run_pytest(tmp_path, f"emit({module!r}, {category}, 'careful')\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{category}: careful" in result.stdout


def test_known_third_party_warnings_are_silenced_and_others_still_show(tmp_path):
    result = run_pytest(
        tmp_path,
        """
        emit("keras_tuner.src.engine.oracle", DeprecationWarning,
             "currentThread() is deprecated, use current_thread() instead")
        emit("keras_tuner.src.engine.oracle", DeprecationWarning,
             "getName() is deprecated, get the name attribute instead")
        emit("keras.src.backend.tensorflow.core", DeprecationWarning,
             "__array__ implementation doesn't accept a copy keyword, so passing copy=False")
        emit("somelib", DeprecationWarning, "something else is deprecated")
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 warning" in result.stdout and "something else is deprecated" in result.stdout
