"""Sweep figures over ResNet depth (Bjorck et al. 2018): ``init_scales_depth`` and ``divergence_depth``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from bnlab.plots import keys, style
from bnlab.plots.grouping import _all_arms, depth_groups
from bnlab.plots.style import Skip, _num, _panel_letter, _plt, _positive, _style, _titles, sweep_scale_line
from bnlab.records.store import Run


def _median(rows: list[list[float]]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer or eta that is NaN in every run stays NaN
        return np.nanmedian(np.array(rows, dtype=float), axis=0)


def init_profile(runs: list[Run], arm: str, kind: str) -> tuple[list[str], np.ndarray]:
    """Median over runs (seeds) of ``init/<kind>/<layer>`` at step 0, layers in network order: (layers, values)."""
    per = []
    for r in runs:
        rows = [x for x in r.rows(arm, "probe") if x["step"] == 0]
        layers = {keys.parse_init_key(k, kind): v for k, v in rows[0].items()} if rows else {}
        layers.pop(None, None)
        if layers:
            per.append({layer: _num(v) for layer, v in layers.items()})
    if not per:
        return [], np.array([])
    names = list(per[0])
    return names, _median([[p.get(n, np.nan) for n in names] for p in per])


def divergence_profile(runs: list[Run], arm: str) -> tuple[np.ndarray, np.ndarray]:
    """(etas, median over runs and probed minibatches of L(w - eta g) / L(w)) from ``divergence/ratio@<eta>``."""
    per = []
    for r in runs:
        for row in r.rows(arm, "probe"):
            vals = {keys.parse_ratio_key(k): _num(v) for k, v in row.items() if keys.parse_ratio_key(k) is not None}
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
        return style.save(fig, out_dir, "init_scales_depth")


def draw_divergence(ax, etas: np.ndarray, ratio: np.ndarray, color, label: str) -> None:
    """One depth's r(eta) line; an eta whose loss after the step is NaN/Inf in every seed (the probe records
    the ratio as NaN: the step overflowed, i.e. diverged) gets a triangle at the top of the panel, so that
    a depth that diverges at every eta is still visible rather than an empty panel."""
    ax.plot(etas, _positive(ratio), color=color, lw=1.3, marker="o", ms=3, label=label)
    bad = ~np.isfinite(np.asarray(ratio, dtype=float))
    if bad.any():
        ax.scatter(etas[bad], np.full(int(bad.sum()), 0.97), transform=ax.get_xaxis_transform(), marker="^",
                   color=color, s=22, clip_on=False, label=f"{label}: loss NaN/Inf after the step")


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
                draw_divergence(ax, *divergence_profile(g, arm), color=colors[d], label=f"ResNet-{d}")
            ax.axhline(threshold, color="0.4", ls="--", lw=0.8, label=f"divergence threshold {threshold:g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"({_panel_letter(j)}) {arm}", loc="left")
            ax.set_xlabel("step size eta")
            ax.set_ylabel("L(w - eta g) / L(w) (log; median over seeds and minibatches)")
            ax.legend(title="depth", frameon=False)
        _titles(fig, "Divergence probe at initialization (Bjorck et al. 2018): relative loss after one gradient step "
                     "of size eta", sweep_scale_line([r.summary for g in groups.values() for r in g]))
        return style.save(fig, out_dir, "divergence_depth")


