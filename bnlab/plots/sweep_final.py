"""Sweep figures of the final test accuracy: ``heatmap_final_acc``, ``acc_vs_lr``, ``init_sensitivity``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnlab.plots import style
from bnlab.plots.grouping import _all_arms, _bs, _facets, _final, _lr
from bnlab.plots.style import Skip, _band_patch, _panel_letter, _style, _titles, arm_color, sweep_scale_line
from bnlab.records.store import Run


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
        return style.save(fig, out_dir, "heatmap_final_acc")


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
        return style.save(fig, out_dir, "acc_vs_lr")




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
        return style.save(fig, out_dir, "init_sensitivity")


