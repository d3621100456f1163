"""Weights & Biases sink: one W&B run per arm, grouped by pair id.

Conventions (DESIGN.md): ``group`` = pair id, ``job_type`` = arm name, the full
resolved config plus ``arm`` as the run config, the training step as x-axis.
Modes (``logger.mode``):

- ``auto`` (default): online when W&B credentials exist (``WANDB_API_KEY`` or a
  netrc entry for the W&B host), else offline with one notice line;
- ``online``, ``offline`` (then ``wandb sync <run_dir>/wandb/offline-run-*``),
  ``disabled``.

The run records on disk are the source of truth; W&B is a mirror of them.
Runs are always finished, also when training raised.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from bnlab.errors import BnlabError

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


class NullTracker:
    """Used for ``logger=none``: every call is a no-op."""

    runs: dict = {}

    def log(self, arm: str, step: int, data: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass

    def describe(self) -> dict:
        return {}


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise BnlabError(f"logger.mode={mode} is not a W&B mode; choose from {', '.join(MODES)}")
    env = os.environ.get("WANDB_MODE")
    if mode == "auto" and env in ("offline", "disabled", "online"):
        return env
    if mode == "auto":
        if has_credentials():
            return "online"
        log.info("W&B: no credentials found, logging offline (sync later with `wandb sync`)")
        return "offline"
    return mode


class WandbTracker:
    """One ``wandb`` run per arm, created up front and finished in ``finish``."""

    def __init__(self, cfg, run_dir: Path, pair_id: str, config: dict, arms: list[str]):
        import wandb

        self.mode = resolve_mode(cfg.mode)
        self.runs = {}
        settings = wandb.Settings(
            console="off",  # the run records and the rich console already hold the output
            silent=True,
            init_timeout=float(cfg.init_timeout),
            x_disable_stats=not cfg.system_stats,
        )
        (Path(run_dir) / "wandb").mkdir(parents=True, exist_ok=True)
        for arm in arms:
            self.runs[arm] = wandb.init(
                project=cfg.project,
                entity=cfg.get("entity"),
                group=pair_id,
                job_type=arm,
                name=f"{pair_id}-{arm}",
                tags=list(cfg.get("tags") or []),
                config={**config, "arm": arm},
                dir=str(run_dir),
                mode=self.mode,
                reinit="create_new",  # one process holds a run per arm at once
                settings=settings,
            )

    def log(self, arm: str, step: int, data: dict) -> None:
        import torch
        import wandb

        # tensors are raw activation samples: W&B histograms (they are not in the run records)
        data = {k: wandb.Histogram(v.float().cpu().numpy()) if isinstance(v, torch.Tensor) else v
                for k, v in data.items()}
        self.runs[arm].log(data, step=step)

    def finish(self, exit_code: int = 0) -> None:
        for run in self.runs.values():
            run.finish(exit_code=exit_code)

    def describe(self) -> dict:
        return {
            arm: {"id": r.id, "mode": self.mode, "dir": str(Path(r.dir).parent)}
            for arm, r in self.runs.items()
        }


def make(cfg, run_dir: Path, pair_id: str, config: dict, arms: list[str]):
    if cfg.name == "none" or cfg.get("mode") == "disabled":
        return NullTracker()
    if cfg.name != "wandb":
        raise BnlabError(f"logger={cfg.name} is not a known logger; use logger=wandb or logger=none")
    return WandbTracker(cfg, run_dir, pair_id, config, arms)
