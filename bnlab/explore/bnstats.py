"""View 2: training vs inference statistics.

``view(run)`` -> ``{"layers": {"<norm>/c<ch>": {arm: {stat: {"x", "y"}}}}, "acc": {arm: {"running",
"batch"}}}``: per BN layer and tracked channel the batch mean/variance of each recorded step beside the
running mean/variance inference uses (``bn_stats`` rows), and the test accuracy evaluated with running
statistics (``acc``) and with batch statistics (``acc_batch_stats``).
"""

from __future__ import annotations

from bnlab.explore.data import keys_matching, step_series
from bnlab.metrics import bn_stats
from bnlab.records.store import Run


def view(run: Run) -> dict:
    keys = keys_matching(run, "train", bn_stats.parse_stat_key)
    layers: dict = {}
    for key, (layer, ch, stat) in sorted(keys.items()):
        for arm in run.arms:
            s = step_series(run, arm, "train", key)
            if s["x"]:
                layers.setdefault(f"{layer}/c{ch}", {}).setdefault(arm, {})[stat] = s
    acc = {arm: {"running": step_series(run, arm, "test", "acc"),
                 "batch": step_series(run, arm, "test", "acc_batch_stats")} for arm in run.arms}
    return {"layers": layers, "acc": acc}
