"""What every benchmark script records beside its numbers: the machine, the versions, peak memory.

Each script takes ``--json PATH`` and writes its results there with :func:`write_json`, so that
``benchmarks/all.py`` can run them one by one (each in a fresh process: its own peak memory) and
print one table.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOSELECT_SHARED", REPO.parent / "shared"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(device: torch.device) -> dict:
    """The device (GPU name or CPU model and cores) and the library versions."""
    import numpy
    import torchvision

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "emoselect_commit": commit,
    }


def write_json(path: str | None, results: dict, device: torch.device) -> None:
    """``results`` with the machine and this process's peak memory (RSS, and GPU where used) to ``path``."""
    if not path:
        return
    extra = {"peak_rss_mb": peak_rss_mb(), **machine(device)}
    if device.type == "cuda":
        extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    Path(path).write_text(json.dumps({**results, **extra}, indent=1, default=float))
