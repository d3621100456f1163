"""Figure ``recurrent_stats``: the LSTM's statistics per time step (Cooijmans et al. 2016).

Why BN-LSTM keeps statistics per time step: the batch mean and variance of the
hidden-to-hidden pre-activation a_t = W_h h_{t-1} change with t (a_0 = 0, since
h_{-1} = 0, and the first steps differ most), so one set of statistics shared by
every step would normalize most steps with the wrong numbers. Panels, from the
``recurrent/`` probe rows (bnlab/metrics/recurrent_stats.py) of one run:

(a) batch mean of a_t for the tracked units against t, bn arm, at the first and
    last probe step;
(b) the same for the batch variance, with the mean over all 4H units;
(c) ||dL/dh_t|| against t for every arm at the last probe step: the gradient
    reaching early steps (Cooijmans' Fig. 1, gamma = 1 vs 0.1).

Layer 0 only (the first LSTM layer). Written by bnlab-plot beside the other
per-run figures (the figure registry, bnlab/plots/registry.py) as figures/recurrent_stats.png/.pdf.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from bnlab.metrics import recurrent_stats
from bnlab.plots import style as plots


def step_series(row: dict, layer: int = 0) -> dict[str, np.ndarray]:
    """{stat: values over t = 0, 1, ...} of one probe row (layer ``layer``); stats as in recurrent_stats."""
    by_stat: dict[str, dict[int, float]] = defaultdict(dict)
    for k, v in row.items():
        parsed = recurrent_stats.parse_key(k)
        if parsed is not None and parsed[0] == layer:
            by_stat[parsed[1]][parsed[2]] = v
    return {s: plots._arr([vals[t] for t in sorted(vals)]) for s, vals in by_stat.items()}


def _probe_rows(run, arm: str) -> list[dict]:
    return [r for r in run.rows(arm, "probe") if any(k.startswith(recurrent_stats.MEASUREMENT.prefix) for k in r)]


def _units(series: dict, what: str) -> list[str]:
    return sorted((s for s in series if s.startswith(f"hh_{what}_u")), key=lambda s: int(s.rsplit("u", 1)[1]))


def plot_time_step_stats(run, arm: str = "bn") -> list:
    """The figure above for ``arm`` (default the BN-LSTM); raises plots.Skip when the run has no such rows."""
    run = plots._as_run(run)
    rows = _probe_rows(run, arm)
    if not rows:
        raise plots.Skip(f"no {recurrent_stats.MEASUREMENT.prefix} probe rows of arm {arm} "
                         f"(metrics.recurrent_stats.every, model=lstm)")
    first, last = rows[0], rows[-1]
    with plots._style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
        for ax, what, title in ((axes[0], "mean", "(a) batch mean of W_h h_{t-1}"),
                                (axes[1], "var", "(b) batch variance of W_h h_{t-1}")):
            for row, ls in ((first, "--"), (last, "-")):
                series = step_series(row)
                for i, unit in enumerate(_units(series, what)):
                    ax.plot(series[unit], ls=ls, color=plots.EXTRA_COLORS[i % len(plots.EXTRA_COLORS)], lw=1,
                            label=f"unit {unit.rsplit('u', 1)[1]}, step {row['step']}")
                if what == "var":
                    ax.plot(series["hh_var_avg"], ls=ls, color="black", lw=1.5,
                            label=f"mean over units, step {row['step']}")
            ax.set_title(title, loc="left")
            ax.set_xlabel("time step t (image row)")
            ax.set_ylabel(f"batch {'mean' if what == 'mean' else 'variance'}")
            ax.legend(frameon=False, fontsize=6.5)
        ax = axes[2]
        for i, name in enumerate(run.arms):
            arm_rows = _probe_rows(run, name)
            if arm_rows:
                g = step_series(arm_rows[-1]).get("grad_h")
                if g is not None:
                    ax.plot(plots._positive(g), color=plots.arm_color(name, i), label=name)
        ax.set_yscale("log")
        ax.set_title(f"(c) gradient reaching h_t, step {last['step']}", loc="left")
        ax.set_xlabel("time step t (image row)")
        ax.set_ylabel("||dL/dh_t|| (batch)")
        plots._legend_arms(ax)
        plots._titles(fig, f"Per-time-step statistics of the LSTM, arm {arm} (Cooijmans et al. 2016): why BN "
                           f"keeps statistics per time step", plots._run_subtitle(run))
        return plots.save(fig, run.dir / "figures", "recurrent_stats")
