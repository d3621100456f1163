"""Reductions of run records to the numbers a claim is judged on.

Reads only run records (``results.read_metrics``), never W&B.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bnlab.results import finite, read_metrics

LANDSCAPE_MEDIANS = {
    "loss_band": "median over probes of loss_max - loss_min (Santurkar Fig. 4a band width)",
    "grad_pred_max": "median over probes of max_eta ||grad L(w - eta g) - g|| (Fig. 4b)",
    "beta_eff": "median over probes of effective beta-smoothness (Fig. 4c)",
}


def landscape_medians(run_dir: Path, max_step: int | None = None) -> dict[str, dict]:
    """Per arm: medians over training of the landscape band width, gradient predictiveness and beta_eff.

    Probe rows where a value is null, NaN or Inf (the arm had blown up) are left out of that
    median; ``probes`` counts the rows used for the band. ``max_step`` keeps
    only probes at or before that step (e.g. early training).
    """
    out = {}
    for row in read_metrics(run_dir):
        if row["split"] != "probe" or "landscape/loss_min" not in row:
            continue
        if max_step is not None and row["step"] > max_step:
            continue
        acc = out.setdefault(row["arm"], {"loss_band": [], "grad_pred_max": [], "beta_eff": [], "steps": []})
        lo, hi = row["landscape/loss_min"], row["landscape/loss_max"]
        if finite(lo) and finite(hi):
            acc["loss_band"].append(hi - lo)
            acc["steps"].append(row["step"])
        for key in ("grad_pred_max", "beta_eff"):
            if finite(row.get(f"landscape/{key}")):
                acc[key].append(row[f"landscape/{key}"])
    return {
        arm: {
            **{k: statistics.median(v) if v else None for k, v in acc.items() if k != "steps"},
            "probes": len(acc["steps"]),
            "first_step": min(acc["steps"], default=None),
            "last_step": max(acc["steps"], default=None),
        }
        for arm, acc in out.items()
    }
