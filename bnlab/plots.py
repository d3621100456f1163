"""``bnlab-plot RUN_DIR``: figures drawn from run records only (never from W&B).

Each figure states its scale (dataset and size, steps, batch, lr, seed) in its
title, names the arms in the legend, and uses the Okabe-Ito colorblind-safe
palette. PNG and PDF are written to ``RUN_DIR/figures/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnlab.results import find_runs, read_metrics, read_summary

# Okabe & Ito (2008) colorblind-safe palette, one color per arm.
ARM_COLORS = {"bn": "#0072B2", "none": "#D55E00"}
EXTRA_COLORS = ["#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def arm_color(arm: str, i: int) -> str:
    return ARM_COLORS.get(arm, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def scale_line(summary: dict) -> str:
    d = summary["data"]
    return (
        f"{summary['model']} (width {summary['width']}) on {d['name']}, {d['train_size']} train / "
        f"{d['test_size']} test images, {summary['steps']} steps of batch {summary['batch_size']}, "
        f"lr {summary['lr']}, seed {summary['seed']}"
    )


def series(rows: list[dict], arm: str, split: str, key: str):
    pts = [(r["step"], r[key]) for r in rows if r["arm"] == arm and r["split"] == split and key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(run_dir: Path) -> list[Path]:
    """Train/test loss, test accuracy and gradient norm vs step, every arm on each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, rows = read_summary(run_dir), read_metrics(run_dir)
    arms = list(summary["arms"])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    panels = [
        (axes[0, 0], "train", "loss", "train loss (cross-entropy, nats)", True),
        (axes[0, 1], "test", "loss", "test loss (cross-entropy, nats)", False),
        (axes[1, 0], "test", "acc", "test accuracy (fraction)", False),
        (axes[1, 1], "train", "grad_norm", "global gradient norm ||g||_2", True),
    ]
    for ax, split, key, label, logy in panels:
        for i, arm in enumerate(arms):
            xs, ys = series(rows, arm, split, key)
            style = {"marker": "o", "ms": 3} if split == "test" else {"lw": 1}
            ax.plot(xs, ys, color=arm_color(arm, i), label=arm, **style)
            div = summary["arms"][arm]["diverged_step"]
            if div is not None:
                ax.axvline(div, color=arm_color(arm, i), ls=":", lw=1)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(title="arm")
    fig.suptitle(f"bnlab pair {summary['pair_id']}: {scale_line(summary)}", fontsize=9)
    return save(fig, run_dir / "figures", "curves")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bnlab-plot", description="Draw figures from bnlab run records (a run or sweep dir)."
    )
    parser.add_argument("path", type=Path, help="a run directory or a multirun directory")
    args = parser.parse_args(argv)
    runs = find_runs(args.path) if args.path.is_dir() else []
    if not runs:
        print(f"bnlab-plot: error: {args.path} holds no run records (summary.json); "
              f"pass a bnlab run or multirun directory", file=sys.stderr)
        return 2
    for run in runs:
        for p in plot_curves(run):
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
