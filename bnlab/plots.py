"""``bnlab-plot RUN_OR_SWEEP_DIR``: figures drawn from run records only (never from W&B).

Every figure names the arms in its legend, uses the Okabe-Ito colorblind-safe
palette for arms (viridis / cividis for sequential quantities), labels its axes
with units and states the data scale (model, width, dataset and its train/test
size, steps, batch, lr, seeds) in its title. Each is written as PNG (150 dpi)
and PDF. A figure whose data is absent is skipped with a one-line note
(``skipped <figure>: <reason> (<where>)``), never drawn empty.

Per run, into ``RUN_DIR/figures/``:

- ``curves``: train/test loss, test accuracy, global gradient norm vs step;
- ``landscape``: Santurkar et al. 2018 Fig. 4: loss band, gradient
  predictiveness band, effective beta-smoothness (probe rows, ``landscape/*``);
- ``layer_norms``: per-layer gradient and weight norms of conv/linear weights,
  colored by depth (train rows, ``grad_norm/<param>``, ``weight_norm/<param>``);
- ``activations``: Ioffe & Szegedy 2015 Fig. 1: percentiles of tracked channels
  (train rows, ``act/<layer>/c<ch>/p<q>``);
- ``curvature``: top Hessian eigenvalue vs step, per BN mode (probe rows);
- ``ics``: internal covariate shift, ``ics/<param>/l2`` and ``/cos`` (probe rows);
- ``spectral_density``, ``surface_1d``, ``surface_2d``: from
  ``analysis/analysis.json`` (``bnlab-analyze``);
- ``slq_density``: Ghorbani et al. 2019: the Hessian's SLQ density per probe step
  and BN mode, from the in-loop SLQ probe (``curvature/slq*``, metrics.curvature.slq_runs).

Per sweep (a directory holding several runs), into ``SWEEP_DIR/figures/``:
``heatmap_final_acc`` (lr x batch size, diverged cells hatched),
``acc_vs_lr``, ``init_sensitivity`` and ``curves_seeds`` (mean and min-max band
over seeds of one config); ``init_scales_depth`` and ``divergence_depth``
(Bjorck et al. 2018: per-layer scales at step 0 and r(eta), a line per ResNet
depth) and ``landscape_seeds`` (Santurkar Fig. 4 over seeds, e.g. the DLN).

The data behind the figures is exposed by small functions the figures use
(``landscape_data``, ``heatmap_data``, ``lr_sweep_data``, ``init_data``,
``seed_groups``, ``seed_band``, ...) so tests and reports can check it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnlab import posthoc
from bnlab.results import Run, finite, flatten, load_runs, loads, stamp_mismatch

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

RUN_FIGURES = ("curves", "landscape", "layer_norms", "activations", "curvature", "ics",
               "spectral_density", "surface_1d", "surface_2d", "slq_density")
SWEEP_FIGURES = ("heatmap_final_acc", "acc_vs_lr", "init_sensitivity", "curves_seeds", "init_scales_depth",
                 "divergence_depth", "landscape_seeds")

# config keys that do not make two runs different experiments (seed: the replicate axis)
IGNORED_CONFIG = ("seed", "logger", "train.progress", "data.root", "data.download")

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


# ----------------------------------------------------------------------------- per run: curves


def plot_curves(run) -> list[Path]:
    """Train/test loss, test accuracy and gradient norm vs step, every arm on each panel."""
    run = _as_run(run)
    arms = run.arms
    if not any(run.rows(arm, "train", "loss") for arm in arms):
        raise Skip("no train rows with a loss")
    with _style() as plt:
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
        panels = [(axes[r, c], *rest) for (r, c), *rest in CURVE_PANELS]
        for ax, split, key, title, label, logy in panels:
            for i, arm in enumerate(arms):
                xs, ys = run.series(arm, split, key)
                style = {"marker": "o", "ms": 3} if split == "test" else {"lw": 1, **_markers(len(xs), 2.5)}
                ax.plot(xs, _arr(ys), color=arm_color(arm, i), label=arm, **style)
                if split == "test" and key == "acc":
                    bx, by = run.series(arm, "test", "acc_batch_stats")
                    if bx:
                        ax.plot(bx, _arr(by), color=arm_color(arm, i), ls="--", lw=1, marker="^", ms=3,
                                label=f"{arm} (batch statistics)")
                _mark_divergence(ax, run, arm, arm_color(arm, i))
            ax.set_title(title, loc="left")
            ax.set_xlabel(STEP)
            ax.set_ylabel(label)
            if logy:
                ax.set_yscale("log")
            _legend_arms(ax)
        _titles(fig, "Training curves (dotted vertical line: step an arm diverged)", _run_subtitle(run))
        return save(fig, run.dir / "figures", "curves")


# ----------------------------------------------------------------------------- per run: landscape

LANDSCAPE_KEYS = ("loss_min", "loss_max", "grad_pred_min", "grad_pred_max", "beta_eff")


def landscape_data(run, arm: str) -> dict[str, np.ndarray]:
    """The arrays the ``landscape`` figure draws for one arm: probe rows holding ``landscape/loss_min``.

    Keys ``step`` and each of ``LANDSCAPE_KEYS`` (None in the records -> NaN), in step order.
    """
    rows = _as_run(run).rows(arm, "probe", "landscape/loss_min")
    out = {"step": np.array([r["step"] for r in rows], dtype=float)}
    for key in LANDSCAPE_KEYS:
        out[key] = _arr(r.get(f"landscape/{key}") for r in rows)
    return out


def _min_steps(counts: dict[str, int], need: int, what: str) -> None:
    """Skip unless some arm has ``need`` steps of ``what`` (one point is not a trace)."""
    most = max(counts.values(), default=0)
    if most == 0:
        raise Skip(f"no {what}")
    if most < need:
        raise Skip(f"{what} at only {most} step{'s' if most > 1 else ''} (a trace needs {need})")


def plot_landscape(run) -> list[Path]:
    """Santurkar et al. 2018 Fig. 4: (a) loss band, (b) gradient predictiveness band, (c) beta_eff."""
    from matplotlib.patches import Patch

    run = _as_run(run)
    data = {arm: landscape_data(run, arm) for arm in run.arms}
    _min_steps({a: len(d["step"]) for a, d in data.items()}, 2, "probe rows with landscape/* keys")
    cfg = run.get("metrics.landscape") or {}
    extra = (f"probe every {cfg.get('every', '?')} steps, step sizes eta in [{cfg.get('lo', '?')}, "
             f"{cfg.get('hi', '?')}] x lr ({cfg.get('points', '?')} points), same batch as the step")
    with _style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
        handles = []
        for arm, d in data.items():
            i = _arm_index(run)[arm]
            c = arm_color(arm, i)
            s = d["step"]
            axes[0].fill_between(s, d["loss_min"], d["loss_max"], color=c, alpha=0.3, lw=0)
            for k in ("loss_min", "loss_max"):
                axes[0].plot(s, d[k], color=c, lw=0.6)
            lo, hi = _positive(d["grad_pred_min"]), _positive(d["grad_pred_max"])
            axes[1].fill_between(s, lo, hi, color=c, alpha=0.3, lw=0)
            for k in (lo, hi):
                axes[1].plot(s, k, color=c, lw=0.6)
            axes[2].plot(s, _positive(d["beta_eff"]), color=c, lw=1.2, **_markers(len(s)))
            handles.append(Patch(facecolor=c, edgecolor=c, alpha=0.5, label=arm))
            for ax in axes:
                _mark_divergence(ax, run, arm, c)
        _auto_log(axes[0], *[np.r_[d["loss_min"], d["loss_max"]] for d in data.values()], ratio=50)
        axes[1].set_yscale("log")
        axes[2].set_yscale("log")
        axes[0].set_title("(a) loss landscape: band of L(w - eta g)", loc="left")
        axes[0].set_ylabel(LOSS)
        axes[1].set_title("(b) gradient predictiveness: band of ||grad L(w - eta g) - g||", loc="left")
        axes[1].set_ylabel(r"$\|\nabla L(w-\eta g)-\nabla L(w)\|_2$ (log scale)")
        axes[2].set_title(r"(c) effective $\beta$-smoothness: $\max_\eta \|\nabla L(w-\eta g)-g\|\,/\,\|\eta g\|$",
                          loc="left")
        axes[2].set_ylabel(r"$\beta_{\rm eff}$ (log scale)")
        for ax in axes:
            ax.set_xlabel(STEP)
        _legend_arms(axes[0], handles=handles)
        _legend_arms(axes[2], handles=[plt.Line2D([], [], color=h.get_facecolor(), lw=1.5, label=h.get_label())
                                       for h in handles])
        _titles(fig, "Loss landscape along the gradient (Santurkar et al. 2018, Fig. 4): band = min to max over "
                     "step sizes eta", _run_subtitle(run, extra))
        return save(fig, run.dir / "figures", "landscape")


# ----------------------------------------------------------------------------- per run: layer norms


def _is_layer_weight(param: str) -> bool:
    """Conv/linear weights: ``<module>.weight`` whose module name does not mention a norm layer."""
    if not param.endswith(".weight"):
        return False
    module = param[: -len(".weight")]
    return "norm" not in module.lower() and "bn" not in module.split(".")[-1].lower()


def layer_traces(run, arm: str, kind: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``kind`` in grad_norm / weight_norm: steps and, per conv/linear weight in depth order, its trace."""
    run = _as_run(run)
    rows = [r for r in run.rows(arm, "train") if any(k.startswith(f"{kind}/") for k in r)]
    params: list[str] = []
    for r in rows:
        for k in r:
            if k.startswith(f"{kind}/") and _is_layer_weight(k[len(kind) + 1:]) and k[len(kind) + 1:] not in params:
                params.append(k[len(kind) + 1:])
    steps = np.array([r["step"] for r in rows], dtype=float)
    return steps, {p: _arr(r.get(f"{kind}/{p}") for r in rows) for p in params}


