"""Where a run starts: a completed run left as is, a checkpoint (``checkpoints/last.pt``) continued
exactly, or a fresh start (bnlab/checkpoint.py holds the file format, bnlab/preemption.py the stop
signals, bnlab/lock.py the run-dir lock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from bnlab import checkpoint
from bnlab.errors import BnlabError
from bnlab.records import store as results


@dataclass
class Start:
    """Where the loop starts: step, earlier resumes, wall time already spent, and the checkpoint (or None)."""

    state: dict | None = None
    step: int = 0
    resumes: list = field(default_factory=list)
    wall_before: float = 0.0


def completed_summary(out_dir: Path, cfg: DictConfig, resolved: dict) -> dict | None:
    """The summary of a completed run of this very config in ``out_dir`` (resume=auto), else None.

    A completed run of a different config there is bad input: it would be overwritten.
    """
    path = Path(out_dir) / "summary.json"
    if cfg.train.resume != "auto" or not path.is_file():
        return None
    import yaml

    try:
        summary = results.read_summary(out_dir)
        old = yaml.safe_load((Path(out_dir) / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None  # unreadable leftovers: start over
    changes = checkpoint.config_changes(old, resolved)
    if changes:
        raise BnlabError(
            f"{out_dir} holds a completed run of a different config ({'; '.join(changes[:3])}); "
            f"choose another hydra.run.dir, or pass train.resume=never to replace it"
        )
    return summary if summary.get("status") == "completed" else None


def load(out_dir: Path, cfg: DictConfig, resolved: dict) -> Start:
    """The checkpoint to continue from (resume=auto), checked against this config; else a fresh start."""
    if cfg.train.resume != "auto":
        return Start()
    state = checkpoint.load(out_dir)
    if state is None:
        return Start()
    checkpoint.check_config(out_dir, state, resolved)
    step = int(state["step"])
    return Start(state, step, list(state["resumes"]) + [step], float(state["wall_time_s"]))


def restore(start: Start, arms, batches, device) -> None:
    """Continue exactly where the checkpoint left off: arms, data stream and every generator."""
    for arm in arms:
        arm.load_state_dict(start.state["arms"][arm.name], device)
    batches.load_state_dict(start.state["batches"])
    checkpoint.set_rng_state(start.state["rng"], device)


def hydra_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
