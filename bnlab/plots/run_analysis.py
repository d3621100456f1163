"""Per-run figures of ``analysis/analysis.json`` (``bnlab-analyze``): ``spectral_density``, ``surface_1d``,
``surface_2d``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bnlab.plots import style
from bnlab.plots.style import (
    ACC,
    LOSS,
    Skip,
    _arr,
    _as_run,
    _auto_log,
    _legend_arms,
    _num,
    _run_subtitle,
    _style,
    _titles,
    arm_color,
)
from bnlab.records.store import Run, loads, stamp_mismatch


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
        return style.save(fig, run.dir / "figures", "spectral_density")


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
        return style.save(fig, run.dir / "figures", "surface_1d")


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
        return style.save(fig, run.dir / "figures", "surface_2d")


