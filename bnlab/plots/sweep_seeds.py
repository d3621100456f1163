"""Sweep figures over the seeds of one config: ``curves_seeds`` and ``landscape_seeds`` (mean, min-max band)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from bnlab.plots import style
from bnlab.plots.grouping import _all_arms, _label, seed_groups, varying_keys
from bnlab.plots.style import (
    CURVE_PANELS,
    STEP,
    Skip,
    _band_patch,
    _mark_divergence,
    _markers,
    _num,
    _positive,
    _slug,
    _style,
    _titles,
    arm_color,
    sweep_scale_line,
)
from bnlab.records.store import Run


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
            paths += style.save(fig, out_dir, name)
    return paths



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
            name = "landscape_seeds" if len(groups) == 1 else f"landscape_seeds_{_slug(label)}"
            paths += style.save(fig, out_dir, name)
    return paths


