"""Benchmark: what the smoothness probes cost (issue 3's target: default cadence <= +25%).

In one process, on the same model, data and batch:
1. one training step of the BN arm vs one landscape probe, one ICS measurement
   and one divergence probe (median of repeats), as ratios to the step;
2. the paired trainer on the demo config (VGG-11 at 1/4 width, batch 128) with
   the default probe cadence vs with every probe off, as a wall-time ratio
   (``bnlab.bench.paired.probe_cadence``, the one place that ratio is measured).

    python -m bnlab.bench.probes --out results/bench/probes.txt
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bnlab import data, train
from bnlab.bench.machine import machine_lines
from bnlab.bench.paired import compose, probe_cadence
from bnlab.metrics import divergence, ics, landscape

CPU = torch.device("cpu")


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_probe(cfg, repeats: int) -> list[str]:
    """One training step of the BN arm and one of each probe on the same batch, in milliseconds."""
    ds = data.load(cfg.data, CPU)
    batches = data.Batches(ds, int(cfg.data.batch_size), seed=0)
    arm = train.build_arm("bn", cfg, ds.num_classes, CPU, 100)
    blocks = train.probe_blocks(cfg)
    x, y = next(batches)
    train.train_step(arm, x, y, set(), blocks)  # warm-up
    t_step = timed(lambda: train.train_step(arm, x, y, set(), blocks), repeats)
    arm.opt.zero_grad()
    F.cross_entropy(arm.model(x), y).backward()
    grads = [p.grad.clone() for p in arm.model.parameters() if p.requires_grad]
    loss = F.cross_entropy(arm.model(x), y).detach()
    c = cfg.metrics
    grid = landscape.step_grid(float(cfg.optim.lr), c.landscape.lo, c.landscape.hi, int(c.landscape.points))
    div_grid = divergence.log_grid(points=int(c.divergence.points))
    layers = ics.auto_layers(arm.model)
    before = {n: p.detach().clone() for n, p in arm.model.named_parameters()}
    gbefore = {n: p.grad.clone() for n, p in arm.model.named_parameters()}
    costs = {
        f"landscape probe ({len(grid)} step sizes)":
            timed(lambda: landscape.probe(arm.model, F.cross_entropy, x, y, grid, grad=grads, loss=loss), repeats),
        f"ICS ({len(layers)} layers)":
            timed(lambda: ics.internal_covariate_shift(arm.model, F.cross_entropy, x, y, before, gbefore, layers),
                  repeats),
        f"divergence probe ({len(div_grid)} step sizes)":
            timed(lambda: divergence.relative_loss(arm.model, F.cross_entropy, x, y, div_grid, grad=grads,
                                                   loss=loss), repeats),
    }
    lines = [f"one training step (BN arm, batch {cfg.data.batch_size}): {t_step * 1e3:.1f} ms"]
    lines += [f"{name}: {t * 1e3:.1f} ms = {t / t_step:.2f} training steps" for name, t in costs.items()]
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bnlab.bench.probes", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("BNLAB_DATA_DIR", "../shared/data/cifar10-mini"))
    ap.add_argument("--steps", type=int, default=200, help="timed steps of the cadence comparison (one period)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the cadence comparison (medians)")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["BNLAB_DATA_DIR"] = str(Path(args.data).resolve())
    base = ["experiment=demo", "logger=none", "train.progress=off", "train.save_checkpoint=false",
            "train.checkpoint_every=null", "train.resume=never", "device=cpu"]
    cfg = compose(base)
    cadence = ", ".join(f"{name} every {block.every}" for name, block in cfg.metrics.items() if block.get("every"))
    lines = [
        "bnlab probe benchmark (python -m bnlab.bench.probes)",
        *machine_lines(CPU),
        f"model: {cfg.model.arch} width {cfg.model.width}, batch {cfg.data.batch_size}, "
        f"data: CIFAR-10 at {args.data}, arms {list(cfg.arms)}",
        f"default cadence: {cadence}",
        "",
        *per_probe(cfg, repeats=5),
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        lines += probe_cadence(base, args.steps, args.warmup, args.repeats, CPU, Path(tmp))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
