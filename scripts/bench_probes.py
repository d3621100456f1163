"""Benchmark: what the smoothness probes cost (issue 3's target: default cadence <= +25%).

In one process, on the same model, data and batch:
1. one training step of the BN arm vs one landscape probe, one ICS measurement
   and one divergence probe (median of repeats), as ratios to the step;
2. the whole demo run (VGG-11 at 1/4 width, batch 128) with the default probe
   cadence vs with every probe off, as a wall-time ratio (alternating order,
   best of ``--repeats`` each).

    python scripts/bench_probes.py --out results/bench/probes.txt
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from bnlab import data, train
from bnlab.metrics import divergence, ics, landscape

OFF = ["metrics.landscape.every=null", "metrics.ics.every=null", "metrics.divergence.every=null",
       "metrics.layer_norms.every=null"]


def machine() -> str:
    return (f"{platform.platform()}, {os.cpu_count()} CPUs ({platform.processor() or 'unknown cpu'}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_probe(cfg, repeats: int) -> list[str]:
    ds = data.load(cfg.data, torch.device("cpu"))
    batches = data.Batches(ds, int(cfg.data.batch_size), seed=0)
    arm = train.build_arm("bn", cfg, ds.num_classes, torch.device("cpu"), 100)
    x, y = next(batches)
    lr = float(cfg.optim.lr)
    train.train_step(arm, x, y, set(), cfg)  # warm-up

    def step():
        train.train_step(arm, x, y, set(), cfg)

    def forward_backward():
        arm.opt.zero_grad()
        F.cross_entropy(arm.model(x), y).backward()

    forward_backward()
    params = [p for p in arm.model.parameters() if p.requires_grad]
    grads = [p.grad.clone() for p in params]
    loss = F.cross_entropy(arm.model(x), y).detach()
    grid = landscape.step_grid(lr, cfg.metrics.landscape.lo, cfg.metrics.landscape.hi,
                               int(cfg.metrics.landscape.points))
    div_grid = divergence.log_grid(points=int(cfg.metrics.divergence.points))
    layers = ics.auto_layers(arm.model)
    before = {n: p.detach().clone() for n, p in arm.model.named_parameters()}
    gbefore = {n: p.grad.clone() for n, p in arm.model.named_parameters()}
    t_step = timed(step, repeats)
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


def whole_run(overrides: list[str], repeats: int, workdir: Path) -> list[str]:
    def run(extra, tag, i):
        with initialize_config_module("bnlab.configs", version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, *extra])
        t0 = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            train.run(cfg, workdir / f"{tag}{i}")
        return time.perf_counter() - t0

    on, off = [], []
    for i in range(repeats):  # alternate so drift in machine load hits both alike
        off.append(run(OFF, "off", i))
        on.append(run([], "on", i))
    best_on, best_off = min(on), min(off)
    return [
        f"whole run without probes: {best_off:.1f} s (runs: {', '.join(f'{t:.1f}' for t in off)})",
        f"whole run, default cadence: {best_on:.1f} s (runs: {', '.join(f'{t:.1f}' for t in on)})",
        f"wall-time ratio default cadence / no probes: {best_on / best_off:.3f} (target <= 1.25)",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("BNLAB_DATA_DIR", "../shared/data/cifar10-mini"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    os.environ["BNLAB_DATA_DIR"] = str(Path(args.data).resolve())
    overrides = ["experiment=demo", "logger=none", "train.progress=off", f"train.steps={args.steps}",
                 "train.save_checkpoint=false"]
    with initialize_config_module("bnlab.configs", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    c = cfg.metrics
    lines = [
        "bnlab probe benchmark (scripts/bench_probes.py)",
        f"machine: {machine()}",
        f"model: {cfg.model.arch} width {cfg.model.width}, batch {cfg.data.batch_size}, "
        f"data: CIFAR-10 at {args.data}, arms {list(cfg.arms)}, {args.steps} steps",
        f"default cadence: landscape every {c.landscape.every}, ICS every {c.ics.every}, "
        f"divergence every {c.divergence.every}, layer norms every {c.layer_norms.every}",
        "",
        *per_probe(cfg, repeats=5),
        "",
    ]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lines += whole_run(overrides, args.repeats, Path(tmp))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
