"""Optimizer and learning-rate schedule factories (``optim`` config group)."""

from __future__ import annotations

import math

import torch

from bnlab.errors import BnlabError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")


def make(params, cfg, total_steps: int):
    """Return (optimizer, scheduler); the scheduler steps once per training step."""
    if cfg.name == "sgd":
        opt = torch.optim.SGD(
            params,
            lr=float(cfg.lr),
            momentum=float(cfg.momentum),
            nesterov=bool(cfg.get("nesterov", False)),
            weight_decay=float(cfg.weight_decay),
        )
    elif cfg.name == "adam":
        opt = torch.optim.Adam(
            params, lr=float(cfg.lr), betas=tuple(cfg.betas), weight_decay=float(cfg.weight_decay)
        )
    else:
        raise BnlabError(f"optim={cfg.name} is not a known optimizer; choose from {', '.join(OPTIMIZERS)}")
    if cfg.schedule == "constant":
        factor = lambda step: 1.0  # noqa: E731
    elif cfg.schedule == "cosine":
        factor = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))  # noqa: E731
    else:
        raise BnlabError(
            f"optim.schedule={cfg.schedule} is not known; choose from {', '.join(SCHEDULES)}"
        )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
