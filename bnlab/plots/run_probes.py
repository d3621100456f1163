"""Per-run figures of the probe rows: ``landscape``, ``curvature``, ``ics`` and ``slq_density``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bnlab.plots import keys, style
from bnlab.plots.style import (
    LOSS,
    STEP,
    Skip,
    _arm_index,
    _arr,
    _as_run,
    _auto_log,
    _legend_arms,
    _mark_divergence,
    _markers,
    _min_steps,
    _panel_letter,
    _positive,
    _run_subtitle,
    _style,
    _titles,
    arm_color,
)
from bnlab.records.store import finite

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
        return style.save(fig, run.dir / "figures", "landscape")


# ----------------------------------------------------------------------------- per run: curvature

MODE_STYLE = {"batch": "-", "running": "--"}
MODE_MARKER = {"batch": {"marker": "o", "ms": 3.5}, "running": {"marker": "s", "ms": 6, "mfc": "none"}}


def curvature_data(run, arm: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per BN mode: steps and top Hessian eigenvalue (probe rows ``curvature/eig1@<mode>``)."""
    run = _as_run(run)
    out = {}
    modes = []
    for r in run.rows(arm, "probe"):
        for k in r:
            mode = keys.parse_eig_key(k)
            if mode and mode not in modes:
                modes.append(mode)
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
        return style.save(fig, run.dir / "figures", "curvature")


# ----------------------------------------------------------------------------- per run: ICS

def ics_data(run, arm: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per parameter: {"l2": (steps, values), "cos": (steps, values)} from probe rows ``ics/<param>/...``."""
    run = _as_run(run)
    params: list[str] = []
    for r in run.rows(arm, "probe"):
        for k in r:
            parsed = keys.parse_ics_key(k)
            if parsed and parsed[0] not in params:
                params.append(parsed[0])
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
        return style.save(fig, run.dir / "figures", "ics")


# ----------------------------------------------------------------------------- per run: analysis.json

# ----------------------------------------------------------------------------- per run: SLQ density (issue 18)

def slq_data(run, arm: str) -> dict[int, dict[str, tuple[list[list[float]], list[list[float]]]]]:
    """{probe step: {BN mode: (nodes per Lanczos run, weights per run)}} from ``curvature/slq<r>_*@<mode>`` keys."""
    out: dict[int, dict] = {}
    for r in _as_run(run).rows(arm, "probe"):
        found: dict[str, dict[int, list]] = {}
        for k, v in r.items():
            m = keys.parse_slq_node_key(k)
            w = r.get(keys.slq_weight_key(*m)) if m else None
            if m and finite(v) and finite(w):
                found.setdefault(m[2], {}).setdefault(m[0], []).append((float(v), float(w)))
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
        return style.save(fig, run.dir / "figures", "slq_density")

