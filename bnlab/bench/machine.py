"""The one description of the machine a benchmark ran on, printed at the top of every bench report."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{device} ({p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    return f"{device} ({cpu_model()})"


def git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def load_average() -> str:
    """Other processes on a small machine skew seconds: reports print this before and after."""
    return "load average (1, 5, 15 min) " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine_lines(device: torch.device) -> list[str]:
    """Date, host, CPU and thread counts, torch, device and bnlab commit: the report's header."""
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {platform.node()}, {platform.platform()}, Python {platform.python_version()}",
        f"cpu: {cpu_model()}; os.cpu_count() = {os.cpu_count()}, torch.get_num_threads() = "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS = {os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"torch {torch.__version__}; device: {device_name(device)}; bnlab commit {git_commit()}",
        load_average(),
    ]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs on native units (any CUDA GPU bnlab targets; a CPU with oneDNN bf16)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
