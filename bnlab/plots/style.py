"""The house style every bnlab figure shares: palette, fonts, titles, log ticks, and ``save``.

Arms use the Okabe & Ito (2008) colorblind-safe palette; sequential quantities
use viridis / cividis. Every figure's title states its data scale (``scale_line``).
"""

from __future__ import annotations

import re
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bnlab import posthoc
from bnlab.records.store import Run, finite

# Okabe & Ito (2008) colorblind-safe palette, one color per arm.
ARM_COLORS = {"bn": "#0072B2", "none": "#D55E00"}
EXTRA_COLORS = ["#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

# The 2 x 2 training-curve panels (curves, curves_seeds): grid position, split, key, title, y label, log y.
CURVE_PANELS = [
    ((0, 0), "train", "loss", "(a) training loss (batch)", "train loss (cross-entropy, nats)", True),
    ((0, 1), "test", "loss", "(b) test loss", "test loss (cross-entropy, nats)", False),
    ((1, 0), "test", "acc", "(c) test accuracy", "test accuracy (fraction)", False),
    ((1, 1), "train", "grad_norm", "(d) gradient norm", "global gradient norm ||g||_2", True),
]

STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "legend.title_fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
    "savefig.dpi": 150, "pdf.fonttype": 42, "hatch.linewidth": 0.8,
}

STEP = "training step"
LOSS = "loss (cross-entropy, nats)"
ACC = "accuracy (fraction)"


class Skip(Exception):
    """Raised by a figure function when its data is absent; the message is the reason."""


def arm_color(arm: str, i: int) -> str:
    return ARM_COLORS.get(arm, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def scale_line(summary: dict) -> str:
    d = summary["data"]
    return (
        f"{summary['model']} (width {summary['width']}) on {d['name']}, {d['train_size']} train / "
        f"{d['test_size']} test images, {summary['steps']} steps of batch {summary['batch_size']}, "
        f"lr {summary['lr']}, seed {summary['seed']}"
    )


def _set_text(values) -> str:
    uniq = []
    for v in values:
        if v not in uniq:
            uniq.append(v)
    try:
        uniq.sort()
    except TypeError:
        pass
    return str(uniq[0]) if len(uniq) == 1 else "{" + ", ".join(str(v) for v in uniq) + "}"


def sweep_scale_line(summaries: list[dict]) -> str:
    """``scale_line`` of several runs: shared values as is, varying ones as a set, and the seed count."""
    s = summaries
    seeds = _set_text([x["seed"] for x in s])
    n_seeds = len({x["seed"] for x in s})
    return (
        f"{_set_text([x['model'] for x in s])} (width {_set_text([x['width'] for x in s])}) on "
        f"{_set_text([x['data']['name'] for x in s])}, {_set_text([x['data']['train_size'] for x in s])} train / "
        f"{_set_text([x['data']['test_size'] for x in s])} test images, {_set_text([x['steps'] for x in s])} "
        f"steps of batch {_set_text([x['batch_size'] for x in s])}, lr {_set_text([x['lr'] for x in s])}, "
        f"{n_seeds} seed{'s' if n_seeds > 1 else ''} {seeds}, {len(s)} runs"
    )


def series(rows: list[dict], arm: str, split: str, key: str):
    pts = [(r["step"], r[key]) for r in rows if r["arm"] == arm and r["split"] == split and key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


# ----------------------------------------------------------------------------- helpers


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _style():
    plt = _plt()
    with plt.rc_context(STYLE):
        yield plt


def _as_run(run) -> Run:
    return run if isinstance(run, Run) else Run(Path(run))


def _num(v) -> float:
    """A record value as a float to draw; null, NaN and Inf (an arm that blew up) leave a gap."""
    return float(v) if finite(v) else float("nan")


def _arr(values) -> np.ndarray:
    return np.array([_num(v) for v in values], dtype=float)


def _positive(a: np.ndarray) -> np.ndarray:
    """Non-positive values masked to NaN (for log axes)."""
    a = np.asarray(a, dtype=float).copy()
    a[~(a > 0)] = np.nan
    return a


def _auto_log(ax, *arrays, ratio: float = 30.0) -> bool:
    """Log y when every finite value is positive and they span more than ``ratio``."""
    vals = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays]) if arrays else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size and (vals > 0).all() and vals.max() / vals.min() > ratio:
        ax.set_yscale("log")
        return True
    return False


