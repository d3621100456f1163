"""An arm's tally as record rows: the host sync of its pending metrics, the divergence stop, W&B rows,
the summary and the final weights."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from bnlab import checkpoint
from bnlab.metrics import convergence, gammas
from bnlab.train.arm import Arm

log = logging.getLogger(__name__)


def sync(arm: Arm, lrs: dict) -> list[dict]:
    """An arm's pending step metrics as train rows (one host transfer); its buffer emptied."""
    tally = arm.tally
    keys = [list(m) for _, m in tally.pending]
    values = torch.stack([v for _, m in tally.pending for v in m.values()]).float().tolist() if keys else []
    rows, i = [], 0
    for (step, _), ks in zip(tally.pending, keys):
        row = {"step": step, "arm": arm.name, "split": "train", "lr": lrs[step]}
        row.update(zip(ks, values[i : i + len(ks)]))
        i += len(ks)
        rows.append(row)
    tally.pending.clear()
    return rows


def stop_if_diverged(arm: Arm, rows: list[dict], threshold: float) -> list[dict]:
    """Mark the arm diverged at its first divergent train row (``train.divergence_loss``) and drop the rows
    after it; returns the rows kept."""
    bad = convergence.first_divergent(rows, threshold)
    if bad is None:
        return rows
    arm.tally.diverged_step = bad["step"]
    log.warning("arm %s diverged at step %d (loss %s); it stops here", arm.name, bad["step"], bad["loss"])
    return [r for r in rows if r["step"] <= bad["step"]]


def flush(arm: Arm, lrs: dict, divergence_loss: float) -> list[dict]:
    """Sync an arm's pending step metrics into record rows, stop it if it diverged, and add its probe rows
    up to its last train row; sorted by step."""
    if not arm.tally.pending:
        return []
    rows = stop_if_diverged(arm, sync(arm, lrs), divergence_loss)
    tally = arm.tally
    tally.last_train = rows[-1]
    last = rows[-1]["step"]
    probe_rows = [{"step": st, "arm": arm.name, "split": "probe", **v} for st, v in tally.probes if st <= last]
    tally.probes.clear()
    return sorted(rows + probe_rows, key=lambda r: r["step"])


def take_histograms(arm: Arm, last: int) -> list:
    """The arm's queued histograms up to step ``last``, removed from its tally."""
    tally = arm.tally
    taken = [h for h in tally.histograms if h[0] <= last]
    tally.histograms = [h for h in tally.histograms if h[0] > last]
    return taken


def tracker_rows(rows: list[dict], histograms: list = ()) -> dict[int, dict]:
    """Record rows (and histograms) as one W&B dict per step: ``<split>/<metric>`` and ``hist/<key>`` keys."""
    out: dict[int, dict] = {}
    for r in rows:
        out.setdefault(r["step"], {}).update(
            {f"{r['split']}/{k}": v for k, v in r.items() if k not in ("step", "arm", "split")})
    for step, samples in histograms:
        out.setdefault(step, {}).update({f"hist/{k}": v for k, v in samples.items()})
    return dict(sorted(out.items()))


def save_final_weights(out_dir: Path, arms: list[Arm]) -> None:
    """Final weights of every arm, loadable with torch.load(weights_only=True)."""
    for arm in arms:
        state = {"model": arm.model.state_dict(), "step": arm.tally.steps_trained,
                 "diverged_step": arm.tally.diverged_step}
        checkpoint.atomic_save(Path(out_dir) / "checkpoints" / f"{arm.name}.pt", state)


def _item(t):
    return None if t is None else t.item()


def arm_summary(a: Arm) -> dict:
    t = a.tally
    return {
        "norm": a.norm,
        "trainable_params": a.trainable_params,
        "final_gamma_frac_below_0.01": _item(gammas.small_gamma_fraction(a.model)),
        "final_test_acc": t.last_test.get("acc"),
        "final_test_loss": t.last_test.get("loss"),
        "best_test_acc": t.best_test_acc,
        "final_train_loss": t.last_train.get("loss"),
        "final_train_acc": t.last_train.get("acc"),
        "steps_to_target": t.steps_to_target,
        "diverged": t.diverged_step is not None,
        "diverged_step": t.diverged_step,
        "steps_trained": t.steps_trained,
        "train_time_s": round(t.train_time_s, 3),
        "probe_time_s": round(t.probe_time_s, 3),
    }


def make_summary(cfg, pair, ds, batches, steps, arms, started, tracker) -> dict:
    return {
        "pair_id": pair,
        "status": "completed",
        "model": cfg.model.arch,
        "width": cfg.model.width,
        "init": cfg.init.scheme,
        "optimizer": cfg.optim.name,
        "lr": cfg.optim.lr,
        "batch_size": cfg.data.batch_size,
        "seed": cfg.seed,
        "steps": steps,
        "steps_per_epoch": batches.steps_per_epoch,
        "target_acc": cfg.train.target_acc,
        "data": ds.describe(),
        "arms": {a.name: arm_summary(a) for a in arms},
        "wall_time_s": round(time.time() - started, 3),
        "wandb": tracker.describe(),
    }
