"""The figure of a registered measurement that has no figure of its own: each scalar key it records vs step.

A new metric that registers a ``Measurement`` (``bnlab.metrics.registry``) gets
this figure, named after it, through the registry alone; a dedicated figure in
``registry.FIGURES`` replaces it.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from pathlib import Path

import numpy as np

from bnlab.metrics import registry as measurements
from bnlab.plots import style
from bnlab.plots.registry import DEDICATED
from bnlab.plots.style import (
    STEP,
    _arm_index,
    _arr,
    _as_run,
    _auto_log,
    _legend_arms,
    _mark_divergence,
    _markers,
    _min_steps,
    _panel_letter,
    _run_subtitle,
    _style,
    _titles,
    arm_color,
)

MAX_PANELS = 12  # keys beyond this many are named in the title, not drawn (a figure stays readable)


def registered() -> dict:
    """Every registered measurement: each module of ``bnlab.metrics`` registers its own at import."""
    import bnlab.metrics

    for mod in pkgutil.iter_modules(bnlab.metrics.__path__):
        importlib.import_module(f"bnlab.metrics.{mod.name}")
    return measurements.MEASUREMENTS


def undrawn() -> list:
    """The registered measurements no dedicated figure shows, in registration order."""
    return [m for m in registered().values() if m.name not in DEDICATED]


def _scalar(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def measurement_traces(run, arm: str, m) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Steps and, per scalar record key ``m`` owns (first-seen order), its trace in ``m.split`` rows of ``arm``."""
    def owned(k):
        o = measurements.owner(k)
        return o is not None and o.name == m.name

    rows = [r for r in _as_run(run).rows(arm, m.split) if any(owned(k) for k in r)]
    keys: list[str] = []
    for r in rows:
        keys += [k for k, v in r.items() if k not in keys and owned(k) and _scalar(v)]
    steps = np.array([r["step"] for r in rows], dtype=float)
    return steps, {k: _arr(r.get(k) for r in rows) for k in keys}


def plot_measurement(run, m) -> list[Path]:
    """A registered measurement without a figure of its own: each of its scalar record keys vs step, every arm."""
    run = _as_run(run)
    data = {arm: measurement_traces(run, arm, m) for arm in run.arms}
    _min_steps({a: len(s) if tr else 0 for a, (s, tr) in data.items()}, 1,
               f"{m.split} rows with {m.prefix}* keys (metrics.{m.name})")
    keys: list[str] = []
    for _, traces in data.values():
        keys += [k for k in traces if k not in keys]
    shown = keys[:MAX_PANELS]
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    with _style() as plt:
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 0.6, 3.2 * nrows + 1.2), squeeze=False,
                                 constrained_layout=True)
        for i, key in enumerate(shown):
            ax = axes[i // ncols, i % ncols]
            for arm, (steps, traces) in data.items():
                if key in traces:
                    c = arm_color(arm, _arm_index(run)[arm])
                    ax.plot(steps, traces[key], color=c, lw=1.2, label=arm, **_markers(len(steps)))
                    _mark_divergence(ax, run, arm, c)
            _auto_log(ax, *[tr[key] for _, tr in data.values() if key in tr])
            ax.set_title(f"({_panel_letter(i)}) {key}", loc="left")
            ax.set_xlabel(STEP)
            ax.set_ylabel("recorded value")
            _legend_arms(ax)
        for j in range(len(shown), nrows * ncols):
            axes[j // ncols, j % ncols].set_visible(False)
        more = f"; {len(keys) - len(shown)} more keys not drawn" if len(keys) > len(shown) else ""
        _titles(fig, f"{m.title} ({m.paper}): its record keys vs step{more}",
                _run_subtitle(run, f"every {run.get(f'metrics.{m.name}.every', '?')} steps, {m.split} rows"))
        return style.save(fig, run.dir / "figures", m.name)
