"""``bnlab-analyze RUN_DIR``: curvature and loss surfaces of a finished run's final weights.

Reads the run's resolved ``config.yaml`` and ``checkpoints/<arm>.pt`` (no
retraining), rebuilds every arm, and on a fixed subset of the data computes:

- the top Hessian eigenvalues (Lanczos), the Hutchinson trace and the SLQ
  spectral density (metrics/curvature.py), in BOTH BN modes: with batch
  statistics and with running statistics (Ghorbani et al. 2019 vs PyHessian;
  docs/science.md sec. 5). The Hessian uses the subset's first batch of the run's
  batch size, so batch statistics are those of a training-size batch;
- 1D and 2D filter-normalized loss surfaces around the final weights (Li et
  al. 2018; metrics/surface.py), with the same direction seed for every arm,
  biases and norm parameters zeroed in the directions, evaluated on the whole
  subset in eval mode (running statistics) by default.

Results go to ``RUN_DIR/analysis/analysis.json``; ``bnlab-plot`` draws them.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnlab import data, losses, models, posthoc
from bnlab.errors import BnlabError
from bnlab.metrics import curvature, surface
from bnlab.records.store import DamagedRecord, dumps, read_config, read_summary, run_stamp

SCHEMA = 1
# bnlab-analyze writes into the run it analyzes; there is no --out
WRITE_FIX = "free space, or copy the run directory to a writable place and analyze the copy"


def load_arm(run_dir: Path, cfg, arm: str, num_classes: int, device) -> torch.nn.Module:
    path = run_dir / "checkpoints" / f"{arm}.pt"
    if not path.exists():
        raise BnlabError(f"{path} is missing; re-run with train.save_checkpoint=true")
    model = models.build(cfg.model, arm, cfg.norm, num_classes)
    try:
        state = torch.load(path, map_location=device, weights_only=True)["model"]
        model.load_state_dict(state)
    except Exception as exc:
        raise BnlabError(f"{path} does not fit the run's config ({exc.__class__.__name__}); "
                         f"is it from another run?") from None
    return model.to(device)


def subset_batches(ds: data.Dataset, split: str, samples: int, batch_size: int):
    """The first ``samples`` images of a split, normalized, in batches of ``batch_size``."""
    x_all, y_all = (ds.train_x, ds.train_y) if split == "train" else (ds.test_x, ds.test_y)
    if samples > len(y_all):
        raise BnlabError(f"--samples {samples} exceeds the {len(y_all)} {split} images; lower it")
    norm = data.Batches(ds, min(batch_size, ds.train_size), seed=0)
    return [(norm.normalize(x_all[i : i + batch_size]), y_all[i : i + batch_size])
            for i in range(0, samples, batch_size)]


def analyze_arm(model, batches, args, directions, loss_fn=F.cross_entropy) -> dict:
    """Curvature and loss surfaces of one arm under the run's own loss (``data.loss``: the squared error
    for the deep linear network, cross-entropy for the image classifiers)."""
    x, y = batches[0]
    out = {"curvature": {}}
    for mode in ("batch", "running"):
        eigs, info = curvature.top_eigenvalues(model, loss_fn, x, y, k=args.k, bn_mode=mode,
                                               tol=args.tol, max_hvps=args.max_hvps, return_info=True)
        trace = curvature.hutchinson_trace(model, loss_fn, x, y, args.trace_samples, bn_mode=mode)
        dens = curvature.spectral_density(model, loss_fn, x, y, num_runs=args.slq_runs,
                                          lanczos_steps=args.slq_steps, bn_mode=mode)
        out["curvature"][mode] = {
            "top_eigenvalues": eigs, "hvps": info["hvps"], "converged": info["converged"],
            "trace": trace["trace"], "trace_stderr": trace["stderr"], "trace_samples": trace["samples"],
            "density": {"grid": dens["grid"], "density": dens["density"], "sigma": dens["sigma"]},
        }
    d1, d2 = (surface.filter_normalize(d, model) for d in directions)
    line = torch.linspace(-args.span, args.span, args.points_1d).tolist()
    grid = torch.linspace(-args.span, args.span, args.points_2d).tolist()
    out["surface_1d"] = surface.surface_1d(model, loss_fn, batches, d1, line, bn_mode=args.surface_bn_mode)
    out["surface_2d"] = surface.surface_2d(model, loss_fn, batches, d1, d2, grid, grid,
                                           bn_mode=args.surface_bn_mode)
    return out


def analyze(run_dir: Path, args) -> Path:
    cfg_path = run_dir / "config.yaml"
    if not (cfg_path.exists() and (run_dir / "summary.json").exists()):
        raise BnlabError(f"{run_dir} holds no finished run record (config.yaml, summary.json); pass a run directory")
    try:
        cfg = OmegaConf.create(read_config(run_dir))
        summary = read_summary(run_dir)
    except DamagedRecord as exc:
        raise BnlabError(f"{run_dir}: {exc}; repair the file or rerun that run") from None
    if args.data_root:
        cfg.data.root = args.data_root
    out = run_dir / "analysis" / "analysis.json"
    posthoc.check_writable(out.parent, WRITE_FIX)  # before minutes of compute, not after
    device = torch.device("cpu") if args.device == "cpu" or not torch.cuda.is_available() else torch.device("cuda")
    ds = data.load(cfg.data, device)
    batch_size = args.batch_size or int(cfg.data.batch_size)
    batches = subset_batches(ds, args.split, args.samples, batch_size)
    result = {
        "schema": SCHEMA,
        "pair_id": summary["pair_id"],
        "run_stamp": run_stamp(run_dir),  # whose final weights these are: bnlab-plot checks it
        "subset": {"split": args.split, "samples": args.samples, "batch_size": batch_size,
                   "hessian_batch": len(batches[0][1]), "dataset": summary["data"]},
        "settings": {k: v for k, v in vars(args).items() if k not in ("run_dir", "data_root")},
        "arms": {},
    }
    for arm in summary["arms"]:
        model = load_arm(run_dir, cfg, arm, ds.num_classes, device)
        # one seed for every arm: identical directions on the shared conv/linear weights
        directions = [surface.random_direction(model, args.direction_seed + i) for i in range(2)]
        result["arms"][arm] = analyze_arm(model, batches, args, directions, losses.of(cfg.data))
        top = result["arms"][arm]["curvature"]
        print(f"{arm}: top eigenvalue {top['batch']['top_eigenvalues'][0]:.4g} (batch statistics), "
              f"{top['running']['top_eigenvalues'][0]:.4g} (running statistics)")
    return posthoc.write_text(out, dumps(result) + "\n", WRITE_FIX)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bnlab-analyze", description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path, help="a bnlab run directory with checkpoints/")
    ap.add_argument("--split", choices=("train", "test"), default="train", help="data the analysis uses")
    ap.add_argument("--samples", type=int, default=512, help="first N images of the split")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the run's data.batch_size")
    ap.add_argument("--k", type=int, default=3, help="top-k Hessian eigenvalues")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--max-hvps", type=int, default=60)
    ap.add_argument("--trace-samples", type=int, default=20)
    ap.add_argument("--slq-runs", type=int, default=2)
    ap.add_argument("--slq-steps", type=int, default=30)
    ap.add_argument("--direction-seed", type=int, default=0, help="the same for every arm")
    ap.add_argument("--span", type=float, default=1.0, help="surfaces cover [-span, span]")
    ap.add_argument("--points-1d", type=int, default=21)
    ap.add_argument("--points-2d", type=int, default=11)
    ap.add_argument("--surface-bn-mode", choices=("running", "batch"), default="running")
    ap.add_argument("--data-root", default=None, help="where the data is now, if it moved since the run")
    ap.add_argument("--device", choices=("auto", "cpu"), default="auto")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("samples", "k", "max_hvps", "trace_samples", "slq_runs", "slq_steps", "points_1d", "points_2d"):
        if getattr(args, name) < (2 if name == "trace_samples" else 1):
            print(f"bnlab-analyze: error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    for name in ("span", "tol"):  # float() reads "nan" and "inf": a NaN span gives NaN surfaces
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            print(f"bnlab-analyze: error: --{name} {value} must be a finite number > 0; pass e.g. "
                  f"--{name} {parser().get_default(name)}", file=sys.stderr)
            return 2
    try:
        print(analyze(args.run_dir, args))
    except BnlabError as exc:
        print(f"bnlab-analyze: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
