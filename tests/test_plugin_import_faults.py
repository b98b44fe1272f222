"""Probe 13: a plugin that ends the process while it imports (`os._exit`), raises a
BaseException of its own, or raises KeyboardInterrupt is a broken plugin named in `regbench
list`; the command goes on, exit 0, no traceback. Installed packages, fresh processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_plugins import GOOD, make_distribution

FAILING = {
    "rb_exits": ("regbench-exits", "import os\nos._exit(0)\n", "os._exit(0)"),
    "rb_odd": (
        "regbench-odd",
        "class Odd(BaseException):\n    pass\n\nraise Odd('not an Exception')\n",
        "Odd: not an Exception",
    ),
    "rb_ctrl_c": ("regbench-ctrl-c", "raise KeyboardInterrupt\n", "KeyboardInterrupt"),
}


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    make_distribution(folder, "regbench-good", "rb_good", GOOD)
    for module, (dist, source, _) in FAILING.items():
        make_distribution(folder, dist, module, source)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(FAILING))
def test_a_plugin_failing_at_import_is_listed_broken_by_name(cli_subprocess, site, module):
    dist, _, error = FAILING[module]
    env = {"PYTHONPATH": str(site), "REGBENCH_LOAD_PLUGINS": f"regbench-good,{dist}"}
    result = cli_subprocess("list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    listing = json.loads(result.stdout)
    (broken,) = listing["broken"]
    assert broken["dist"] == dist and error in broken["error"]
    assert "shake" in {r["name"] for r in listing["regularizers"]}  # the others still load


def test_an_unknown_name_says_which_plugins_failed_to_load(cli_subprocess, site):
    env = {"PYTHONPATH": str(site), "REGBENCH_LOAD_PLUGINS": "regbench-exits"}
    result = cli_subprocess("describe", "--arch", "model1", "--reg", "nosuch", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown regularizer 'nosuch'" in result.stderr
    assert "failed to load: regbench-exits:rb_exits (os._exit(0)" in result.stderr


@pytest.mark.slow
def test_a_real_ctrl_c_while_plugins_load_still_stops(tmp_path):
    """The guard tells the user's Ctrl-C from a plugin's KeyboardInterrupt: a SIGINT that
    arrives while a (slow) plugin imports stops the command, exit 130."""
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "regbench-slow", "rb_slow", "import time\ntime.sleep(30)\n")
    ready = tmp_path / "ready"
    code = (
        "import pathlib, sys, time\n"
        "import regbench.plugins.guard as guard\n"
        "real = guard.guarded\n"
        f"def noted():\n    pathlib.Path({str(ready)!r}).touch()\n    return real()\n"
        "guard.guarded = noted\n"
        "import regbench.plugins.manager as manager\n"
        "manager.guarded = noted\n"
        "from regbench.cli import main\n"
        "sys.exit(main(['list']))\n"
    )
    env = {"PYTHONPATH": str(site), "REGBENCH_LOAD_PLUGINS": "regbench-slow", "NO_COLOR": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, **env}, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # inside the plugin's import
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
