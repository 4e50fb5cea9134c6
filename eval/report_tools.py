"""Report helpers shared by the scripts under eval/: the machine and versions a figure was measured
with, and the Markdown table heads the reports are written with."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU, core counts (all, and usable by this process), RAM and operating system."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "ram_gib": ram_gib(),
        "os": platform.platform(),
    }


def versions() -> dict[str, str]:
    """Versions of the libraries the data-preparation and evaluation figures depend on."""
    import librosa
    import numba
    import numpy as np
    import scipy
    import soundfile as sf
    import soxr
    import torch

    import stylecraft

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "librosa": librosa.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "soxr": soxr.__version__,
        "soundfile": sf.__version__,
        "stylecraft": getattr(stylecraft, "__version__", "?"),
    }


def machine_lines(machine: dict[str, Any], vers: dict[str, str]) -> list[str]:
    """The "Machine:" and "Versions:" lines of a report (Markdown line break after the first)."""
    m = machine
    return [
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('cores_usable')} usable), {m.get('ram_gib')} GiB RAM  ",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in vers.items()),
    ]


def table_head(columns: Sequence[str], align: str = "") -> list[str]:
    """A Markdown table's header and rule; ``align`` has an ``r`` for each right-aligned column."""
    rule = "|".join("---:" if align[i : i + 1] == "r" else "---" for i in range(len(columns)))
    return ["| " + " | ".join(columns) + " |", f"|{rule}|"]
