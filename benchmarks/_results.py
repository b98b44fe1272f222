"""Write a benchmark's figures into benchmarks/RESULTS.md, one section per benchmark."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        gpu = (
            subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            .stdout.strip()
            .splitlines()[0]
        )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [
        f"{os.cpu_count()} cores ({cpu})",
        f"{memory:.0f} GiB RAM",
        gpu or "no GPU",
        f"Python {platform.python_version()}",
    ]
    return ", ".join(parts)


def record(section: str, command: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or add) `## section` in RESULTS.md with the command, machine and body."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"## {section}\n\nCommand: `{command}`  \nMachine: {machine()}  \n"
        f"Measured: {stamp}\n\n{body.strip()}\n"
    )
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _: block + "\n", text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + block)
    )
    path.write_text(text.rstrip() + "\n")
    print(block)
