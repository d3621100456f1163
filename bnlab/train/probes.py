"""When measurements run, and how the step hands them its state: all through the registry
(bnlab/metrics/registry.py), never by name. Also the test-set evaluation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from bnlab import data, losses, lstm, norms
from bnlab.metrics import registry
from bnlab.metrics._state import preserved

# layers with batch statistics in train mode: BN's, and the BN-LSTM's per-time-step BN (bnlab/lstm.py)
BATCH_STAT_TYPES = (*norms.BATCH_STAT_TYPES, lstm.SequenceBatchNorm)


def probe_blocks(cfg: DictConfig | Mapping) -> dict[str, dict]:
    """Each registered measurement's config block (``metrics.<name>``) as plain values.

    Arm threads read these instead of the config (OmegaConf is not documented thread-safe).
    An already plain mapping is returned as is.
    """
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    return {name: OmegaConf.to_container(cfg.metrics[name], resolve=True)
            for name in registry.MEASUREMENTS if name in cfg.metrics}


def probes_due(blocks: DictConfig | Mapping, step: int) -> set[str]:
    """Which measurements run at this step (``metrics.<name>.every``; null = off), plus the extra probes
    they ask for (``Measurement.extra_due``: e.g. W&B histograms, Bjorck's scales at step 0)."""
    blocks = probe_blocks(blocks)
    due = set()
    for name, m in registry.MEASUREMENTS.items():
        if name not in blocks:
            continue
        every = registry.every(blocks[name])
        mine = bool(every) and step % every == 0
        if mine:
            due.add(name)
        if m.extra_due is not None:
            due |= m.extra_due(blocks[name], step, mine)
    return due


def due_measurements(due: set[str], blocks: Mapping, split: str) -> list[registry.Measurement]:
    """The measurements with a hook that are due at this step and write to ``split``, in registry order."""
    return [m for name, m in registry.MEASUREMENTS.items()
            if name in due and name in blocks and m.split == split and m.at_w is not None]


def at_w(context: registry.Probe, due: set[str], blocks: Mapping, split: str) -> tuple[dict, list]:
    """Run the due ``at_w`` hooks of ``split``: (their record keys, [(measurement, probe, state)] whose
    ``after_step`` is to run once the optimizer has stepped)."""
    out, later = {}, []
    for m in due_measurements(due, blocks, split):
        p = dataclasses.replace(context, block=blocks[m.name])
        res = m.at_w(p)
        if m.after_step is None:
            out.update(res)
        elif res is not None:
            later.append((m, p, res))
    return out, later


def after_step(later: list) -> dict:
    out = {}
    for m, p, state in later:
        out.update(m.after_step(p, state))
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: data.Batches, batch_stats: bool = False,
             loss: str = "cross_entropy") -> dict:
    """Test loss and accuracy (none for a regression ``loss``) in eval mode (running BN statistics).

    ``batch_stats=True``: the same, but every batch-statistics norm layer
    normalizes with the statistics of its test batch, taken in chunks of the
    training batch size (the train-mode view; running statistics untouched).
    """
    with preserved(model):
        model.eval()
        chunk = 500
        if batch_stats:
            chunk = batches.batch_size
            for m in model.modules():
                if isinstance(m, BATCH_STAT_TYPES):
                    m.train()
        # Sums stay on the device (float64, the same additions as summing host floats): one host sync
        # per evaluation, not two per test batch.
        loss_sum, correct, n = None, None, 0
        for x, y in batches.test_batches(chunk):
            logits = model(x)
            batch_loss = losses.LOSSES[loss](logits, y, reduction="sum").double()
            loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
            hits = losses.correct(loss, logits, y)
            if hits is not None:
                correct = hits if correct is None else correct + hits
            n += len(y)
    return {"loss": loss_sum.item() / n, **({} if correct is None else {"acc": int(correct.item()) / n})}


def uses_batch_stats(model: torch.nn.Module) -> bool:
    return any(isinstance(m, BATCH_STAT_TYPES) for m in model.modules())
