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
    _plt,
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




def _band_panels(axes, lines: list[tuple[list[Run], str, str, str]]) -> None:
    """The ``curves`` panels: per (runs of one config, arm, colour, label) the mean over seeds and its min-max band."""
    for (r, c), split, key, title, ylabel, logy in CURVE_PANELS:
        ax = axes[r, c]
        for g, arm, color, label in lines:
            s, mean, lo, hi = seed_band(g, arm, split, key)
            if logy:
                mean, lo, hi = _positive(mean), _positive(lo), _positive(hi)
            ax.fill_between(s, lo, hi, color=color, alpha=0.25, lw=0)
            ax.plot(s, mean, color=color, lw=1.3, label=label,
                    **(_markers(len(s)) if split == "train" else {"marker": "o", "ms": 3}))
            for k, run in enumerate(g):
                if arm in run.arms:
                    _mark_divergence(ax, run, arm, color, label=k == 0)
        ax.set_title(title, loc="left")
        ax.set_xlabel(STEP)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        handles, _ = ax.get_legend_handles_labels()
        handles.append(_band_patch("0.4", "min to max over seeds"))
        ax.legend(handles=handles, frameon=False, title="line: mean over seeds", fontsize="small")


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
        with _style() as plt:
            fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
            _band_panels(axes, [(g, arm, arm_color(arm, i), arm) for i, arm in enumerate(_all_arms(g))])
            seeds = sorted(r.summary["seed"] for r in g)
            _titles(fig, f"Training curves over {len(g)} seeds {seeds}" + (f" | {label}" if label else "")
                    + " (dotted: a seed diverged)", sweep_scale_line([r.summary for r in g]))
            paths += style.save(fig, out_dir, name)
    return paths


MAX_CONFIG_LINES = 8  # beyond this many (config, arm) lines one figure stops being readable


def plot_curves_configs(runs: list[Run], out_dir: Path) -> list[Path]:
    """The sweep's configs in one figure (e.g. gamma init 0.1 vs 1.0): a line per config and arm, over seeds.

    The ``curves`` panels; each line is the mean and min-max band over that config's seeds."""
    groups = [g for g in seed_groups(runs) if len(g) > 1]
    if len(groups) < 2:
        raise Skip("needs >= 2 configs of the sweep with more than one seed each")
    keys = varying_keys(runs)
    lines = [(g, arm, _label(g[0], keys, runs)) for g in groups for arm in _all_arms(g)]
    if len(lines) > MAX_CONFIG_LINES:
        raise Skip(f"{len(lines)} (config, arm) lines, more than {MAX_CONFIG_LINES}: see curves_seeds_*")
    cmap = _plt().get_cmap("tab10")
    multi_arm = len({arm for _, arm, _ in lines}) > 1
    with _style() as plt:
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
        _band_panels(axes, [(g, arm, cmap(i % 10), f"{label}, {arm}" if multi_arm else label)
                            for i, (g, arm, label) in enumerate(lines)])
        n = sorted({len(g) for g in groups})
        seeds = f"{n[0]} seeds each" if len(n) == 1 else f"{n[0]}-{n[-1]} seeds each"
        _titles(fig, f"Training curves of the sweep's {len(groups)} configs, {seeds} (dotted: a seed diverged)",
                sweep_scale_line([r.summary for g in groups for r in g]))
        return style.save(fig, out_dir, "curves_configs")


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


