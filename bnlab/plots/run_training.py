"""Per-run figures of the train rows: ``curves``, ``layer_norms`` and ``activations``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bnlab.plots import keys, style
from bnlab.plots.style import (
    CURVE_PANELS,
    STEP,
    Skip,
    _arm_index,
    _arr,
    _as_run,
    _legend_arms,
    _mark_divergence,
    _markers,
    _min_steps,
    _positive,
    _run_subtitle,
    _style,
    _titles,
    arm_color,
)

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
                line_kw = {"marker": "o", "ms": 3} if split == "test" else {"lw": 1, **_markers(len(xs), 2.5)}
                ax.plot(xs, _arr(ys), color=arm_color(arm, i), label=arm, **line_kw)
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
        return style.save(fig, run.dir / "figures", "curves")



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
            p = keys.parse_layer_norm_key(k, kind)
            if p is not None and _is_layer_weight(p) and p not in params:
                params.append(p)
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
        return style.save(fig, run.dir / "figures", "layer_norms")


# ----------------------------------------------------------------------------- per run: activations

def activation_traces(run, arm: str) -> dict[tuple[str, int], tuple[np.ndarray, dict[float, np.ndarray]]]:
    """Per tracked (layer, channel): steps and, per percentile q, its trace (train rows ``act/<l>/c<ch>/p<q>``)."""
    rows = [r for r in _as_run(run).rows(arm, "train") if any(keys.parse_act_key(k) for k in r)]
    found: dict[tuple[str, int], dict[float, str]] = {}
    for r in rows:
        for k in r:
            parsed = keys.parse_act_key(k)
            if parsed:
                layer, ch, q = parsed
                found.setdefault((layer, ch), {})[q] = k
    steps = np.array([r["step"] for r in rows], dtype=float)
    return {lc: (steps, {q: _arr(r.get(k) for r in rows) for q, k in sorted(qs.items())})
            for lc, qs in found.items()}


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
        return style.save(fig, run.dir / "figures", "activations")


