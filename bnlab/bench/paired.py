"""bnlab's paired trainer under the bench's clock, and the probe-cadence ratio (measured here only).

The clock is read through the trainer's ``Hooks`` (bnlab/train/loop.py), nothing is patched: the
window opens when batch number ``warmup`` is about to be drawn and closes when the final evaluation
is due; the trainer skips test-set evaluation in these runs (``Hooks.evaluate=False``).
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bnlab.bench.machine import sync
from bnlab.metrics import registry


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("bnlab.configs", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def probes_off(cfg) -> list[str]:
    """``metrics.<name>.every=null`` for every registered measurement in the config."""
    return [f"metrics.{name}.every=null" for name in registry.MEASUREMENTS if name in cfg.metrics]


def cadence_period(cfg) -> int:
    """Least common multiple of the probe cadences that are on (one full period of them)."""
    period = 1
    for name in registry.MEASUREMENTS:
        every = registry.every(cfg.metrics.get(name))
        if every:
            period = math.lcm(period, every)
    return period


@contextlib.contextmanager
def preserved_globals():
    """Global torch switches a run may flip (determinism, TF32, matmul precision), restored after."""
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    matmul = torch.get_float32_matmul_precision()
    cudnn_tf32, cuda_tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    cudnn_bench = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn_tf32, cuda_tf32
        torch.backends.cudnn.benchmark = cudnn_bench


def math_mode() -> str:
    return (f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, matmul precision "
            f"{torch.get_float32_matmul_precision()}, deterministic={torch.are_deterministic_algorithms_enabled()}")


class Window:
    """The timed window of one run: opens before step ``start``'s batch, closes before the first evaluation
    due after it (the final one, with ``train.eval_every`` = run length)."""

    def __init__(self, start: int, device: torch.device):
        self.start, self.device = start, device
        self.opened = self.closed = None

    def before_step(self, step: int) -> None:
        if step == self.start:
            sync(self.device)
            self.opened = time.perf_counter()

    def before_eval(self, step: int) -> None:
        if self.opened is not None and self.closed is None:
            sync(self.device)
            self.closed = time.perf_counter()

    @property
    def seconds(self) -> float | None:
        return None if self.opened is None or self.closed is None else self.closed - self.opened


def paired_run(overrides: list[str], steps: int, warmup: int, device: torch.device, workdir: Path) -> dict:
    """One ``bnlab.train.run`` of ``warmup`` + ``steps`` steps; the last ``steps`` are timed."""
    from bnlab import train

    total = warmup + steps
    # one evaluation due at the end only (skipped: the window closes there)
    cfg = compose([*overrides, f"train.steps={total}", f"train.eval_every={total}"])
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(dir=workdir))
    window = Window(warmup, device)
    hooks = train.Hooks(before_step=window.before_step, before_eval=window.before_eval, evaluate=False)
    with preserved_globals(), contextlib.redirect_stdout(io.StringIO()):
        summary = train.run(cfg, out_dir, hooks)
    shutil.rmtree(out_dir, ignore_errors=True)
    arms = summary["arms"]
    trained = [a["steps_trained"] for a in arms.values()]
    res = {"diverged": [n for n, a in arms.items() if a["diverged"]], "precision": str(cfg.train.precision)}
    if window.seconds is not None and all(t == total for t in trained):
        res.update(seconds=window.seconds, images=steps * int(cfg.data.batch_size) * len(arms),
                   clock="perf_counter window")
    else:  # an arm stopped early (diverged): the window did not close after all its steps
        res.update(seconds=sum(a["train_time_s"] for a in arms.values()),
                   images=sum(trained) * int(cfg.data.batch_size),
                   clock="summary train_time_s of all arms, warm-up included (an arm stopped early)")
    return res


def probe_cadence(base: list[str], steps: int, warmup: int, rounds: int, device: torch.device,
                  workdir: Path) -> list[str]:
    """The paired trainer with the config's probe cadence vs with every probe off, alternated over
    ``rounds`` (a slow spell of a shared machine must not land on one side); report lines, the last
    one the ratio of medians."""
    cfg = compose(base)
    off = probes_off(cfg)
    t_off, t_on = [], []
    for _ in range(rounds):
        t_off.append(paired_run(base + off, steps, warmup, device, workdir)["seconds"])
        t_on.append(paired_run(base, steps, warmup, device, workdir)["seconds"])

    def med(ts: list[float]) -> str:
        spread = f" (rounds {min(ts):.2f}-{max(ts):.2f})" if len(ts) > 1 else ""
        return f"{statistics.median(ts):.2f} s{spread}"

    return [f"probe cadence ({cfg.train.precision}, {steps} timed steps after the warm-up = "
            f"{steps / cadence_period(cfg):.3g} period(s) of the cadence; medians of {rounds} round(s)): "
            f"{med(t_off)} without probes, {med(t_on)} with them",
            f"ratio default probe cadence / no probes: {statistics.median(t_on) / statistics.median(t_off):.3f}"]
