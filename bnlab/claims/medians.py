"""Reductions of run records to the numbers a claim is judged on.

Reads only run records (``results.read_metrics`` rows), never W&B. Every
reduction takes an optional step window ``(first, last)`` (inclusive), so a
claim can be judged early, late and over the whole run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bnlab.records.store import finite, read_metrics

LANDSCAPE_MEDIANS = {
    "loss_band": "median over probes of loss_max - loss_min (Santurkar Fig. 4a band width)",
    "loss_band_rel": "median over probes of (loss_max - loss_min) / L(w) (the band, scale-free)",
    "grad_pred_max": "median over probes of max_eta ||grad L(w - eta g) - g|| (Fig. 4b)",
    "beta_eff": "median over probes of effective beta-smoothness (Fig. 4c)",
}


def in_window(step: int, window: tuple[int, int] | None) -> bool:
    return window is None or window[0] <= step <= window[1]


def band_rel(row: dict) -> float | None:
    """(loss_max - loss_min) / L(w) of a landscape probe row: recorded, or from its loss keys (older records)."""
    if "landscape/loss_band_rel" in row:  # recorded: None, NaN or Inf when the arm had blown up
        rel = row["landscape/loss_band_rel"]
        return rel if finite(rel) else None
    lo, hi, loss = row.get("landscape/loss_min"), row.get("landscape/loss_max"), row.get("landscape/loss")
    if not (finite(lo) and finite(hi) and finite(loss)) or not loss:
        return None
    return (hi - lo) / loss


def landscape_medians(run_dir: Path, max_step: int | None = None, min_step: int | None = None,
                      rows: list[dict] | None = None) -> dict[str, dict]:
    """Per arm: medians over training of the landscape band (absolute and / L(w)), gradient predictiveness, beta_eff.

    Probe rows where a value is null, NaN or Inf (the arm had blown up) are left out of that
    median; ``probes`` counts the rows used for the band. ``min_step`` /
    ``max_step`` keep only probes in that range (e.g. early training). ``rows``:
    the run's metrics rows when already read (else read from ``run_dir``).
    """
    window = (min_step if min_step is not None else -1, max_step if max_step is not None else float("inf"))
    out = {}
    for row in read_metrics(run_dir) if rows is None else rows:
        if row["split"] != "probe" or "landscape/loss_min" not in row or not in_window(row["step"], window):
            continue
        acc = out.setdefault(row["arm"], {k: [] for k in (*LANDSCAPE_MEDIANS, "steps")})
        lo, hi = row["landscape/loss_min"], row["landscape/loss_max"]
        if finite(lo) and finite(hi):
            acc["loss_band"].append(hi - lo)
            acc["steps"].append(row["step"])
        if band_rel(row) is not None:
            acc["loss_band_rel"].append(band_rel(row))
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


def ics_median(rows: list[dict], arm: str, suffix: str, window=None) -> tuple[float | None, int]:
    """Median over probes and layers of ``ics/<layer>/<suffix>`` (``rel`` or ``l2``), and the probe count."""
    vals, probes = [], 0
    for r in rows:
        if r["arm"] != arm or r["split"] != "probe" or not in_window(r["step"], window):
            continue
        found = [v for k, v in r.items() if k.startswith("ics/") and k.endswith(f"/{suffix}") and finite(v)]
        probes += bool(found)
        vals += found
    return (statistics.median(vals) if vals else None), probes


def activation_drift(rows: list[dict], arm: str, min_points: int, window=None,
                     prefix: str = "nl_in/") -> float | None:
    """Drift of the tracked channels: (max - min of the p50 trace) / median (p85 - p15), mean over channels.

    Ioffe & Szegedy 2015 Fig. 1: how far a unit's median moves relative to its spread.
    A channel needs ``min_points`` rows in the window and a positive spread. ``prefix``: ``nl_in/``
    (the nonlinearity's input, as in the paper) or ``act/`` (the conv output before the norm).
    """
    train = [r for r in rows if r["arm"] == arm and r["split"] == "train" and in_window(r["step"], window)]
    bases = sorted({k[: -len("/p50")] for r in train for k in r if k.endswith("/p50") and k.startswith(prefix)})
    drifts = []
    for base in bases:
        pts = [r for r in train if all(finite(r.get(f"{base}/p{q}")) for q in (15, 50, 85))]
        if len(pts) < min_points:
            continue
        p50 = [r[f"{base}/p50"] for r in pts]
        spread = statistics.median(r[f"{base}/p85"] - r[f"{base}/p15"] for r in pts)
        if spread > 0:
            drifts.append((max(p50) - min(p50)) / spread)
    return statistics.mean(drifts) if drifts else None
