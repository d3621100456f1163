"""The recurrent claims of Cooijmans et al. 2016 ("Recurrent Batch Normalization") for ``bnlab-claims``.

Registered into ``bnlab.claims.CLAIMS`` on import (``bnlab/claims.py`` imports this module), with
the same ``@claim`` decorator, judge and evidence rules as every other claim. They read the
sequential-CIFAR experiments of ``model=lstm`` (bnlab/lstm.py):

- ``lstm_bn_faster_to_target_loss`` and ``lstm_bn_higher_accuracy`` read ``cooijmans_seq_cifar``
  (bn vs none from identical weights on identical batches, gamma init 0.1);
- ``lstm_gamma_small_trains_better`` reads ``cooijmans_gamma_init`` (the BN-LSTM at gamma init
  0.1 and 1.0, one seed a grid).

Training loss is the loss of one batch of 64 at each step: the claims read it smoothed, the mean
over the last ``SMOOTH_STEPS`` recorded steps, so that one easy batch cannot reach a target.
"""

from __future__ import annotations

import math
import statistics

from bnlab.claims.catalog import acc_diff
from bnlab.claims.registry import DIFFERENCE, LOG_RATIO, Eff, Skip, claim
from bnlab.records.store import Run

SMOOTH_STEPS = 50  # trailing window of per-step training losses (about 0.6 epoch of the 5,085-image subset)
SEQ_COMPARES = ("bn vs none in one run of the sequential-CIFAR LSTM: equal init, data order, lr, batch, "
                "clipping and length")


def smoothed_losses(run: Run, arm: str) -> list[tuple[int, float]]:
    """(step, mean training loss over the last ``SMOOTH_STEPS`` recorded steps), from the first full window.

    A non-finite loss (a diverged arm's last row) makes every later window non-finite.
    """
    rows = run.rows(arm, "train", "loss")
    losses = [float(r["loss"]) if r["loss"] is not None else math.nan for r in rows]
    out = []
    for i in range(SMOOTH_STEPS - 1, len(rows)):
        out.append((rows[i]["step"], statistics.fmean(losses[i - SMOOTH_STEPS + 1 : i + 1])))
    return out


def steps_to_loss(run: Run, arm: str, target: float) -> int | None:
    """The first step whose smoothed training loss is <= ``target``; None: never in this run."""
    return next((s for s, v in smoothed_losses(run, arm) if v <= target), None)


def final_loss(run: Run, arm: str) -> float | None:
    """The smoothed training loss at the end; a diverged arm counts as ``train.divergence_loss`` (its worst)."""
    if run.summary["arms"][arm]["diverged"]:
        return float(run.get("train.divergence_loss", 100.0))
    series = smoothed_losses(run, arm)
    return series[-1][1] if series else None


@claim("lstm_bn_faster_to_target_loss", "BN-LSTM reaches a target training loss in fewer steps than the LSTM",
       "Cooijmans et al. 2016 (Fig. 2, Sec. 5)", ["cooijmans_seq_cifar"], SEQ_COMPARES,
       f"log10(steps of none / steps of bn) until the training loss, mean over the last {SMOOTH_STEPS} steps, "
       f"first falls to lstm_target_loss; an arm that never reaches it counts as the run's length + 1 "
       f"(conservative); the same step is a tie", LOG_RATIO, "lstm_speedup_min_ratio")
def lstm_bn_faster(run, cfg, window=None):
    target, never = cfg["lstm_target_loss"], run.summary["steps"] + 1
    bn, none = steps_to_loss(run, "bn", target), steps_to_loss(run, "none", target)
    if bn == none:
        return Skip(True, f"neither arm reaches loss {target:g}" if bn is None else f"both reach it at step {bn}")
    return Eff(math.log10(max(none or never, 1) / max(bn or never, 1)))


@claim("lstm_bn_higher_accuracy", "BN-LSTM reaches a higher final test accuracy than the LSTM",
       "Cooijmans et al. 2016 (Table 1)", ["cooijmans_seq_cifar"], SEQ_COMPARES,
       "final test acc of bn - none (eval mode: BN with its per-time-step running statistics; a diverged arm "
       "is at chance)", DIFFERENCE, "lstm_accuracy_margin")
def lstm_bn_higher_accuracy(run, cfg, window=None):
    return acc_diff(run, "bn", "none")


@claim("lstm_gamma_small_trains_better", "BN-LSTM with gamma initialized to 1.0 trains worse than with 0.1",
       "Cooijmans et al. 2016 (Sec. 4, Fig. 1)", ["cooijmans_gamma_init"],
       "the bn arm at the smallest and largest model.gamma_init of a seed: equal init otherwise, data order, lr, "
       "batch and length",
       f"log10(final training loss at the largest gamma init / at the smallest), each the mean over the last "
       f"{SMOOTH_STEPS} steps (a diverged run counts as train.divergence_loss)", LOG_RATIO, "lstm_gamma_min_ratio",
       arms=("bn",), grid=("model.gamma_init",))
def lstm_gamma_small(runs, cfg):
    by_gamma = {r.get("model.gamma_init"): r for r in runs}
    if None in by_gamma or len(by_gamma) < 2:
        return Skip(False, f"needs >= 2 values of model.gamma_init, has {sorted(map(str, by_gamma))}")
    big, small = final_loss(by_gamma[max(by_gamma)], "bn"), final_loss(by_gamma[min(by_gamma)], "bn")
    if big is None or small is None or not (big > 0 and small > 0) or not math.isfinite(big + small):
        return Skip(False, f"fewer than {SMOOTH_STEPS} finite training losses at a gamma init")
    return Skip(True, f"equal final loss {big:g}") if big == small else Eff(math.log10(big / small))
