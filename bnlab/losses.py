"""The training loss a dataset names (``data.loss``), used by the training step, every probe and evaluation.

- ``cross_entropy`` (the default; every image dataset): softmax cross-entropy on class labels; the
  records also hold accuracies.
- ``squared_error`` (``data=gaussian``): the squared L2 error of the output vector, summed over output
  dimensions and averaged over the batch, i.e. Santurkar et al.'s ||W x - A x||^2 per sample. A
  regression has no accuracy: its records hold losses only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bnlab.errors import BnlabError


def squared_error(out: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """||out - target||^2 per sample, averaged over the batch (``reduction="sum"``: summed)."""
    per_sample = (out - target).pow(2).flatten(1).sum(1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


LOSSES = {"cross_entropy": F.cross_entropy, "squared_error": squared_error}


def name(data_cfg) -> str:
    """The loss the data config names (``data.loss``; cross_entropy when absent)."""
    loss = data_cfg.get("loss", "cross_entropy")
    if loss not in LOSSES:
        raise BnlabError(f"data.loss={loss} is not a known loss; choose from {', '.join(LOSSES)}")
    return loss


def of(data_cfg):
    """The loss function ``(outputs, targets, reduction="mean") -> tensor`` the data config names."""
    return LOSSES[name(data_cfg)]


def correct(loss: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """How many outputs predict their class (a float tensor), or None for a regression loss."""
    return (out.argmax(1) == target).float().sum() if loss == "cross_entropy" else None
