"""What the explorer page shows of one run, read from its records: plain JSON-ready dicts.

Each view module (``curves``, ``activations``, ``bnstats``, ``playground``) turns a ``Run`` into the
part of the page data it draws; ``run_data`` gathers them. Numbers are rounded to 6 significant
digits (the page stays small) and non-finite ones become null (a diverged arm's gap in a curve).
"""

from __future__ import annotations

import math
import re

from bnlab.records.store import Run

# act/<conv>/c<ch>/p<q> and nl_in/<conv>/c<ch>/p<q>: metrics/activations.py's percentile keys
PERCENTILE = re.compile(r"^(act|nl_in)/(.+)/c(\d+)/p([\d.]+)$")


def num(v):
    """A record value for the page: 6 significant digits; null for null, NaN and Inf."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v if isinstance(v, int) else float(f"{v:.6g}")


def step_series(run: Run, arm: str, split: str, key: str) -> dict:
    """{"x": steps, "y": values} of one record key of one arm."""
    steps, values = run.series(arm, split, key)
    return {"x": steps, "y": [num(v) for v in values]}


def keys_matching(run: Run, split: str, parse) -> dict:
    """{key: parse(key)} for every key of ``split`` rows that ``parse`` recognizes (not None)."""
    out = {}
    for row in run.metrics:
        if row["split"] == split:
            for k in row:
                if k not in out:
                    out[k] = parse(k)
    return {k: v for k, v in out.items() if v is not None}


def percentile_key(key: str) -> tuple[str, str, int, str] | None:
    """("pre"|"nl", conv layer, channel, q) of an Ioffe percentile key; None otherwise."""
    m = PERCENTILE.match(key)
    return ({"act": "pre", "nl_in": "nl"}[m[1]], m[2], int(m[3]), m[4]) if m else None


def run_data(run: Run, name: str) -> dict:
    """Everything the page shows of one run."""
    from bnlab.explore import activations, bnstats, curves, playground

    return {"name": name, "arms": run.arms, "panels": curves.panels(run), "dist": activations.view(run),
            "bnstats": bnstats.view(run), "batch": playground.view(run)}
