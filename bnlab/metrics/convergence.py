"""Convergence: divergence detection and steps to a target accuracy.

- Divergence: an arm has diverged at the first step whose training loss is
  NaN/Inf or exceeds ``threshold`` (the loss of a classifier that has blown
  up, far above the ln(C) of a uniform guess). Bjorck et al. 2018 call a step
  divergent when the loss grows by orders of magnitude; here the arm then
  stops and the divergence step is recorded as a result.
- Steps to target: the first evaluation step at which test accuracy reaches
  the target (resolution = the evaluation cadence), the usual "time to
  accuracy" measure of training speed.
"""

from __future__ import annotations

import math


def first_divergent(rows: list[dict], threshold: float) -> dict | None:
    """The first row (in step order) whose ``loss`` is non-finite or above threshold."""
    for row in rows:
        loss = row["loss"]
        if loss is None or not math.isfinite(loss) or loss > threshold:
            return row
    return None


def reached(acc: float, target: float | None) -> bool:
    return target is not None and acc >= target
