"""Describe the machine a benchmark ran on, so every JSON result says where its numbers come from."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_machine() -> dict[str, object]:
    """CPU, cores, memory, OS, Python and the versions of the libraries whose speed we measure."""
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "memory_gib": _mem_gib(),
        "gpu": None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "packages": {d: _version(d) for d in ("torch", "transformers", "faust-streaming", "aiokafka", "redis", "tritonclient", "nvidia-pytriton")},
    }