def plot_layer_norms(run) -> list[Path]:
    """Per-layer gradient and weight norms of conv/linear weights, one panel pair per arm, viridis by depth."""
    run = _as_run(run)
    data = {arm: {kind: layer_traces(run, arm, kind) for kind in ("grad_norm", "weight_norm")} for arm in run.arms}
    counts = {arm: len(d["grad_norm"][0]) if d["grad_norm"][1] else 0 for arm, d in data.items()}
    _min_steps(counts, 2, "train rows with grad_norm/<conv or linear weight> keys (metrics.layer_norms.every)")
    arms = [a for a in run.arms if counts[a]]
    order: list[str] = []
    for a in arms:
        order += [p for p in data[a]["grad_norm"][1] if p not in order]
    n = len(order)
    with _style() as plt:
        import matplotlib as mpl

        cmap = mpl.colormaps["viridis"]
        color = {p: cmap(0.9 * i / max(n - 1, 1)) for i, p in enumerate(order)}
        fig, axes = plt.subplots(len(arms), 2, figsize=(11, 2.9 * len(arms) + 1.2), sharex=True, sharey="col",
                                 constrained_layout=True, squeeze=False)
        for r, arm in enumerate(arms):
            for c, kind in enumerate(("grad_norm", "weight_norm")):
                ax = axes[r, c]
                steps, traces = data[arm][kind]
                for p in order:
                    if p in traces:
                        ax.plot(steps, _positive(traces[p]), color=color[p], lw=1.1, label=p,
                                **_markers(len(steps), 2.5))
                _mark_divergence(ax, run, arm, "0.3")
                if len(steps) < 2:
                    ax.text(0.5, 0.5, f"{len(steps)} record(s) for this arm", transform=ax.transAxes, ha="center",
                            color="0.4")
                what = "gradient norm ||dL/dW||_2" if kind == "grad_norm" else "weight norm ||W||_2"
                ax.set_title(f"({'abcdefghijklmnopqrstuvwxyz'[2 * r + c]}) arm {arm}: {what.split(' ||')[0]}",
                             loc="left")
                ax.set_ylabel(what + " (log)")
                ax.set_yscale("log")
                if r == len(arms) - 1:
                    ax.set_xlabel(STEP)
        if n <= 14:
            handles = [plt.Line2D([], [], color=color[p], lw=2, label=f"{i + 1}. {p}") for i, p in enumerate(order)]
            fig.legend(handles=handles, loc="outside lower center", ncols=min(n, 5), frameon=False,
                       title="conv/linear weight, input to output (viridis: dark = first layer)")
        else:
            sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, (n - 1) / 0.9), cmap=cmap)
            cb = fig.colorbar(sm, ax=axes, label="layer depth (0 = first conv)")
            ticks = sorted({0, n // 2, n - 1})
            cb.set_ticks(ticks, labels=[f"{t}: {order[t]}" for t in ticks])
        _titles(fig, "Per-layer gradient and weight norms of conv/linear weights (color: depth)",
                _run_subtitle(run, f"every {run.get('metrics.layer_norms.every', '?')} steps"))
        return save(fig, run.dir / "figures", "layer_norms")


# ----------------------------------------------------------------------------- per run: activations

_ACT = re.compile(r"^act/(?P<layer>.+)/c(?P<ch>\d+)/p(?P<q>[0-9.]+)$")


def activation_traces(run, arm: str) -> dict[tuple[str, int], tuple[np.ndarray, dict[float, np.ndarray]]]:
    """Per tracked (layer, channel): steps and, per percentile q, its trace (train rows ``act/<l>/c<ch>/p<q>``)."""
    rows = [r for r in _as_run(run).rows(arm, "train") if any(_ACT.match(k) for k in r)]
    keys: dict[tuple[str, int], dict[float, str]] = {}
    for r in rows:
        for k in r:
            m = _ACT.match(k)
            if m:
                keys.setdefault((m["layer"], int(m["ch"])), {})[float(m["q"])] = k
    steps = np.array([r["step"] for r in rows], dtype=float)
    return {lc: (steps, {q: _arr(r.get(k) for r in rows) for q, k in sorted(qs.items())})
            for lc, qs in keys.items()}


def plot_activations(run) -> list[Path]:
    """Ioffe & Szegedy 2015 Fig. 1: percentiles of each tracked channel vs step; one column per arm."""
    run = _as_run(run)
    data = {arm: activation_traces(run, arm) for arm in run.arms}
    counts = {arm: max((len(s) for s, _ in d.values()), default=0) for arm, d in data.items()}
    _min_steps(counts, 2, "train rows with act/<layer>/c<channel>/p<q> keys (metrics.activations.every)")
    arms = [a for a in run.arms if counts[a]]
    tracked: list[tuple[str, int]] = []
    for a in arms:
        tracked += [lc for lc in data[a] if lc not in tracked]
    with _style() as plt:
        fig, axes = plt.subplots(len(tracked), len(arms), figsize=(3.9 * len(arms) + 0.6, 2.7 * len(tracked) + 1.2),
                                 sharex=True, sharey="row", constrained_layout=True, squeeze=False)
        for r, lc in enumerate(tracked):
            for c, arm in enumerate(arms):
                ax = axes[r, c]
                col = arm_color(arm, _arm_index(run)[arm])
                if lc not in data[arm]:
                    ax.text(0.5, 0.5, "not tracked in this arm", ha="center", va="center", transform=ax.transAxes)
                    continue
                steps, qs = data[arm][lc]
                qlist = sorted(qs)
                mid = min(qlist, key=lambda q: abs(q - 50))
                lo, hi = qlist[0], qlist[-1]
                if lo != hi:
                    ax.fill_between(steps, qs[lo], qs[hi], color=col, alpha=0.25, lw=0,
                                    label=f"p{lo:g} to p{hi:g}")
                for q in qlist:
                    if q != mid:
                        ax.plot(steps, qs[q], color=col, lw=0.8, ls="--")
                ax.plot(steps, qs[mid], color=col, lw=1.6, label=f"median (p{mid:g})", **_markers(len(steps)))
                _mark_divergence(ax, run, arm, "0.3")
                ax.set_title(f"arm {arm}: {lc[0]}, channel {lc[1]}", loc="left")
                if c == 0:
                    ax.set_ylabel("conv output before norm\n(activation value)")
                if r == len(tracked) - 1:
                    ax.set_xlabel(STEP)
                ax.legend(frameon=False, loc="best")
        every = run.get("metrics.activations.every", "?")
        _titles(fig, "Activation percentiles of tracked channels (Ioffe & Szegedy 2015, Fig. 1): "
                     "same y-limits across arms", _run_subtitle(run, f"every {every} steps on the training batch"))
        return save(fig, run.dir / "figures", "activations")


# ----------------------------------------------------------------------------- per run: curvature

_EIG = re.compile(r"^curvature/eig1@(?P<mode>\w+)$")
MODE_STYLE = {"batch": "-", "running": "--"}
MODE_MARKER = {"batch": {"marker": "o", "ms": 3.5}, "running": {"marker": "s", "ms": 6, "mfc": "none"}}


def curvature_data(run, arm: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per BN mode: steps and top Hessian eigenvalue (probe rows ``curvature/eig1@<mode>``)."""
    run = _as_run(run)
    out = {}
    modes = []
    for r in run.rows(arm, "probe"):
        for k in r:
            m = _EIG.match(k)
            if m and m["mode"] not in modes:
                modes.append(m["mode"])
    for mode in modes:
        s, v = run.series(arm, "probe", f"curvature/eig1@{mode}")
        out[mode] = (np.array(s, dtype=float), _arr(v))
    return out


def plot_curvature(run) -> list[Path]:
    """Top Hessian eigenvalue vs step, every arm, a line style per BN mode (plus the trace when recorded)."""
    run = _as_run(run)
    data = {arm: curvature_data(run, arm) for arm in run.arms}
    counts = {arm: max((len(s) for s, _ in d.values()), default=0) for arm, d in data.items()}
    _min_steps(counts, 2, "probe rows with curvature/eig1@<mode> keys (metrics.curvature.every)")
    traces = {arm: {m: run.series(arm, "probe", f"curvature/trace@{m}") for m in d} for arm, d in data.items()}
    has_trace = any(len(s) >= 2 for t in traces.values() for s, _ in t.values())
    with _style() as plt:
        ncol = 2 if has_trace else 1
        fig, axes = plt.subplots(1, ncol, figsize=(7.5 * ncol, 4.6), constrained_layout=True, squeeze=False)
        ax = axes[0, 0]
        allv = []
        for arm, d in data.items():
            c = arm_color(arm, _arm_index(run)[arm])
            for mode, (s, v) in d.items():
                ax.plot(s, v, color=c, ls=MODE_STYLE.get(mode, ":"), lw=1.4, label=f"{arm}, {mode} statistics",
                        **MODE_MARKER.get(mode, {"marker": "^", "ms": 5, "mfc": "none"}))
                allv.append(v)
            _mark_divergence(ax, run, arm, c)
        if not _auto_log(ax, *allv, ratio=1.0):
            ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(r"(a) top Hessian eigenvalue $\lambda_{\max}$ (Lanczos)", loc="left")
        ax.set_ylabel(r"$\lambda_{\max}$ of the loss Hessian (nats / param$^2$)")
        ax.set_xlabel(STEP)
        ax.legend(title="arm, BN mode", frameon=False)
        if has_trace:
            ax = axes[0, 1]
            tv = []
            for arm, t in traces.items():
                c = arm_color(arm, _arm_index(run)[arm])
                for mode, (s, v) in t.items():
                    if s:
                        ax.plot(s, _arr(v), color=c, ls=MODE_STYLE.get(mode, ":"), lw=1.4,
                                label=f"{arm}, {mode} statistics",
                                **MODE_MARKER.get(mode, {"marker": "^", "ms": 5, "mfc": "none"}))
                        tv.append(_arr(v))
            _auto_log(ax, *tv, ratio=1.0)
            ax.set_title("(b) Hessian trace (Hutchinson)", loc="left")
            ax.set_ylabel("trace of the loss Hessian (nats / param$^2$)")
            ax.set_xlabel(STEP)
            ax.legend(title="arm, BN mode", frameon=False)
        cfg = run.get("metrics.curvature") or {}
        _titles(fig, "Curvature on the training batch (Ghorbani et al. 2019); batch: train-mode batch statistics, "
                     "running: eval mode", _run_subtitle(run, f"every {cfg.get('every', '?')} steps, at most "
                                                              f"{cfg.get('max_hvps', '?')} HVPs"))
        return save(fig, run.dir / "figures", "curvature")


# ----------------------------------------------------------------------------- per run: ICS

_ICS = re.compile(r"^ics/(?P<param>.+)/(?P<m>l2|cos)$")


def ics_data(run, arm: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per parameter: {"l2": (steps, values), "cos": (steps, values)} from probe rows ``ics/<param>/...``."""
    run = _as_run(run)
    params: list[str] = []
    for r in run.rows(arm, "probe"):
        for k in r:
            m = _ICS.match(k)
            if m and m["param"] not in params:
                params.append(m["param"])
    out = {}
    for p in params:
        out[p] = {}
        for m in ("l2", "cos"):
            s, v = run.series(arm, "probe", f"ics/{p}/{m}")
            out[p][m] = (np.array(s, dtype=float), _arr(v))
    return out


def plot_ics(run) -> list[Path]:
    """Internal covariate shift (Santurkar et al. Def. 2.1): ||G - G'|| and cos(G, G') per tracked layer."""
    run = _as_run(run)
    data = {arm: ics_data(run, arm) for arm in run.arms}
    counts = {arm: max((len(v["l2"][0]) for v in d.values()), default=0) for arm, d in data.items()}
    _min_steps(counts, 2, "probe rows with ics/<param>/l2 keys (metrics.ics.every)")
    params: list[str] = []
    for d in data.values():
        params += [p for p in d if p not in params]
    with _style() as plt:
        fig, axes = plt.subplots(len(params), 2, figsize=(11, 2.6 * len(params) + 1.2), sharex=True,
                                 constrained_layout=True, squeeze=False)
        for r, p in enumerate(params):
            for c, m in enumerate(("l2", "cos")):
                ax = axes[r, c]
                vals = []
                for arm, d in data.items():
                    if p not in d:
                        continue
                    col = arm_color(arm, _arm_index(run)[arm])
                    s, v = d[p][m]
                    ax.plot(s, _positive(v) if m == "l2" else v, color=col, lw=1.2, marker="o", ms=3, label=arm)
                    vals.append(v)
                    _mark_divergence(ax, run, arm, col)
                if m == "l2":
                    ax.set_yscale("log")
                    ax.set_ylabel("||G - G'||_2 (log)")
                    ax.set_title(f"({'abcdefghijklmnopqrstuvwxyz'[2 * r]}) {p}: gradient change", loc="left")
                else:
                    ax.set_ylim(-1.05, 1.05)
                    ax.set_ylabel("cos(G, G') (1 = no shift)")
                    ax.set_title(f"({'abcdefghijklmnopqrstuvwxyz'[2 * r + 1]}) {p}: gradient direction", loc="left")
                if r == len(params) - 1:
                    ax.set_xlabel(STEP)
                if r == 0:
                    _legend_arms(ax)
        _titles(fig, "Internal covariate shift (Santurkar et al. 2018, Def. 2.1): G = layer gradient at w_t, "
                     "G' = after the earlier layers' update",
                _run_subtitle(run, f"every {run.get('metrics.ics.every', '?')} steps"))
        return save(fig, run.dir / "figures", "ics")


# ----------------------------------------------------------------------------- per run: analysis.json


def read_analysis(run) -> dict | None:
    """``analysis/analysis.json`` of a run, None without one; a ValueError if it is not a JSON object."""
    path = _as_run(run).dir / "analysis" / "analysis.json"
    if not path.exists():
        return None
    a = loads(path.read_bytes().decode("utf-8"))
    if not isinstance(a, dict) or not isinstance(a.get("arms"), dict):
        raise ValueError("not an analysis object")
    return a


def _analysis_or_skip(run: Run) -> dict:
    try:
        a = read_analysis(run)
    except (OSError, ValueError) as exc:  # a damaged analysis is one skipped figure, not a crash
        raise Skip(f"analysis/analysis.json is damaged ({exc.__class__.__name__}); rerun bnlab-analyze RUN_DIR") \
            from None
    if a is None:
        raise Skip("no analysis/analysis.json (run bnlab-analyze RUN_DIR)")
    stale = stamp_mismatch(run.dir, a, "analysis/analysis.json")  # e.g. the run was started over since
    if stale:
        raise Skip(stale)
    return a


def _analysis_subtitle(run: Run, a: dict, extra: str = "") -> str:
    sub = a.get("subset", {})
    s = (f"analysis of the final weights on the first {sub.get('samples', '?')} {sub.get('split', '?')} images "
         f"(batch {sub.get('batch_size', '?')})")
    return _run_subtitle(run, s + (f", {extra}" if extra else ""))


def plot_spectral_density(run) -> list[Path]:
    """SLQ eigenvalue density of the Hessian at the final weights, one panel per BN mode, every arm."""
    run = _as_run(run)
    a = _analysis_or_skip(run)
    modes: list[str] = []
    for v in a["arms"].values():
        modes += [m for m, c in v.get("curvature", {}).items() if c.get("density") and m not in modes]
    if not modes:
        raise Skip("analysis.json holds no spectral density")
    arms = list(a["arms"])
    with _style() as plt:
        fig, axes = plt.subplots(1, len(modes), figsize=(5.6 * len(modes), 4.3), sharey=True,
                                 constrained_layout=True, squeeze=False)
        for j, mode in enumerate(modes):
            ax = axes[0, j]
            for i, arm in enumerate(arms):
                cur = a["arms"][arm].get("curvature", {}).get(mode)
                if not cur or not cur.get("density"):
                    continue
                grid, dens = np.array(cur["density"]["grid"]), np.array(cur["density"]["density"], dtype=float)
                peak = np.nanmax(dens) if dens.size else 0
                dens = np.where(dens > peak * 1e-7, dens, np.nan)
                top = cur.get("top_eigenvalues") or [float("nan")]
                ax.plot(grid, dens, color=arm_color(arm, i), lw=1.4,
                        label=rf"{arm} ($\lambda_{{\max}}$ {top[0]:.3g}, trace {cur.get('trace', float('nan')):.3g})")
            ax.set_yscale("log")
            ax.set_title(f"({'abcd'[j]}) {mode} statistics", loc="left")
            ax.set_xlabel("Hessian eigenvalue (nats / param$^2$)")
            if j == 0:
                ax.set_ylabel("spectral density (log)")
            _legend_arms(ax, fontsize=7)
        _titles(fig, "Hessian eigenvalue density (stochastic Lanczos quadrature, Ghorbani et al. 2019)",
                _analysis_subtitle(run, a))
        return save(fig, run.dir / "figures", "spectral_density")


def plot_surface_1d(run) -> list[Path]:
    """Loss and accuracy along one filter-normalized direction around the final weights, every arm."""
    run = _as_run(run)
    a = _analysis_or_skip(run)
    arms = [arm for arm, v in a["arms"].items() if v.get("surface_1d")]
    if not arms:
        raise Skip("analysis.json holds no surface_1d")
    with _style() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
        losses = []
        mode = "?"
        for arm in arms:
            i = list(a["arms"]).index(arm)
            s = a["arms"][arm]["surface_1d"]
            mode = s.get("bn_mode", mode)
            al = np.array(s["alphas"], dtype=float)
            loss = _arr(s["loss"])
            losses.append(loss)
            axes[0].plot(al, loss, color=arm_color(arm, i), lw=1.5, marker="o", ms=3, label=arm)
            if s.get("acc") is not None:
                axes[1].plot(al, _arr(s["acc"]), color=arm_color(arm, i), lw=1.5, marker="o", ms=3, label=arm)
        _auto_log(axes[0], *losses, ratio=20)
        axes[0].set_ylabel(LOSS)
        axes[1].set_ylabel(ACC)
        axes[0].set_title("(a) loss L(w* + alpha d)", loc="left")
        axes[1].set_title("(b) accuracy", loc="left")
        for ax in axes:
            ax.set_xlabel("alpha: step along the filter-normalized direction d (0 = final weights)")
            ax.axvline(0, color="0.5", lw=0.6)
            _legend_arms(ax)
        seed = a.get("settings", {}).get("direction_seed", "?")
        _titles(fig, "1D loss surface around the final weights (Li et al. 2018), same direction seed for every arm",
                _analysis_subtitle(run, a, f"{mode} statistics, direction seed {seed}"))
        return save(fig, run.dir / "figures", "surface_1d")


def plot_surface_2d(run) -> list[Path]:
    """Contour plot of the loss on a 2D filter-normalized plane, one panel per arm, shared levels."""
    run = _as_run(run)
    a = _analysis_or_skip(run)
    arms = [arm for arm, v in a["arms"].items() if v.get("surface_2d")]
    arms = [arm for arm in arms if len(a["arms"][arm]["surface_2d"]["alphas"]) >= 2
            and len(a["arms"][arm]["surface_2d"]["betas"]) >= 2]
    if not arms:
        raise Skip("analysis.json holds no surface_2d with at least 2 x 2 points")
    grids = {arm: np.array([[_num(v) for v in row] for row in a["arms"][arm]["surface_2d"]["loss"]]) for arm in arms}
    allv = np.concatenate([g.ravel() for g in grids.values()])
    allv = allv[np.isfinite(allv)]
    if allv.size == 0:
        raise Skip("surface_2d holds no finite loss")
    lo, hi = float(allv.min()), float(allv.max())
    with _style() as plt:
        import matplotlib as mpl

        if lo > 0 and hi / lo > 10:
            levels = np.geomspace(lo, hi, 15)
            norm = mpl.colors.LogNorm(lo, hi)
        else:
            levels = np.linspace(lo, hi if hi > lo else lo + 1e-6, 15)
            norm = mpl.colors.Normalize(levels[0], levels[-1])
        fig, axes = plt.subplots(1, len(arms), figsize=(4.6 * len(arms) + 1.2, 4.3), sharex=True, sharey=True,
                                 constrained_layout=True, squeeze=False)
        cs = None
        for j, arm in enumerate(arms):
            ax = axes[0, j]
            s = a["arms"][arm]["surface_2d"]
            al, be = np.array(s["alphas"]), np.array(s["betas"])
            cs = ax.contourf(al, be, grids[arm], levels=levels, cmap="viridis", norm=norm, extend="neither")
            ax.contour(al, be, grids[arm], levels=levels, colors="white", linewidths=0.4, alpha=0.6)
            ax.plot([0], [0], marker="*", color=arm_color(arm, list(a["arms"]).index(arm)), ms=12, mec="white",
                    label="final weights")
            ax.set_title(f"({'abcdefgh'[j]}) arm {arm}", loc="left", color=arm_color(arm, list(a["arms"]).index(arm)))
            ax.set_xlabel("alpha (direction d1)")
            if j == 0:
                ax.set_ylabel("beta (direction d2)")
            ax.set_aspect("equal")
            ax.grid(False)
            ax.legend(frameon=False, loc="upper right", fontsize=7, labelcolor="white")
        cb = fig.colorbar(cs, ax=axes, label=LOSS + " (same levels for every arm)")
        if isinstance(norm, mpl.colors.LogNorm):
            cb.ax.set_yscale("log")
        mode = a["arms"][arms[0]]["surface_2d"].get("bn_mode", "?")
        seed = a.get("settings", {}).get("direction_seed", "?")
        _titles(fig, "2D loss surface around the final weights (Li et al. 2018), filter-normalized directions",
                _analysis_subtitle(run, a, f"{mode} statistics, direction seeds {seed}, {seed}+1"))
        return save(fig, run.dir / "figures", "surface_2d")


# ----------------------------------------------------------------------------- per run: SLQ density (issue 18)

_SLQ = re.compile(r"^curvature/slq(?P<run>\d+)_node(?P<i>\d+)@(?P<mode>\w+)$")


def slq_data(run, arm: str) -> dict[int, dict[str, tuple[list[list[float]], list[list[float]]]]]:
    """{probe step: {BN mode: (nodes per Lanczos run, weights per run)}} from ``curvature/slq<r>_*@<mode>`` keys."""
    out: dict[int, dict] = {}
    for r in _as_run(run).rows(arm, "probe"):
        found: dict[str, dict[int, list]] = {}
        for k, v in r.items():
            m = _SLQ.match(k)
            w = r.get(f"curvature/slq{m['run']}_weight{m['i']}@{m['mode']}") if m else None
            if m and finite(v) and finite(w):
                found.setdefault(m["mode"], {}).setdefault(int(m["run"]), []).append((float(v), float(w)))
        for mode, per_run in found.items():
            out.setdefault(r["step"], {})[mode] = ([[n for n, _ in p] for p in per_run.values()],
                                                   [[w for _, w in p] for p in per_run.values()])
    return out


def slq_density(nodes: list[list[float]], weights: list[list[float]], grid_size: int = 400):
    """(grid, density): the SLQ measure broadened by Gaussians of 5 grid cells, runs averaged (as
    metrics/curvature.spectral_density does)."""
    theta = np.concatenate([np.asarray(n, dtype=float) for n in nodes])
    tau = np.concatenate([np.asarray(w, dtype=float) for w in weights]) / len(nodes)
    lo, hi = theta.min(), theta.max()
    span = (hi - lo) or max(abs(hi), 1.0)
    sigma = 5.0 * span / grid_size
    grid = np.linspace(lo - 4 * sigma - 0.01 * span, hi + 4 * sigma + 0.01 * span, grid_size)
    gauss = np.exp(-0.5 * ((grid[:, None] - theta) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return grid, gauss @ tau


def plot_slq_density(run) -> list[Path]:
    """Ghorbani et al. 2019: the Hessian's SLQ density at each probe step (columns) per BN mode (rows), every arm."""
    run = _as_run(run)
    data = {arm: slq_data(run, arm) for arm in run.arms}
    steps = sorted({s for d in data.values() for s in d})
    if not steps:
        raise Skip("no probe rows with curvature/slq* keys (metrics.curvature.slq_runs)")
    modes = [m for m in ("batch", "running") if any(m in d.get(s, {}) for d in data.values() for s in steps)]
    ratios = {arm: {r["step"]: r for r in run.rows(arm, "probe")} for arm in run.arms}
    with _style() as plt:
        fig, axes = plt.subplots(len(modes), len(steps), figsize=(4.4 * len(steps) + 1, 3.4 * len(modes) + 0.8),
                                 squeeze=False, constrained_layout=True)
        for i, mode in enumerate(modes):
            for j, step in enumerate(steps):
                ax = axes[i, j]
                for arm, d in data.items():
                    if mode not in d.get(step, {}):
                        continue
                    grid, dens = slq_density(*d[step][mode])
                    ratio = ratios[arm].get(step, {}).get(f"curvature/ratio@{mode}")
                    label = arm + (f" (|λmax| / bulk edge {ratio:.3g})" if finite(ratio) else "")
                    ax.plot(grid, _positive(dens), color=arm_color(arm, _arm_index(run)[arm]), lw=1.2, label=label)
                ax.set_yscale("log")
                ax.set_title(f"({_panel_letter(i * len(steps) + j)}) step {step}, {mode} statistics", loc="left")
                ax.set_xlabel("Hessian eigenvalue (nats / param$^2$)")
                ax.set_ylabel("spectral density (log)")
                ax.legend(title="arm", frameon=False)
        c = run.get("metrics.curvature") or {}
        _titles(fig, "Hessian eigenvalue density on the training batch by SLQ (Ghorbani et al. 2019): outliers lie far "
                     "right of the bulk; batch: train-mode batch statistics, running: eval mode",
                _run_subtitle(run, f"{c.get('slq_runs', '?')} SLQ run(s) of {c.get('slq_steps', '?')} Lanczos steps; "
                                   f"bulk edge: |eigenvalue| below {c.get('bulk_mass', '?')} of the mass"))
        return save(fig, run.dir / "figures", "slq_density")


RUN_PLOTS = {
    "curves": plot_curves, "landscape": plot_landscape, "layer_norms": plot_layer_norms,
    "activations": plot_activations, "curvature": plot_curvature, "ics": plot_ics,
    "spectral_density": plot_spectral_density, "surface_1d": plot_surface_1d, "surface_2d": plot_surface_2d,
    "slq_density": plot_slq_density,
}


def run_figures(run) -> tuple[list[Path], list[str]]:
    """Every per-run figure of one run: (paths written, skip notes)."""
    run = _as_run(run)
    paths, notes = [], []
    for name, fn in RUN_PLOTS.items():
        try:
            paths += fn(run)
        except Skip as why:
            notes.append(f"skipped {name}: {why} ({run.dir})")
    return paths, notes


# ----------------------------------------------------------------------------- sweeps: grouping


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED_CONFIG)


def _config(run: Run) -> dict:
    # lists (and empty dicts) as JSON text: hashable, so runs can be grouped by value
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
            for k, v in flatten(run.config).items() if not _ignored(k)}


def varying_keys(runs: list[Run]) -> list[str]:
    """Config keys (dotted, seed and logging left out) whose value is not the same in every run."""
    flats = [_config(r) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]


def _label(run: Run, keys: list[str], runs: list[Run]) -> str:
    """``key=value`` of the given keys, leaving out keys some runs lack (implied by e.g. init.scheme)."""
    shown = [k for k in keys if all(k in _config(r) for r in runs)]
    cfg = _config(run)
    return ", ".join(f"{k}={cfg.get(k)}" for k in shown)


def _facets(runs: list[Run], exclude: tuple[str, ...]) -> list[tuple[str, list[Run]]]:
    """Runs split by every varying key not starting with one of ``exclude``: [(label, runs)]."""
    keys = [k for k in varying_keys(runs) if not any(k == e or k.startswith(e + ".") for e in exclude)]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        cfg = _config(r)
        key = json.dumps([cfg.get(k) for k in keys], default=str)
        groups.setdefault(key, []).append(r)
    return [(_label(g[0], keys, runs), g) for g in groups.values()]


def seed_groups(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped by config with ``seed`` (and logging) removed; the pair id cannot do it, seeds change it."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(json.dumps(_config(r), sort_keys=True, default=str), []).append(r)
    return list(groups.values())


def _all_arms(runs: list[Run]) -> list[str]:
    arms: list[str] = []
    for r in runs:
        arms += [a for a in r.arms if a not in arms]
    return arms


def _final(run: Run, arm: str) -> tuple[float, bool] | None:
    a = run.summary["arms"].get(arm)
    if a is None:
        return None
    return _num(a.get("final_test_acc")), bool(a.get("diverged"))


def _lr(run: Run) -> float:
    return float(run.summary["lr"])


def _bs(run: Run) -> int:
    return int(run.summary["batch_size"])


@dataclass
class Heatmap:
    """Final test accuracy of one arm over optim.lr (columns) x data.batch_size (rows)."""

    arm: str
    lrs: list[float]
    batch_sizes: list[int]
    values: np.ndarray  # [batch size, lr]: mean over seeds; NaN where no run
    runs: np.ndarray  # [batch size, lr]: number of runs (seeds) in the cell
    diverged_runs: np.ndarray  # [batch size, lr]: how many of them diverged
    diverged: set = field(default_factory=set)  # {(lr, batch_size)}: the arm diverged in any seed


def heatmap_data(runs: list[Run], arm: str) -> Heatmap:
    """The numbers ``heatmap_final_acc`` draws for one arm (runs: one facet of a sweep)."""
    lrs = sorted({_lr(r) for r in runs})
    bss = sorted({_bs(r) for r in runs})
    cells: dict[tuple[float, int], list[tuple[float, bool]]] = {}
    for r in runs:
        f = _final(r, arm)
        if f is not None:
            cells.setdefault((_lr(r), _bs(r)), []).append(f)
    vals = np.full((len(bss), len(lrs)), np.nan)
    n = np.zeros((len(bss), len(lrs)), dtype=int)
    nd = np.zeros_like(n)
    diverged = set()
    for (lr, bs), fs in cells.items():
        i, j = bss.index(bs), lrs.index(lr)
        accs = [a for a, _ in fs if math.isfinite(a)]
        vals[i, j] = float(np.mean(accs)) if accs else np.nan
        n[i, j] = len(fs)
        nd[i, j] = sum(d for _, d in fs)
        if nd[i, j]:
            diverged.add((lr, bs))
    return Heatmap(arm, lrs, bss, vals, n, nd, diverged)


def plot_heatmap_final_acc(runs: list[Run], out_dir: Path) -> list[Path]:
    """One heatmap per arm of final test accuracy over lr x batch size; diverged cells hatched and labelled."""
    from matplotlib.patches import Rectangle

    if len({_lr(r) for r in runs}) < 2 and len({_bs(r) for r in runs}) < 2:
        raise Skip("the sweep varies neither optim.lr nor data.batch_size")
    facets = _facets(runs, ("optim.lr", "data.batch_size"))
    arms = _all_arms(runs)
    maps = [[heatmap_data(fr, arm) for arm in arms] for _, fr in facets]
    allv = np.concatenate([h.values.ravel() for row in maps for h in row])
    allv = allv[np.isfinite(allv)]
    vmin, vmax = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
    if vmax - vmin < 1e-3:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    ncols = max(len(h.lrs) for row in maps for h in row)
    nrows = max(len(h.batch_sizes) for row in maps for h in row)
    w = max(3.4, 1.05 * ncols + 1.3)
    with _style() as plt:
        import matplotlib as mpl

        cmap = mpl.colormaps["cividis"]
        size = (w * len(arms) + 1.2, (0.6 * nrows + 1.4) * len(facets) + 1.0)
        fig, axes = plt.subplots(len(facets), len(arms), figsize=size, constrained_layout=True, squeeze=False)
        norm = mpl.colors.Normalize(vmin, vmax)
        for fi, (label, _) in enumerate(facets):
            for ai, arm in enumerate(arms):
                h, ax = maps[fi][ai], axes[fi, ai]
                ax.imshow(np.ma.masked_invalid(h.values), cmap=cmap, norm=norm, aspect="auto", origin="lower")
                ax.grid(False)
                for i, bs in enumerate(h.batch_sizes):
                    for j, lr in enumerate(h.lrs):
                        v = h.values[i, j]
                        if h.runs[i, j] == 0:
                            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.9", edgecolor="none"))
                            ax.text(j, i, "no run", ha="center", va="center", fontsize=7, color="0.4")
                            continue
                        light = math.isfinite(v) and norm(v) > 0.6
                        tc = "black" if light else "white"
                        text = f"{v:.3f}" if math.isfinite(v) else "n/a"
                        if (lr, bs) in h.diverged:
                            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xx",
                                                   edgecolor="#E69F00", lw=0))
                            ax.add_patch(Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False,
                                                   edgecolor="#E69F00", lw=2))
                            text += f"\ndiverged ({h.diverged_runs[i, j]}/{h.runs[i, j]})"
                            ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color="black",
                                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85))
                        else:
                            ax.text(j, i, text + (f"\n({h.runs[i, j]} seeds)" if h.runs[i, j] > 1 else ""),
                                    ha="center", va="center", fontsize=7.5, color=tc)
                ax.set_xticks(range(len(h.lrs)), [f"{lr:g}" for lr in h.lrs])
                ax.set_yticks(range(len(h.batch_sizes)), [str(b) for b in h.batch_sizes])
                ax.set_xlabel("learning rate optim.lr")
                if ai == 0:
                    ax.set_ylabel("batch size data.batch_size")
                ax.spines[:].set_visible(False)
                title = f"arm {arm}" + (f" | {label}" if label else "")
                ax.set_title(title, loc="left", color=arm_color(arm, ai), fontweight="bold")
        fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9,
                     label="final test accuracy\n(fraction, mean over seeds)")
        _titles(fig, "Final test accuracy over learning rate x batch size (hatched orange: the arm diverged "
                     "in at least one seed; its value is the last evaluation before divergence)",
                sweep_scale_line([r.summary for r in runs]))
        return save(fig, out_dir, "heatmap_final_acc")


