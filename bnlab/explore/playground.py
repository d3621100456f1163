"""View 3: the playground's saved batch of real pre-norm activations.

``view(run)`` -> ``{"<conv>/c<ch>": {arm: {"step", "x": values, "running_mean", "running_var", "gamma",
"beta", "eps"}}}`` from the latest ``bn_batch`` probe row of each arm (the parameters are absent in an
arm without running statistics). The page normalizes these values itself as the sliders move.
"""

from __future__ import annotations

from bnlab.explore.data import keys_matching, num
from bnlab.metrics import bn_stats
from bnlab.records.store import Run


def latest_batch(run: Run, arm: str, conv: str, ch: int) -> dict | None:
    rows = run.rows(arm, "probe", bn_stats.batch_key(conv, ch, "x0"))
    if not rows:
        return None
    row = rows[-1]
    values, i = [], 0
    while bn_stats.batch_key(conv, ch, f"x{i}") in row:
        values.append(num(row[bn_stats.batch_key(conv, ch, f"x{i}")]))
        i += 1
    params = {p: num(row[bn_stats.batch_key(conv, ch, p)]) for p in bn_stats.BATCH_PARAMS
              if bn_stats.batch_key(conv, ch, p) in row}
    return {"step": row["step"], "x": values, **params}


def view(run: Run) -> dict:
    keys = keys_matching(run, "probe", bn_stats.parse_batch_key)
    out: dict = {}
    for conv, ch in sorted({(layer, ch) for layer, ch, _ in keys.values()}):
        for arm in run.arms:
            batch = latest_batch(run, arm, conv, ch)
            if batch is not None:
                out.setdefault(f"{conv}/c{ch}", {})[arm] = batch
    return out