def _titles(fig, title: str, subtitle: str, width_in: float | None = None) -> None:
    """Two-part title: what the figure shows, then its data scale; both wrapped to the figure width."""
    width_in = fig.get_figwidth() if width_in is None else width_in
    chars = max(50, int(width_in * 72 / (9 * 0.6)))
    fig.suptitle(textwrap.fill(title, chars) + "\n" + textwrap.fill(subtitle, chars), fontsize=9)


def _log_ticks(ax) -> None:
    """Readable ticks on a log y axis: plain numbers, and 2/5 subdivisions when it spans under 2 decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if ax.get_yscale() != "log":
        return
    lo, hi = ax.get_ylim()
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    if lo > 0 and hi / lo < 100:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if hi / lo < 8 else (1.0, 2.0, 5.0)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif lo > 0 and hi / lo < 1e5:
        ax.yaxis.set_major_formatter(fmt)


def _run_subtitle(run: Run, extra: str = "") -> str:
    sub = f"pair {run.summary['pair_id']}: {scale_line(run.summary)}"
    return sub + (f"; {extra}" if extra else "")


def _arm_index(run: Run) -> dict[str, int]:
    return {arm: i for i, arm in enumerate(run.arms)}


def _panel_letter(i: int) -> str:
    """a, b, ..., z, then 27, 28, ...: panel labels for any number of panels."""
    return chr(ord("a") + i) if i < 26 else str(i + 1)


# bnlab-plot has no --out: figures go beside the records they are drawn from
WRITE_FIX = ("free space, or copy the records to a writable folder and plot them there "
             "(bnlab-plot writes into each run's and sweep's figures/)")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """The figure as ``out_dir/name.png`` and ``.pdf``, each written whole or not at all."""
    plt = _plt()
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    try:
        for ax in fig.axes:
            _log_ticks(ax)
        posthoc.save_figure(fig, paths[0], WRITE_FIX, dpi=150)
        # same data, same bytes: clean diffs
        posthoc.save_figure(fig, paths[1], WRITE_FIX, metadata={"CreationDate": None})
    finally:
        plt.close(fig)
    return paths


def _legend_arms(ax, handles=None, **kw):
    kw.setdefault("title", "arm")
    kw.setdefault("frameon", False)
    if handles is not None:
        return ax.legend(handles=handles, **kw)
    return ax.legend(**kw)


def _mark_divergence(ax, run: Run, arm: str, color: str, label: bool = True) -> None:
    """A dotted vertical line (and a small "<arm> diverged" label) at the step the arm diverged."""
    div = run.summary["arms"].get(arm, {}).get("diverged_step")
    if div is not None:
        ax.axvline(div, color=color, ls=":", lw=1)
        if label:
            ax.text(div, 0.98, f" {arm} diverged", transform=ax.get_xaxis_transform(), rotation=90, ha="right",
                    va="top", fontsize=6.5, color=color)


def _markers(n: int, ms: float = 3) -> dict:
    """Markers on sparse traces, so that a trace of one or a few points is still visible."""
    return {"marker": "o", "ms": ms} if n <= 25 else {}




def _min_steps(counts: dict[str, int], need: int, what: str) -> None:
    """Skip unless some arm has ``need`` steps of ``what`` (one point is not a trace)."""
    most = max(counts.values(), default=0)
    if most == 0:
        raise Skip(f"no {what}")
    if most < need:
        raise Skip(f"{what} at only {most} step{'s' if most > 1 else ''} (a trace needs {need})")


def _band_patch(color, label):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, alpha=0.25, label=label)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")