def lr_sweep_data(runs: list[Run], arm: str) -> list[dict]:
    """Per lr (ascending): final test accuracy ``mean``, ``min``, ``max`` over seeds, ``n``, ``accs``, ``diverged``."""
    by_lr: dict[float, list[tuple[float, bool]]] = {}
    for r in runs:
        f = _final(r, arm)
        if f is not None:
            by_lr.setdefault(_lr(r), []).append(f)
    out = []
    for lr in sorted(by_lr):
        accs = [a for a, _ in by_lr[lr] if math.isfinite(a)]
        out.append({"lr": lr, "mean": float(np.mean(accs)) if accs else float("nan"),
                    "min": min(accs, default=float("nan")), "max": max(accs, default=float("nan")),
                    "n": len(by_lr[lr]), "accs": accs, "diverged": sum(d for _, d in by_lr[lr])})
    return out


def plot_acc_vs_lr(runs: list[Run], out_dir: Path) -> list[Path]:
    """Final test accuracy vs lr (log x) per arm: mean, min-max band over seeds, diverged points marked."""
    facets = [(lab, fr) for lab, fr in _facets(runs, ("optim.lr",)) if len({_lr(r) for r in fr}) >= 2]
    if not facets:
        raise Skip("no setting of the sweep has >= 2 learning rates")
    arms = _all_arms(runs)
    with _style() as plt:
        from matplotlib.ticker import NullFormatter

        fig, axes = plt.subplots(1, len(facets), figsize=(5.8 * len(facets) + 0.4, 4.4), sharey=True,
                                 constrained_layout=True, squeeze=False)
        for fi, (label, fr) in enumerate(facets):
            ax = axes[0, fi]
            for i, arm in enumerate(arms):
                pts = lr_sweep_data(fr, arm)
                if not pts:
                    continue
                c = arm_color(arm, i)
                lr = np.array([p["lr"] for p in pts])
                ax.fill_between(lr, [p["min"] for p in pts], [p["max"] for p in pts], color=c, alpha=0.2, lw=0)
                ax.plot(lr, [p["mean"] for p in pts], color=c, lw=1.6, marker="o", ms=5, label=f"{arm} (mean)")
                for p in pts:
                    ax.scatter([p["lr"]] * len(p["accs"]), p["accs"], color=c, s=9, alpha=0.6, lw=0, zorder=3)
                div = [p for p in pts if p["diverged"]]
                if div:
                    ax.scatter([p["lr"] for p in div], [p["mean"] for p in div], marker="X", s=110, color=c,
                               edgecolor="black", lw=0.8, zorder=4)
            ax.set_xscale("log")
            lrs = sorted({_lr(r) for r in fr})
            ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("learning rate optim.lr (log scale)")
            if fi == 0:
                ax.set_ylabel("final test accuracy (fraction)")
            ax.set_title(f"({_panel_letter(fi)}) {label}" if label else "", loc="left")
            handles, _ = ax.get_legend_handles_labels()
            handles += [plt.Line2D([], [], color="0.4", marker="X", ls="", ms=9, mec="black",
                                   label="diverged (>= 1 seed)"),
                        plt.Line2D([], [], color="0.4", marker="o", ls="", ms=3, alpha=0.6, label="one seed"),
                        _band_patch("0.4", "min to max over seeds")]
            ax.legend(handles=handles, frameon=False, title="arm")
        _titles(fig, "Final test accuracy vs learning rate", sweep_scale_line([r.summary for r in runs]))
        return save(fig, out_dir, "acc_vs_lr")


