"""The paired training loop: every arm trains on the very same batches.

Read top to bottom: config checks, data, arms (one model + optimizer per norm
kind, identical initial weights), then the loop. Each step draws ONE batch and
hands it to every arm in turn. Per-step numbers stay on the device and are
synchronized with the host only at the logging cadence (``train.log_every``),
when they go to the run records, W&B and the progress bar.

An arm whose loss turns NaN/Inf or exceeds ``train.divergence_loss`` is marked
diverged at that step and stops; the others go on. Divergence is a result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from bnlab import config, console, data, init, models, optim, results, tracking
from bnlab.metrics import convergence, gradnorms

log = logging.getLogger(__name__)


@dataclass
class Arm:
    """Everything one arm of the pair owns."""

    name: str
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    pending: list = field(default_factory=list)  # (step, {key: device tensor}) not yet synced
    diverged_step: int | None = None
    steps_trained: int = 0
    train_time_s: float = 0.0
    last_train: dict = field(default_factory=dict)
    last_test: dict = field(default_factory=dict)
    best_test_acc: float | None = None
    steps_to_target: int | None = None

    @property
    def active(self) -> bool:
        return self.diverged_step is None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def total_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    return int(cfg.train.epochs) * steps_per_epoch if cfg.train.epochs else int(cfg.train.steps)


def build_arm(name: str, cfg: DictConfig, num_classes: int, device, steps: int) -> Arm:
    model = models.build(cfg.model, name, cfg.norm, num_classes)
    init.initialize(model, cfg.init, seed=cfg.seed)  # same seed -> same weights in every arm
    model.to(device)
    opt, sched = optim.make(model.parameters(), cfg.optim, steps)
    return Arm(name, model, opt, sched)


def train_step(arm: Arm, x, y, layer_norms: bool) -> dict:
    """One SGD step of one arm; returns device tensors (no host sync)."""
    arm.model.train()
    logits = arm.model(x)
    loss = F.cross_entropy(logits, y)
    arm.opt.zero_grad(set_to_none=True)
    loss.backward()
    out = {
        "loss": loss.detach(),
        "acc": (logits.detach().argmax(1) == y).float().mean(),
        "grad_norm": gradnorms.global_grad_norm(arm.model),
    }
    if layer_norms:
        out.update(gradnorms.layer_norms(arm.model))
    arm.opt.step()
    arm.sched.step()
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: data.Batches) -> dict:
    """Test loss and accuracy in eval mode (running BN statistics)."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in batches.test_batches():
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"loss": loss_sum / n, "acc": correct / n}


