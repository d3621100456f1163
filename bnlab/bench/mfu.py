"""Model FLOP utilization: training-step FLOPs (``FlopCounterMode``) against a timed matmul peak."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bnlab.bench.machine import native_bf16, sync
from bnlab.bench.standard import build_model


def step_flops(cfg, kind: str, num_classes: int, device: torch.device) -> int:
    """FLOPs of one training step (forward + backward) of a fresh model, counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg, kind, num_classes, device).train()
    b = int(cfg.data.batch_size)
    x = torch.randn(b, 3, 32, 32, device=device)
    y = torch.randint(0, num_classes, (b,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int, precision: str = "highest") -> float:
    """FLOP/s of an n x n x n ``torch.matmul`` (best of ``reps`` timed after two warm-up calls)."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        best = float("inf")
        inner = 10 if device.type == "cuda" else 1
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                a @ b
            sync(device)
            best = min(best, (time.perf_counter() - t0) / inner)
        return 2 * n**3 / best
    finally:
        torch.set_float32_matmul_precision(prev)


def matmul_peaks(device: torch.device, n: int) -> dict[str, float]:
    """fp32, tf32 and bf16 matmul FLOP/s on a GPU; on a CPU fp32, and bf16 where the CPU has native
    bf16 units (AMX / AVX512-BF16; elsewhere bf16 is an emulated slow path, no meaningful peak)."""
    peaks = {"fp32": matmul_peak(device, torch.float32, n, 3)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak(device, torch.float32, n, 3, precision="high")
    if device.type == "cuda" or native_bf16(device):
        peaks["bf16"] = matmul_peak(device, torch.bfloat16, n, 3)
    return peaks


def peak_for(precision: str, device: torch.device, peaks: dict) -> str:
    """The measured peak that matches a run's math (tf32 exists on a GPU only; a CPU without
    native bf16 has only its fp32 peak)."""
    if device.type == "cuda" or precision in peaks:
        return precision
    return "fp32"


def mfu_text(flops: float | None, steps: int, peaks: dict, seconds: float, peak: str) -> str:
    """``; X TFLOP/s = MFU Y% of PEAK peak`` for ``steps`` steps of ``flops`` each in ``seconds``, or ""."""
    if not flops or peak not in peaks:
        return ""
    achieved = flops * steps / seconds
    return f"; {achieved / 1e12:.3g} TFLOP/s = MFU {100 * achieved / peaks[peak]:.1f}% of {peak} peak"