def _band_patch(color, label):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, alpha=0.25, label=label)


def init_data(runs: list[Run], arm: str) -> dict[str, dict]:
    """Per init scheme (sweep order): final test accuracy ``mean``, ``min``, ``max``, ``n``, ``diverged``."""
    by: dict[str, list[tuple[float, bool]]] = {}
    for r in runs:
        f = _final(r, arm)
        if f is not None:
            by.setdefault(str(r.get("init.scheme", r.summary.get("init"))), []).append(f)
    out = {}
    for scheme, fs in by.items():
        accs = [a for a, _ in fs if math.isfinite(a)]
        out[scheme] = {"mean": float(np.mean(accs)) if accs else float("nan"),
                       "min": min(accs, default=float("nan")), "max": max(accs, default=float("nan")),
                       "n": len(fs), "diverged": sum(d for _, d in fs)}
    return out


def plot_init_sensitivity(runs: list[Run], out_dir: Path) -> list[Path]:
    """Grouped bars of final test accuracy per init scheme and arm (min-max over seeds as error bars)."""
    schemes = {str(r.get("init.scheme", r.summary.get("init"))) for r in runs}
    if len(schemes) < 2:
        raise Skip(f"the sweep does not vary init.scheme (only {', '.join(sorted(schemes))})")
    facets = _facets(runs, ("init",))
    arms = _all_arms(runs)
    with _style() as plt:
        from matplotlib.patches import Patch

        fig, axes = plt.subplots(len(facets), 1, figsize=(max(7.5, 0.55 * len(schemes) * len(arms) + 3.5),
                                                          3.2 * len(facets) + 1.0),
                                 sharey=True, constrained_layout=True, squeeze=False)
        width = 0.8 / len(arms)
        for fi, (label, fr) in enumerate(facets):
            ax = axes[fi, 0]
            order: list[str] = []
            for r in fr:
                s = str(r.get("init.scheme", r.summary.get("init")))
                if s not in order:
                    order.append(s)
            for i, arm in enumerate(arms):
                d = init_data(fr, arm)
                ss = [s for s in order if s in d]
                xs = [order.index(s) + (i - (len(arms) - 1) / 2) * width for s in ss]
                mean = np.array([d[s]["mean"] for s in ss])
                multi = any(d[s]["n"] > 1 for s in ss)
                err = np.array([[d[s]["mean"] - d[s]["min"] for s in ss], [d[s]["max"] - d[s]["mean"] for s in ss]])
                bars = ax.bar(xs, mean, width * 0.92, color=arm_color(arm, i), yerr=err if multi else None,
                              capsize=2, ecolor="0.2", error_kw={"lw": 1})
                for b, s in zip(bars, ss):
                    if d[s]["diverged"]:
                        b.set_hatch("xx")
                        b.set_edgecolor("black")
                        top = d[s]["max"] if math.isfinite(d[s]["max"]) else 0.0
                        ax.annotate(f"diverged\n{d[s]['diverged']}/{d[s]['n']}", (b.get_x() + b.get_width() / 2, top),
                                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=6.5)
            ax.set_xticks(range(len(order)), order, rotation=20 if len(order) > 3 else 0,
                          ha="right" if len(order) > 3 else "center")
            ax.grid(False, axis="x")
            ax.set_ylabel("final test accuracy (fraction)")
            ax.set_xlabel("init scheme (init.scheme)")
            ax.margins(y=0.15)
            ax.set_title(f"({_panel_letter(fi)}) {label}" if label else "", loc="left")
            handles = [Patch(facecolor=arm_color(arm, i), label=arm) for i, arm in enumerate(arms)]
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="xx", label="diverged (>= 1 seed)"))
            ax.legend(handles=handles, frameon=False, title="arm", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _titles(fig, "Final test accuracy per init scheme (bars: mean over seeds, error bars: min to max)",
                sweep_scale_line([r.summary for r in runs]))
        return save(fig, out_dir, "init_sensitivity")


def seed_band(runs: list[Run], arm: str, split: str, key: str):
    """Over seeds of one config: steps, mean, min, max (NaN-aware; a diverged seed drops out after it stops)."""
    per: list[dict[int, float]] = []
    for r in runs:
        s, v = r.series(arm, split, key)
        per.append({st: _num(x) for st, x in zip(s, v)})
    steps = sorted(set().union(*per)) if per else []
    m = np.array([[p.get(st, np.nan) for st in steps] for p in per], dtype=float).reshape(len(per), len(steps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (every seed diverged) stay NaN
        return np.array(steps, dtype=float), np.nanmean(m, axis=0), np.nanmin(m, axis=0), np.nanmax(m, axis=0)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def plot_curves_seeds(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per config with more than one seed: the ``curves`` panels as mean and min-max band over seeds."""
    groups = [g for g in seed_groups(runs) if len(g) > 1]
    if not groups:
        raise Skip("no config of the sweep has more than one seed")
    keys = [k for k in varying_keys(runs)]
    paths = []
    for g in groups:
        label = _label(g[0], keys, runs)
        name = "curves_seeds" if len(groups) == 1 else f"curves_seeds_{_slug(label)}"
        arms = _all_arms(g)
        with _style() as plt:
            fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
            panels = [(axes[r, c], *rest) for (r, c), *rest in CURVE_PANELS]
            for ax, split, key, title, ylabel, logy in panels:
                for i, arm in enumerate(arms):
                    c = arm_color(arm, i)
                    s, mean, lo, hi = seed_band(g, arm, split, key)
                    if logy:
                        mean, lo, hi = _positive(mean), _positive(lo), _positive(hi)
                    ax.fill_between(s, lo, hi, color=c, alpha=0.25, lw=0)
                    ax.plot(s, mean, color=c, lw=1.3, label=f"{arm}",
                            **(_markers(len(s)) if split == "train" else {"marker": "o", "ms": 3}))
                    for k, r in enumerate(g):
                        if arm in r.arms:
                            _mark_divergence(ax, r, arm, c, label=k == 0)
                ax.set_title(title, loc="left")
                ax.set_xlabel(STEP)
                ax.set_ylabel(ylabel)
                if logy:
                    ax.set_yscale("log")
                handles, _ = ax.get_legend_handles_labels()
                handles.append(_band_patch("0.4", "min to max over seeds"))
                ax.legend(handles=handles, frameon=False, title="arm (line: mean)")
            seeds = sorted(r.summary["seed"] for r in g)
            _titles(fig, f"Training curves over {len(g)} seeds {seeds}" + (f" | {label}" if label else "")
                    + " (dotted: a seed diverged)", sweep_scale_line([r.summary for r in g]))
            paths += save(fig, out_dir, name)
    return paths


# ----------------------------------------------------------------------------- sweeps: paper scale (issue 18)

_DEPTH = re.compile(r"^resnet(?P<depth>\d+)$")


def depth_groups(runs: list[Run]) -> dict[int, list[Run]]:
    """The ResNet runs by depth (resnet<depth>), shallowest first."""
    out: dict[int, list[Run]] = {}
    for r in runs:
        m = _DEPTH.match(str(r.summary.get("model")))
        if m:
            out.setdefault(int(m["depth"]), []).append(r)
    return dict(sorted(out.items()))


def _median(rows: list[list[float]]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer or eta that is NaN in every run stays NaN
        return np.nanmedian(np.array(rows, dtype=float), axis=0)


def init_profile(runs: list[Run], arm: str, kind: str) -> tuple[list[str], np.ndarray]:
    """Median over runs (seeds) of ``init/<kind>/<layer>`` at step 0, layers in network order: (layers, values)."""
    per = []
    for r in runs:
        rows = [x for x in r.rows(arm, "probe") if x["step"] == 0]
        prefix = f"init/{kind}/"
        if rows and any(k.startswith(prefix) for k in rows[0]):
            per.append({k[len(prefix):]: _num(v) for k, v in rows[0].items() if k.startswith(prefix)})
    if not per:
        return [], np.array([])
    names = list(per[0])
    return names, _median([[p.get(n, np.nan) for n in names] for p in per])


def divergence_profile(runs: list[Run], arm: str) -> tuple[np.ndarray, np.ndarray]:
    """(etas, median over runs and probed minibatches of L(w - eta g) / L(w)) from ``divergence/ratio@<eta>``."""
    per = []
    for r in runs:
        for row in r.rows(arm, "probe"):
            vals = {float(k.split("@", 1)[1]): _num(v) for k, v in row.items() if k.startswith("divergence/ratio@")}
            if vals:
                per.append(vals)
    if not per:
        return np.array([]), np.array([])
    etas = sorted(set().union(*per))
    return np.array(etas), _median([[p.get(e, np.nan) for e in etas] for p in per])


def _depth_colors(depths: list[int]) -> dict[int, tuple]:
    cmap = _plt().get_cmap("viridis")
    return {d: cmap(i / max(len(depths) - 1, 1) * 0.9) for i, d in enumerate(depths)}


def _by_depth(runs: list[Run], has) -> dict[int, list[Run]]:
    groups = {d: g for d, g in depth_groups(runs).items() if has(g)}
    if len(groups) < 2:
        raise Skip(f"needs ResNet runs of >= 2 depths with these records, has {sorted(groups) or 'none'}")
    return groups


def plot_init_scales_depth(runs: list[Run], out_dir: Path) -> list[Path]:
    """Bjorck et al. 2018: per-layer activation std and gradient norm at initialization, one line per depth."""
    groups = _by_depth(runs, lambda g: any(len(init_profile(g, a, "act_std")[0]) for a in _all_arms(g)))
    arms, colors = _all_arms(runs), _depth_colors(list(groups))
    kinds = (("act_std", "activation std of the layer's output"), ("grad_norm", "||grad W|| of the layer"))
    with _style() as plt:
        fig, axes = plt.subplots(2, len(arms), figsize=(5.5 * len(arms), 7.5), squeeze=False, constrained_layout=True)
        for i, (kind, ylabel) in enumerate(kinds):
            for j, arm in enumerate(arms):
                ax = axes[i, j]
                for d, g in groups.items():
                    _, v = init_profile(g, arm, kind)
                    ax.plot(np.arange(1, len(v) + 1), _positive(v), color=colors[d], lw=1.2, label=f"ResNet-{d}")
                ax.set_yscale("log")
                what = kind.replace("_", " ")
                ax.set_title(f"({_panel_letter(i * len(arms) + j)}) {arm}: {what} at step 0", loc="left")
                ax.set_xlabel("layer (conv/linear, input to output)")
                ax.set_ylabel(f"{ylabel} (log)")
                ax.legend(title="depth (median over seeds)", frameon=False)
        _titles(fig, "Activations and gradients at initialization grow with depth without BN (Bjorck et al. 2018)",
                sweep_scale_line([r.summary for g in groups.values() for r in g]))
        return save(fig, out_dir, "init_scales_depth")


def plot_divergence_depth(runs: list[Run], out_dir: Path) -> list[Path]:
    """Bjorck et al. 2018: relative loss L(w - eta g) / L(w) vs eta, one line per depth, a panel per arm."""
    groups = _by_depth(runs, lambda g: any(divergence_profile(g, a)[0].size for a in _all_arms(g)))
    arms, colors = _all_arms(runs), _depth_colors(list(groups))
    threshold = groups[min(groups)][0].get("metrics.divergence.threshold", 1000.0)
    with _style() as plt:
        fig, axes = plt.subplots(1, len(arms), figsize=(5.5 * len(arms), 4.4), squeeze=False, constrained_layout=True,
                                 sharey=True)
        for j, arm in enumerate(arms):
            ax = axes[0, j]
            for d, g in groups.items():
                etas, ratio = divergence_profile(g, arm)
                ax.plot(etas, _positive(ratio), color=colors[d], lw=1.3, marker="o", ms=3, label=f"ResNet-{d}")
            ax.axhline(threshold, color="0.4", ls="--", lw=0.8, label=f"divergence threshold {threshold:g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"({_panel_letter(j)}) {arm}", loc="left")
            ax.set_xlabel("step size eta")
            ax.set_ylabel("L(w - eta g) / L(w) (log; median over seeds and minibatches)")
            ax.legend(title="depth", frameon=False)
        _titles(fig, "Divergence probe at initialization (Bjorck et al. 2018): relative loss after one gradient step "
                     "of size eta", sweep_scale_line([r.summary for g in groups.values() for r in g]))
        return save(fig, out_dir, "divergence_depth")


def plot_landscape_seeds(runs: list[Run], out_dir: Path) -> list[Path]:
    """Santurkar et al. 2018 Fig. 4 over seeds (e.g. the DLN): scale-free band, gradient predictiveness, beta_eff."""
    groups = [g for g in seed_groups(runs) if len(g) > 1
              and any(g[0].rows(a, "probe", "landscape/loss_band_rel") for a in g[0].arms)]
    if not groups:
        raise Skip("no config with more than one seed has landscape probes (landscape/loss_band_rel)")
    panels = (("landscape/loss_band_rel", "(a) loss band / L(w)", "(max - min of L(w - eta g)) / L(w) (log)"),
              ("landscape/grad_pred_max", "(b) gradient predictiveness", "max ||grad L(w - eta g) - g|| (log)"),
              ("landscape/beta_eff", "(c) effective beta-smoothness", "beta_eff (log)"))
    keys, paths = varying_keys(runs), []
    for g in groups:
        label = _label(g[0], keys, runs)
        with _style() as plt:
            fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
            for ax, (key, title, ylabel) in zip(axes, panels):
                for i, arm in enumerate(_all_arms(g)):
                    s, mean, lo, hi = seed_band(g, arm, "probe", key)
                    c = arm_color(arm, i)
                    ax.fill_between(s, _positive(lo), _positive(hi), color=c, alpha=0.25, lw=0)
                    ax.plot(s, _positive(mean), color=c, lw=1.3, label=arm)
                ax.set_yscale("log")
                ax.set_title(title, loc="left")
                ax.set_xlabel(STEP)
                ax.set_ylabel(ylabel)
                handles, _ = ax.get_legend_handles_labels()
                ax.legend(handles=handles + [_band_patch("0.4", "min to max over seeds")], frameon=False,
                          title="arm (line: mean)")
            _titles(fig, f"Loss landscape along the gradient over {len(g)} seeds (Santurkar et al. 2018, Fig. 4)"
                    + (f" | {label}" if label else ""), sweep_scale_line([r.summary for r in g]))
            paths += save(fig, out_dir, "landscape_seeds" if len(groups) == 1 else f"landscape_seeds_{_slug(label)}")
    return paths


SWEEP_PLOTS = {
    "heatmap_final_acc": plot_heatmap_final_acc, "acc_vs_lr": plot_acc_vs_lr,
    "init_sensitivity": plot_init_sensitivity, "curves_seeds": plot_curves_seeds,
    "init_scales_depth": plot_init_scales_depth, "divergence_depth": plot_divergence_depth,
    "landscape_seeds": plot_landscape_seeds,
}


def _job_order(runs: list[Run]) -> list[Run]:
    """Runs in sweep order: numbered job dirs (Hydra's 0, 1, ..., 10) numerically, others by path."""
    return sorted(runs, key=lambda r: (str(r.dir.parent), int(r.dir.name) if r.dir.name.isdigit() else -1,
                                       r.dir.name))


def sweep_figures(path: Path, runs: list[Run] | None = None) -> tuple[list[Path], list[str]]:
    """The sweep-level figures of the runs under ``path`` (into ``path/figures``): (paths, skip notes)."""
    path = Path(path)
    runs = _job_order(load_runs(path) if runs is None else runs)
    if len(runs) < 2:
        return [], [f"skipped {name}: a sweep figure needs >= 2 runs, {path} holds {len(runs)}" for name in SWEEP_PLOTS]
    paths, notes = [], []
    for name, fn in SWEEP_PLOTS.items():
        try:
            paths += fn(runs, path / "figures")
        except Skip as why:
            notes.append(f"skipped {name}: {why} ({path})")
    return paths, notes


def sweep_groups(path: Path, runs: list[Run]) -> dict[Path, list[Run]]:
    """The sweeps among ``runs``: {multirun dir: its runs}, for sweep figures that compare like with like.

    A sweep is the runs that share a parent directory (Hydra's multirun dir holds one dir per job), so
    ``results/`` with several experiments gives one group per experiment's sweep instead of one
    meaningless sweep over all of them; a lone run dir is no sweep. ``path`` itself is a group when
    it is a multirun dir, even of one job, so its figure section says why nothing was compared.
    """
    path = Path(path)
    if (path / "summary.json").exists():
        return {}
    groups: dict[Path, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.dir.parent, []).append(r)
    return {d: rs for d, rs in groups.items() if len(rs) >= 2 or d.resolve() == path.resolve()}


def make_figures(path: Path, runs: list[Run] | None = None) -> tuple[list[Path], list[str]]:
    """Every figure for a run dir, or for a sweep dir (the sweep figures, then every run's figures).

    A folder of several experiments (e.g. ``results/``) gets the sweep figures of each sweep in it
    (see ``sweep_groups``), then every run's figures.
    ``runs``: the runs under ``path`` already read (default: read them, damage raising DamagedRecord).
    Returns (PNG/PDF paths written, one-line notes for figures skipped because their data is absent).
    """
    path = Path(path)
    if runs is None:
        runs = load_runs(path) if path.is_dir() else []
    runs = _job_order(runs)
    if not runs:
        return [], [f"skipped all figures: {path} holds no run records (summary.json)"]
    paths, notes = [], []
    for sweep_dir, group in sweep_groups(path, runs).items():
        p, n = sweep_figures(sweep_dir, group)
        paths += p
        notes += n
    for run in runs:
        p, n = run_figures(run)
        paths += p
        notes += n
    return paths, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bnlab-plot", description="Draw figures from bnlab run records (a run or sweep dir)."
    )
    parser.add_argument("path", type=Path, help="a run directory or a multirun directory")
    args = parser.parse_args(argv)

    def body():
        paths, notes = make_figures(args.path, posthoc.usable_runs(args.path, "bnlab-plot"))
        for p in paths:
            print(p)
        for n in notes:
            print(n)

    return posthoc.main("bnlab-plot", body)


if __name__ == "__main__":
    sys.exit(main())
