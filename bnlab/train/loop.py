"""The paired training loop: every arm trains on the very same batches.

``run`` reads as setup -> loop -> finish. Setup: config checks, the run-dir
lock, resume (bnlab/train/resume.py), data, arms (one model + optimizer per
norm kind, identical initial weights: bnlab/train/arm.py). The loop: each step
draws ONE batch and hands it to every arm (on a CPU all arms at once, one
thread each: bnlab/arm_threads.py; the step itself: bnlab/train/step.py).
Per-step numbers stay on the device and are synchronized with the host only at
the logging cadence (``train.log_every``), when they go to the run records,
W&B and the progress bar (bnlab/train/rows.py).

An arm whose loss turns NaN/Inf or exceeds ``train.divergence_loss`` is marked
diverged at that step and stops; the others go on. Divergence is a result.

Every ``train.checkpoint_every`` steps the whole state goes to
``checkpoints/last.pt`` (bnlab/checkpoint.py); re-running the same command on
the same run dir resumes from it. SIGTERM/SIGINT stop the loop at the end of the
step, write a checkpoint and exit with code 3 (bnlab/preemption.py). One process
at a time writes a run dir (bnlab/lock.py); a second one is refused.

``Hooks`` let a caller watch the loop without changing what it trains: the
bench (bnlab/bench/) reads its clock there.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bnlab import arm_threads, checkpoint, config, data, lock, preemption
from bnlab.metrics import convergence
from bnlab.records import console
from bnlab.records import store as results
from bnlab.records import wandb_log as tracking
from bnlab.train import probes, resume, rows
from bnlab.train.arm import Arm, arm_names, build_arm
from bnlab.train.step import step_arm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """Ways for a caller to watch the loop (the bench's clock); none changes what is trained."""

    before_step: Callable[[int], None] | None = None  # called with the step number before its batch is drawn
    before_eval: Callable[[int], None] | None = None  # called with the step number when a test evaluation is due
    evaluate: bool = True  # False: no test-set evaluation at all (no test rows); for timing runs only
    step: Callable | None = None  # the step function (``train_step``'s signature); None: bnlab.train.train_step


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def total_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    return int(cfg.train.epochs) * steps_per_epoch if cfg.train.epochs else int(cfg.train.steps)


def run(cfg: DictConfig, out_dir: str | Path | None = None, hooks: Hooks | None = None) -> dict:
    """Train every arm in ``cfg.arms`` side by side; write the run record; return the summary."""
    # -- everything that can fail on bad input happens before the first write --
    config.validate(cfg)
    out_dir = Path(out_dir) if out_dir is not None else resume.hydra_output_dir()
    # the lock before the first read that leads to a write; released however the run ends
    with lock.RunLock(out_dir) as held:
        return _run(cfg, out_dir, held, hooks or Hooks())


def _run(cfg: DictConfig, out_dir: Path, held: lock.RunLock, hooks: Hooks) -> dict:
    """``run`` with the run dir locked: resume or start over, train, write the records."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    finished = resume.completed_summary(out_dir, cfg, resolved)
    if finished is not None:
        log.info("%s already holds this run, completed (summary.json); nothing to do "
                 "(train.resume=never starts it over)", out_dir)
        console.print_summary(finished, out_dir)
        return finished
    session = Session.setup(cfg, out_dir, resolved, hooks)
    held.start_writing()
    session.open_records()
    exit_code = 1
    try:
        session.train()
        summary = session.finish()
        exit_code = 0
    finally:
        session.tracker.finish(exit_code if session.exit_code is None else session.exit_code)
    console.print_summary(summary, out_dir)
    return summary


def seed_everything(cfg: DictConfig) -> None:
    """Seeds and the determinism switches, before any tensor reaches the device."""
    torch.manual_seed(cfg.seed)  # anything outside our own generators
    # cuDNN's autotuner picks kernels by timing them, so two runs may compute differently: off when
    # deterministic (PyTorch's reproducibility notes), and recorded in summary.json either way.
    torch.backends.cudnn.benchmark = False if cfg.train.deterministic else torch.backends.cudnn.benchmark
    if cfg.train.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, read when its first handle is created:
        # set it here, before the data or a model reaches a GPU (else every matmul warns). A value the
        # user set is kept. No effect on a CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic kernels, without also writing NaN into every new tensor: that fill guards
        # against kernels reading uninitialized memory, costs a memory pass per allocation
        # (~8% of a narrow ResNet-20 step on a CPU), and PyTorch documents that a valid program
        # stays deterministic without it (docs: torch.utils.deterministic).
        torch.utils.deterministic.fill_uninitialized_memory = False


class Session:
    """One run of the loop: what ``setup`` built, the records it writes, and the loop's own steps."""

    def __init__(self, cfg, out_dir, resolved, hooks, device, start, ds, trained_on, batches, arms):
        self.cfg, self.out_dir, self.resolved, self.hooks, self.device = cfg, out_dir, resolved, hooks, device
        self.start, self.ds, self.trained_on, self.batches, self.arms = start, ds, trained_on, batches, arms
        self.steps = total_steps(cfg, batches.steps_per_epoch)
        self.pair = config.pair_id(cfg)
        self.blocks = probes.probe_blocks(cfg)  # what arm threads read of the config
        self.record = self.tracker = None
        self.threads, self.started, self.exit_code = {}, time.time(), None

    @classmethod
    def setup(cls, cfg: DictConfig, out_dir: Path, resolved: dict, hooks: Hooks) -> Session:
        """Resume point, data and arms; nothing written yet."""
        device = pick_device(cfg.device)
        start = resume.load(out_dir, cfg, resolved)
        seed_everything(cfg)
        ds = data.load(cfg.data, device)
        trained_on = data.fingerprint(ds)
        if start.state is not None:
            checkpoint.check_data(out_dir, start.state, trained_on)
        aug = cfg.data.augment if cfg.data.augment.enabled else None
        batches = data.Batches(ds, int(cfg.data.batch_size), seed=cfg.seed, augment=aug,
                               channels_last=bool(cfg.train.channels_last))
        steps = total_steps(cfg, batches.steps_per_epoch)
        arms = [build_arm(name, cfg, ds.num_classes, device, steps) for name in arm_names(cfg)]
        if start.state is not None:
            resume.restore(start, arms, batches, device)
        return cls(cfg, out_dir, resolved, hooks, device, start, ds, trained_on, batches, arms)

    def open_records(self) -> None:
        """The run record (truncated to the checkpoint, or started over) and the W&B runs."""
        cfg, state = self.cfg, self.start.state
        self.record = results.RunRecord(self.out_dir)
        if state is not None:
            self.record.truncate(int(state["metrics_bytes"]))  # drop rows written after the checkpoint
        else:  # resume=never: an old checkpoint, weights, analysis or figures must not come back
            removed = self.record.start_over()
            if removed:
                log.info("starting over in %s: removed the earlier run's %s", self.out_dir, ", ".join(removed))
        self.record.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        self.tracker = tracking.make(cfg.logger, self.out_dir, self.pair, self.resolved, [a.name for a in self.arms],
                                     resume_ids=state["wandb_ids"] if state is not None else None)
        log.info(
            "pair %s: arms %s, %s on %s (%d train images), %d steps of batch %d, lr %g, device %s%s",
            self.pair, ",".join(a.name for a in self.arms), cfg.model.arch, self.ds.name, self.ds.train_size,
            self.steps, cfg.data.batch_size, cfg.optim.lr, self.device,
            f", resumed at step {self.start.step}" if self.start.step else "",
        )

    def train(self) -> None:
        """The loop, inside the stop signals, the progress bar and the arm threads."""
        cfg, arms = self.cfg, self.arms
        self.started = time.time()
        flops = functools.partial(arm_threads.forward_flops, arms[0].model, self.ds.train_x.shape[1:])
        n_threads = arm_threads.workers(cfg.train.concurrent_arms, self.device, len(arms), bool(cfg.train.compile),
                                        flops)
        with preemption.StopSignals() as stop, \
                console.LiveProgress(self.steps, [a.name for a in arms], cfg.train.progress) as bar, \
                arm_threads.ArmPool(n_threads) as pool:
            self.threads = {"arm_threads": pool.n, "intra_op_threads_per_arm": pool.threads_per_arm if pool.n
                            else torch.get_num_threads()}
            log.info("arms %s (%s)", "step at once" if pool.n else "step one after the other",
                     ", ".join(f"{k} {v}" for k, v in self.threads.items()))
            if self.start.step == 0:
                self.evaluate_all(0)
            self.loop(stop, bar, pool)

    def loop(self, stop, bar, pool) -> None:
        cfg, arms, hooks = self.cfg, self.arms, self.hooks
        step_fn = hooks.step or _package_train_step()
        every, lrs = cfg.train.checkpoint_every, {}
        for step in range(self.start.step, self.steps):
            if hooks.before_step is not None:
                hooks.before_step(step)
            x, y = next(self.batches)  # one batch, consumed by every arm
            lrs[step] = arms[0].sched.get_last_lr()[0]
            due = probes.probes_due(self.blocks, step)
            # on a CPU the arms step at once (train.concurrent_arms), the slowest one first
            pool.map(functools.partial(step_arm, x=x, y=y, due=due, step=step, blocks=self.blocks, step_fn=step_fn),
                     sorted((a for a in arms if a.active), key=_slowest_first))
            done = step + 1
            eval_due = done % int(cfg.train.eval_every) == 0 or done == self.steps
            ckpt_due = (bool(every) and done % int(every) == 0 and done < self.steps) or stop.requested is not None
            # an evaluation and a checkpoint sync anyway, and W&B needs steps in order: flush first
            if eval_due or ckpt_due or done % int(cfg.train.log_every) == 0:
                self.log_all(done, bar, lrs)
                lrs.clear()
                if not any(a.active for a in arms):
                    log.warning("every arm diverged; stopping at step %d", done)
                    break
            if eval_due:
                self.evaluate_all(done)
            if ckpt_due:
                path = self.save_state(done)
                if stop.requested is not None:
                    self.exit_code = preemption.INTERRUPTED_EXIT  # W&B runs finish with it (finally)
                    stop.hand_over()  # submitit: requeue and exit; otherwise we raise below
                    raise preemption.Interrupted(stop.requested, done, path)

    def evaluate_all(self, step: int) -> None:
        """Test loss and accuracy of every active arm, to the records and W&B."""
        if self.hooks.before_eval is not None:
            self.hooks.before_eval(step)
        if not self.hooks.evaluate:
            return
        test_rows = [self.evaluate_arm(arm, step) for arm in self.arms if arm.active]
        self.record.append(test_rows)
        for r in test_rows:
            logged = {f"test/{k}": v for k, v in r.items() if k not in ("step", "arm", "split")}
            self.tracker.log(r["arm"], step, logged)

    def evaluate_arm(self, arm: Arm, step: int) -> dict:
        tally = arm.tally
        tally.last_test = probes.evaluate(arm.model, self.batches, loss=arm.loss)
        acc = tally.last_test.get("acc")  # None: a regression
        if acc is not None:
            tally.best_test_acc = max(acc, tally.best_test_acc or 0.0)
        if tally.steps_to_target is None and acc is not None and convergence.reached(acc, self.cfg.train.target_acc):
            tally.steps_to_target = step
        row = {"step": step, "arm": arm.name, "split": "test", **tally.last_test}
        if self.cfg.train.eval_batch_stats and probes.uses_batch_stats(arm.model):
            bs = probes.evaluate(arm.model, self.batches, batch_stats=True, loss=arm.loss)
            row.update({f"{k}_batch_stats": v for k, v in bs.items()})
        return row

    def log_all(self, step: int, bar, lrs: dict) -> None:
        """Every arm's pending rows to the records, W&B and the progress bar."""
        divergence_loss = float(self.cfg.train.divergence_loss)
        flushed = [(arm, rows.flush(arm, lrs, divergence_loss)) for arm in self.arms]
        # step after step, every arm within a step: the same lines wherever the flushes fall
        # (a stop signal flushes off the log_every cadence, and a resumed run must match)
        self.record.append(sorted((r for _, rs in flushed for r in rs), key=lambda r: r["step"]))
        for arm, rs in flushed:
            histograms = rows.take_histograms(arm, rs[-1]["step"] if rs else -1)
            for step_, logged in rows.tracker_rows(rs, histograms).items():
                self.tracker.log(arm.name, step_, logged)
        bar.update(step, {
            a.name: {"loss": a.tally.last_train.get("loss") or float("nan"),
                     "acc": a.tally.last_train.get("acc") or 0.0, "diverged": a.tally.diverged_step}
            for a in self.arms if a.tally.last_train
        })

    def save_state(self, step: int) -> Path:
        """The checkpoint at a step boundary: records flushed, nothing pending."""
        return checkpoint.save(self.out_dir, {
            "step": step, "config": self.resolved, "arms": {a.name: a.state_dict() for a in self.arms},
            "batches": self.batches.state_dict(), "rng": checkpoint.rng_state(self.device), "data": self.trained_on,
            "metrics_bytes": self.record.size(), "resumes": self.start.resumes,
            "wandb_ids": {arm: d["id"] for arm, d in self.tracker.describe().items()},
            "wall_time_s": self.start.wall_before + time.time() - self.started,
        })

    def finish(self) -> dict:
        """Final weights, the summary, and the resumable checkpoint removed (the run is complete)."""
        cfg, out_dir = self.cfg, self.out_dir
        if cfg.train.save_checkpoint:
            rows.save_final_weights(out_dir, self.arms)
        summary = rows.make_summary(cfg, self.pair, self.ds, self.batches, self.steps, self.arms, self.started,
                                    self.tracker)
        summary["data"]["sha256"] = self.trained_on["sha256"]  # what it trained on, wherever the files were
        summary["threads"] = self.threads  # an arm's float rounding depends on its intra-op thread count
        summary["cudnn_benchmark"] = torch.backends.cudnn.benchmark  # kernels chosen by timing (CUDA only)
        summary["wall_time_s"] = round(self.start.wall_before + summary["wall_time_s"], 3)
        summary["resumed_at_steps"] = self.start.resumes
        self.record.write_summary(summary)
        checkpoint.path(out_dir).unlink(missing_ok=True)  # the run is complete; the final weights stay
        tracking.publish(self.tracker, cfg.logger, out_dir, summary)
        return summary


def _slowest_first(arm: Arm) -> float:
    return -arm.tally.mean_step_s()


def _package_train_step():
    """``bnlab.train.train_step`` looked up at run time, so a caller that wraps that name (the tests'
    spies) is the step that runs."""
    import bnlab.train

    return bnlab.train.train_step
