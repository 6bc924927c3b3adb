"""What every benchmark records next to its figures: the machine, its load, the commit."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from exporter.version import build_commit


def machine() -> dict[str, Any]:
    """CPU model and count, memory, kernel and Python: figures mean little without them."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def run_context() -> dict[str, Any]:
    """The machine, the kube2git commit and the 1-minute load average at the end of a run (a
    shared machine's other jobs slow absolute figures down; ratios measured together less so)."""
    return {
        "machine": machine(),
        "commit": build_commit(),
        "load_average": round(os.getloadavg()[0], 2),
    }
