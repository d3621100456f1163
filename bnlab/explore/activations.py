"""View 1: activations over training, per tracked conv layer and channel, for every arm.

``view(run)`` -> ``{"<conv>/c<ch>": {arm: {"steps": [...], "pre": [hist...], "nl": [hist...],
"pct": {"pre"|"nl": {q: {"x", "y"}}}}}}``: at each step with ``act_hist`` rows, the histogram
``{"lo", "hi", "p": fractions}`` of the pre-norm values (``pre``) and of the nonlinearity's input
(``nl``: BN's output in a BN arm), and Ioffe & Szegedy's percentile lines from ``act/`` and
``nl_in/`` rows. A run without histograms still gets its percentile lines.
"""

from __future__ import annotations

from bnlab.explore.data import keys_matching, num, percentile_key, step_series
from bnlab.metrics import bn_stats
from bnlab.records.store import Run


def histograms(run: Run, arm: str, conv: str, ch: int) -> dict:
    """{"steps", "pre", "nl"} of one channel: the histograms of every step that recorded them."""
    lo_key = bn_stats.hist_key(conv, ch, "pre", "lo")
    out = {"steps": [], "pre": [], "nl": []}
    for row in run.rows(arm, "train", lo_key):
        out["steps"].append(row["step"])
        for where in ("pre", "nl"):
            fracs, i = [], 0
            while bn_stats.hist_key(conv, ch, where, f"b{i}") in row:
                fracs.append(num(row[bn_stats.hist_key(conv, ch, where, f"b{i}")]))
                i += 1
            out[where].append({"lo": num(row.get(bn_stats.hist_key(conv, ch, where, "lo"))),
                               "hi": num(row.get(bn_stats.hist_key(conv, ch, where, "hi"))), "p": fracs})
    return out


def view(run: Run) -> dict:
    hist = keys_matching(run, "train", bn_stats.parse_hist_key)
    pct = keys_matching(run, "train", percentile_key)
    channels = sorted({(layer, ch) for layer, ch, *_ in hist.values()} | {(layer, ch) for _, layer, ch, _ in
                                                                         pct.values()})
    out = {}
    for layer, ch in channels:
        per_arm = {}
        for arm in run.arms:
            lines = {"pre": {}, "nl": {}}
            for key, (where, lay, c, q) in pct.items():
                if (lay, c) == (layer, ch):
                    lines[where][q] = step_series(run, arm, "train", key)
            per_arm[arm] = {**histograms(run, arm, layer, ch), "pct": lines}
        out[f"{layer}/c{ch}"] = per_arm
    return out
