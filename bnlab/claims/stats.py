"""Statistics of a claim verdict (docs/science.md sec. 9): per-seed effects, an interval, a margin.

A claim gets one paired effect per seed (a difference, or a log10 ratio for
ratio claims), oriented so that the paper's direction is "larger". Over the n
seeds:

- estimate: the mean effect (for a log10 ratio: the log of the geometric-mean ratio);
- interval: a percentile bootstrap interval of the mean (``scipy.stats.bootstrap``,
  ``confidence`` = 0.95 by default, a fixed resampling seed so a verdict never
  changes between two reads of the same records). An exact distribution-free
  interval (sign test or Wilcoxon) cannot reach 95% with fewer than 6 seeds
  (with n = 5 the widest, [min, max], holds 93.75%), so it cannot be the interval;
- the exact sign test guards the bootstrap, which is known to be narrow at n = 3-5
  (with 5 seeds, four at +1 and one at -0.5 give a bootstrap interval above 0):
  ``sign_test_p`` is the exact one-sided binomial p of "the seeds fall beyond the
  margin in the paper's direction" (seeds exactly at the margin dropped);
- verdict (``judge``, then ``summarize``): SUPPORTED when the whole interval lies
  beyond the margin in the paper's direction AND the sign test in that direction
  has p <= 1 - confidence (with 5 seeds: all five beyond the margin, p = 1/32);
  NOT SUPPORTED when the interval lies wholly on the other side and the sign test
  in that direction agrees; INCONCLUSIVE otherwise, with the reason, and always
  below ``min_seeds``.
"""

from __future__ import annotations

import math
import statistics

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "SUPPORTED", "NOT SUPPORTED", "INCONCLUSIVE"
RESAMPLING_SEED = 0


def interval(effects: list[float], confidence: float = 0.95, resamples: int = 9999) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``effects`` (needs >= 2 values)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(effects, dtype=float)
    if np.ptp(x) == 0:  # every seed gave the same value: the bootstrap distribution is that point
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", rng=np.random.default_rng(RESAMPLING_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sign_test_p(effects: list[float], margin: float, alternative: str = "greater") -> float | None:
    """Exact one-sided sign test: P(this many effects or more beyond ``margin`` | each side has chance 1/2).

    ``alternative``: "greater" (effects above the margin) or "less"; effects equal to the margin are dropped.
    """
    from scipy import stats

    beyond = sum(1 for e in effects if (e > margin if alternative == "greater" else e < margin))
    n = sum(1 for e in effects if e != margin)
    return float(stats.binomtest(beyond, n, 0.5, alternative="greater").pvalue) if n else None


def judge(low: float, high: float, margin: float) -> str:
    """SUPPORTED if [low, high] clears ``margin`` upward, NOT SUPPORTED if it lies below it, else INCONCLUSIVE."""
    if low > margin:
        return SUPPORTED
    if high < margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def summarize(effects: list[float], margin: float, min_seeds: int, confidence: float, resamples: int) -> dict:
    """Estimate, interval and verdict of per-seed ``effects`` against ``margin`` (all on the effect's scale).

    Below ``min_seeds`` effects: INCONCLUSIVE with the reason, an estimate but no interval.
    """
    n = len(effects)
    out = {"n": n, "estimate": statistics.fmean(effects) if effects else None, "interval": None,
           "sign_test_p": None, "verdict": INCONCLUSIVE, "reason": None}
    if n < min_seeds:
        out["reason"] = (f"n = {n} < {min_seeds} seeds (min_seeds): too few independent runs for an interval"
                         if n else "no seed gave evidence")
        return out
    low, high = interval(effects, confidence, resamples)
    verdict = judge(low, high, margin)
    out.update(interval=[low, high], sign_test_p=sign_test_p(effects, margin), verdict=verdict)
    if verdict == INCONCLUSIVE:
        out["reason"] = "the interval contains the margin"
        return out
    side = "greater" if verdict == SUPPORTED else "less"
    p = sign_test_p(effects, margin, side)
    if p > 1 - confidence:  # never None here: the interval cleared the margin, so some seed did
        beyond = sum(1 for e in effects if (e > margin if side == "greater" else e < margin))
        out["verdict"] = INCONCLUSIVE
        out["reason"] = (f"the interval lies {'above' if side == 'greater' else 'below'} the margin, but only "
                         f"{beyond} of {n} seeds do (exact sign test p = {p:.3g} > {1 - confidence:.2g})")
    return out


def binomial_se(acc: float, test_size: int) -> float:
    """Standard error of an accuracy measured on ``test_size`` images: sqrt(p (1 - p) / m)."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / test_size)
