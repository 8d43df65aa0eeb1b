"""The environment of a run: package versions, device, git commit and whether the tree was dirty, and on
the CPU the machine's speed (``harness.speed_probe``)."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch", "transformers", "peft", "datasets", "accelerate", "safetensors", "scikit-learn", "scipy",
    "numpy", "pandas", "lm-eval", "timm", "open-clip-torch", "peft-harness",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the harness checkout; results/ does not make the tree dirty."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)results")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name as the kernel reports it (``platform.processor()`` is often empty or just
    the architecture on Linux); two records of one commit and seed whose scores differ in the last
    digits usually come from CPUs of different kinds."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def environment_info(device: Any = None, *, probe: bool = True) -> dict[str, Any]:
    """The run's environment. ``probe=False`` (a cancelled run, recorded inside a stop's grace period:
    SLURM gives 30 s) never spends seconds measuring the speed probe; it keeps one measured already."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "packages": package_versions(),
        **git_state(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        # The SIMD kernels torch dispatches to (AVX2, AVX512 ...): float results, and so a run's
        # last digits, differ between capabilities even at the same commit, seed and thread count.
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cuda_available"] = torch.cuda.is_available()
        if device is not None and getattr(device, "type", None) == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
            info["cuda_version"] = torch.version.cuda
        else:
            info["device_name"] = platform.processor() or platform.machine()
        info["device"] = str(device) if device is not None else None
    except ImportError:
        return info
    if device is None or getattr(device, "type", None) == "cpu":
        from harness import speed_probe

        measured = speed_probe.measure() if probe else speed_probe.measured()  # once per process
        if measured is not None:
            info["speed_probe"] = measured
    return info
