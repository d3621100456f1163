"""View 4: every recorded curve as an interactive panel (hover, zoom, arm toggles, log/linear axis).

A panel is ``{"id", "title", "ylabel", "log", "series": [{"arm", "name", "x", "y", "dash"}],
"bands": [{"arm", "name", "x", "lo", "hi"}]}``; panels with no data in this run are left out.
"""

from __future__ import annotations

import re

from bnlab.explore.data import keys_matching, num, step_series
from bnlab.records.store import Run

# (id, title, y label, log axis first, [(split, key, label, dash)])
FIXED = [
    ("loss", "Loss", "cross-entropy", True, [("train", "loss", "train", "solid"), ("test", "loss", "test", "dash")]),
    ("acc", "Accuracy (test: running statistics; dotted: batch statistics)", "accuracy", False,
     [("train", "acc", "train", "solid"), ("test", "acc", "test", "dash"),
      ("test", "acc_batch_stats", "test, batch stats", "dot")]),
    ("grad_norm", "Gradient norm", "||g||", True, [("train", "grad_norm", "global", "solid")]),
    ("landscape_beta", "Effective beta-smoothness (Santurkar et al. 2018, Fig. 4c)", "beta_eff", True,
     [("probe", "landscape/beta_eff", "beta_eff", "solid")]),
]
# (id, title, y label, log, split, key pattern whose group(1) names the series)
PATTERNS = [
    ("layer_grad_norm", "Gradient norm per parameter", "||grad||", True, "train", r"^grad_norm/(.+)$"),
    ("layer_act_std", "Std of each conv layer's output (pre-norm)", "std", True, "train", r"^act/([^/]+)/std$"),
    ("ics_l2", "Internal covariate shift (Santurkar et al. 2018, Def. 2.1): l2 distance", "||G - G'||", True,
     "probe", r"^ics/(.+)/l2$"),
    ("ics_cos", "Internal covariate shift: cosine of G and G'", "cos", False, "probe", r"^ics/(.+)/cos$"),
    ("curvature", "Top Hessian eigenvalues (Lanczos)", "eigenvalue", True, "probe",
     r"^curvature/(eig\d+@\w+)$"),
]
# Santurkar et al. 2018 Fig. 4 (a), (b): min-max bands over the step sizes of the probe
BANDS = [
    ("landscape_loss", "Loss landscape: band of L(w - eta g) (Santurkar et al. 2018, Fig. 4a)", "loss", True,
     "landscape/loss_min", "landscape/loss_max"),
    ("landscape_grad", "Gradient predictiveness: band of ||grad L(w - eta g) - g|| (Fig. 4b)", "l2", True,
     "landscape/grad_pred_min", "landscape/grad_pred_max"),
]


def panel(pid: str, title: str, ylabel: str, log: bool, series: list, bands: list | None = None) -> dict:
    return {"id": pid, "title": title, "ylabel": ylabel, "log": log, "series": series, "bands": bands or []}


def fixed_panels(run: Run) -> list[dict]:
    out = []
    for pid, title, ylabel, log, keys in FIXED:
        series = [{"arm": arm, "name": f"{arm} {label}", "dash": dash, **step_series(run, arm, split, key)}
                  for arm in run.arms for split, key, label, dash in keys]
        out.append(panel(pid, title, ylabel, log, [s for s in series if s["x"]]))
    return out


def pattern_panels(run: Run) -> list[dict]:
    out = []
    for pid, title, ylabel, log, split, pattern in PATTERNS:
        rx = re.compile(pattern)
        keys = keys_matching(run, split, lambda k, rx=rx: (rx.match(k) or [None, None])[1])
        series = [{"arm": arm, "name": f"{arm} {label}", "dash": "solid", **step_series(run, arm, split, key)}
                  for arm in run.arms for key, label in keys.items()]
        out.append(panel(pid, title, ylabel, log, [s for s in series if s["x"]]))
    return out


def band_panels(run: Run) -> list[dict]:
    out = []
    for pid, title, ylabel, log, lo_key, hi_key in BANDS:
        bands = []
        for arm in run.arms:
            rows = run.rows(arm, "probe", lo_key)
            if rows:
                bands.append({"arm": arm, "name": f"{arm} min-max", "x": [r["step"] for r in rows],
                              "lo": [num(r[lo_key]) for r in rows], "hi": [num(r.get(hi_key)) for r in rows]})
        out.append(panel(pid, title, ylabel, log, [], bands))
    return out


def panels(run: Run) -> list[dict]:
    """Every panel with data in this run, in the page's order."""
    return [p for p in fixed_panels(run) + band_panels(run) + pattern_panels(run) if p["series"] or p["bands"]]