def flush(arm: Arm, cfg: DictConfig, lrs: dict) -> list[dict]:
    """Sync an arm's pending step metrics (one host transfer) into record rows.

    Also the divergence check: rows after the first divergent step are dropped
    and the arm is stopped there.
    """
    if not arm.pending:
        return []
    keys = [list(m) for _, m in arm.pending]
    values = torch.stack([v for _, m in arm.pending for v in m.values()]).float().tolist()
    rows, i = [], 0
    for (step, _), ks in zip(arm.pending, keys):
        row = {"step": step, "arm": arm.name, "split": "train", "lr": lrs[step]}
        row.update(zip(ks, values[i : i + len(ks)]))
        i += len(ks)
        rows.append(row)
    arm.pending.clear()
    bad = convergence.first_divergent(rows, float(cfg.train.divergence_loss))
    if bad is not None:
        arm.diverged_step = bad["step"]
        rows = [r for r in rows if r["step"] <= bad["step"]]
        log.warning("arm %s diverged at step %d (loss %s); it stops here", arm.name, bad["step"], bad["loss"])
    arm.last_train = rows[-1]
    return rows


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict:
    """Train every arm in ``cfg.arms`` side by side; write the run record; return the summary."""
    # -- everything that can fail on bad input happens before the first write --
    config.validate(cfg)
    out_dir = Path(out_dir) if out_dir is not None else hydra_output_dir()
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)  # anything outside our own generators
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    ds = data.load(cfg.data, device)
    aug = cfg.data.augment if cfg.data.augment.enabled else None
    batches = data.Batches(ds, int(cfg.data.batch_size), seed=cfg.seed, augment=aug)
    steps = total_steps(cfg, batches.steps_per_epoch)
    arms = [build_arm(name, cfg, ds.num_classes, device, steps) for name in cfg.arms]
    pair = config.pair_id(cfg)

    # -- the record and the W&B runs --
    record = results.RunRecord(out_dir)
    record.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tracker = tracking.make(cfg.logger, out_dir, pair, resolved, list(cfg.arms))
    log.info(
        "pair %s: arms %s, %s on %s (%d train images), %d steps of batch %d, lr %g, device %s",
        pair, ",".join(cfg.arms), cfg.model.arch, ds.name, ds.train_size, steps,
        cfg.data.batch_size, cfg.optim.lr, device,
    )
    target = cfg.train.target_acc
    layer_every = cfg.metrics.layer_norms.every
    started, exit_code = time.time(), 1
    try:
        with console.LiveProgress(steps, list(cfg.arms), cfg.train.progress) as bar:

            def evaluate_all(step: int) -> None:
                rows = []
                for arm in arms:
                    if not arm.active:
                        continue
                    arm.last_test = evaluate(arm.model, batches)
                    acc = arm.last_test["acc"]
                    arm.best_test_acc = max(acc, arm.best_test_acc or 0.0)
                    if arm.steps_to_target is None and convergence.reached(acc, target):
                        arm.steps_to_target = step
                    rows.append({"step": step, "arm": arm.name, "split": "test", **arm.last_test})
                record.append(rows)
                for r in rows:
                    tracker.log(r["arm"], step, {"test/loss": r["loss"], "test/acc": r["acc"]})

            def log_all(step: int) -> None:
                for arm in arms:
                    rows = flush(arm, cfg, lrs)
                    record.append(rows)
                    for r in rows:
                        metrics = {k: v for k, v in r.items() if k not in ("step", "arm", "split")}
                        tracker.log(arm.name, r["step"], {f"train/{k}": v for k, v in metrics.items()})
                bar.update(step, {
                    a.name: {"loss": a.last_train.get("loss") or float("nan"),
                             "acc": a.last_train.get("acc") or 0.0, "diverged": a.diverged_step}
                    for a in arms if a.last_train
                })

            evaluate_all(0)
            lrs = {}
            for step in range(steps):
                x, y = next(batches)  # one batch, consumed by every arm
                lrs[step] = arms[0].sched.get_last_lr()[0]
                want_layers = bool(layer_every) and step % int(layer_every) == 0
                for arm in arms:
                    if not arm.active:
                        continue
                    t0 = time.perf_counter()
                    arm.pending.append((step, train_step(arm, x, y, want_layers)))
                    arm.train_time_s += time.perf_counter() - t0
                    arm.steps_trained += 1
                done = step + 1
                eval_due = done % int(cfg.train.eval_every) == 0 or done == steps
                # an evaluation syncs anyway, and W&B needs steps in order: flush first
                if eval_due or done % int(cfg.train.log_every) == 0:
                    log_all(done)
                    lrs.clear()
                    if not any(a.active for a in arms):
                        log.warning("every arm diverged; stopping at step %d", done)
                        break
                if eval_due:
                    evaluate_all(done)
        summary = make_summary(cfg, pair, ds, batches, steps, arms, started, tracker)
        record.write_summary(summary)
        exit_code = 0
    finally:
        tracker.finish(exit_code)
    console.print_summary(summary, out_dir)
    return summary


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
        "arms": {
            a.name: {
                "norm": a.name,
                "final_test_acc": a.last_test.get("acc"),
                "final_test_loss": a.last_test.get("loss"),
                "best_test_acc": a.best_test_acc,
                "final_train_loss": a.last_train.get("loss"),
                "final_train_acc": a.last_train.get("acc"),
                "steps_to_target": a.steps_to_target,
                "diverged": a.diverged_step is not None,
                "diverged_step": a.diverged_step,
                "steps_trained": a.steps_trained,
                "train_time_s": round(a.train_time_s, 3),
            }
            for a in arms
        },
        "wall_time_s": round(time.time() - started, 3),
        "wandb": tracker.describe(),
    }


def hydra_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
