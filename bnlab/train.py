"""The paired training loop: every arm trains on the very same batches.

Read top to bottom: config checks, data, arms (one model + optimizer per norm
kind, identical initial weights), then the loop. Each step draws ONE batch and
hands it to every arm (on a CPU all arms at once, one thread each:
bnlab/arm_threads.py). Per-step numbers stay on the device and are
synchronized with the host only at the logging cadence (``train.log_every``),
when they go to the run records, W&B and the progress bar.

An arm whose loss turns NaN/Inf or exceeds ``train.divergence_loss`` is marked
diverged at that step and stops; the others go on. Divergence is a result.

Every ``train.checkpoint_every`` steps the whole state goes to
``checkpoints/last.pt`` (bnlab/checkpoint.py); re-running the same command on
the same run dir resumes from it. SIGTERM/SIGINT stop the loop at the end of the
step, write a checkpoint and exit with code 3 (bnlab/preemption.py). One process
at a time writes a run dir (bnlab/lock.py); a second one is refused.

Fast path (``train.precision``, ``train.channels_last``, ``train.compile``)
changes how the training step computes, never what the probes measure: they
run in fp32 on the eager module.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from bnlab import (
    arm_threads,
    checkpoint,
    config,
    console,
    data,
    freeze,
    init,
    lock,
    losses,
    models,
    norms,
    optim,
    preemption,
    results,
    tracking,
)
from bnlab.errors import BnlabError
from bnlab.metrics import activations, convergence, curvature, divergence, gammas, gradnorms, ics, landscape
from bnlab.metrics._state import loss_and_grad, preserved

log = logging.getLogger(__name__)


@dataclass
class Arm:
    """Everything one arm of the pair owns."""

    name: str  # the norm kind, or "<kind>-random" for a random-parameter control
    norm: str
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    pending: list = field(default_factory=list)  # (step, {key: device tensor}) not yet synced
    probes: list = field(default_factory=list)  # (step, {key: float}) probe results not yet written
    ics_layers: list = field(default_factory=list)
    recorder: activations.ActivationRecorder | None = None
    histograms: list = field(default_factory=list)  # (step, {key: values}) for W&B only
    diverged_step: int | None = None
    steps_trained: int = 0
    train_time_s: float = 0.0  # host time in training steps, probes excluded
    probe_time_s: float = 0.0
    last_train: dict = field(default_factory=dict)
    last_test: dict = field(default_factory=dict)
    best_test_acc: float | None = None
    steps_to_target: int | None = None
    trainable_params: int = 0
    forward: object = None  # what the training step calls: the model, or torch.compile(model)
    loss: str = "cross_entropy"  # data.loss (bnlab/losses.py): the step, every probe and evaluation use it
    precision: str = "fp32"

    @property
    def loss_fn(self):
        return losses.LOSSES[self.loss]

    @property
    def active(self) -> bool:
        return self.diverged_step is None

    # What a checkpoint holds of the arm; everything else is rebuilt from the config.
    _SCALARS = ("diverged_step", "steps_trained", "train_time_s", "probe_time_s", "last_train", "last_test",
                "best_test_acc", "steps_to_target")

    def state_dict(self) -> dict:
        noise = [None if m.generator is None else m.generator.get_state() for m in self._noise_layers()]
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "noise": noise, **{k: getattr(self, k) for k in self._SCALARS}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        for m, g in zip(self._noise_layers(), state["noise"], strict=True):
            m.generator = None if g is None else torch.Generator(device=device)
            if g is not None:
                m.generator.set_state(g)
        for k in self._SCALARS:
            setattr(self, k, state[k])

    def _noise_layers(self) -> list:
        return [m for m in self.model.modules() if isinstance(m, norms.ActivationNoise)]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def total_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    return int(cfg.train.epochs) * steps_per_epoch if cfg.train.epochs else int(cfg.train.steps)


def arm_names(cfg: DictConfig) -> list[str]:
    """cfg.arms, plus a "<kind>-random" control per arm when train.random_param_control is on."""
    names = list(cfg.arms)
    if cfg.train.random_param_control:
        names += [f"{kind}-random" for kind in cfg.arms]
    return names


@contextlib.contextmanager
def tf32(enabled: bool):
    """CUDA matmuls and convolutions in TF32 inside the block only (probes outside it stay fp32)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast(precision: str, device: torch.device):
    """bf16 autocast for the training forward (backward follows its dtypes); a no-op otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_arm(name: str, cfg: DictConfig, num_classes: int, device, steps: int) -> Arm:
    kind = name.removesuffix("-random")
    model = models.build(cfg.model, kind, cfg.norm, num_classes)
    init.initialize(model, cfg.init, seed=cfg.seed)  # same seed -> same weights in every arm
    norms.seed_noise(model, cfg.seed)  # noisy arms draw identical noise
    trainable = sum(p.numel() for p in model.parameters())
    if cfg.train.only_norm_params:  # Frankle et al. 2021, and its matched random control
        n_norm = sum(p.numel() for p in freeze.norm_parameters(model))
        if name.endswith("-random"):
            trainable = freeze.train_random_subset(model, n_norm, seed=cfg.seed)
        else:
            trainable = freeze.train_only_norm(model)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    opt, sched = optim.make(model.parameters(), cfg.optim, steps)
    layers = cfg.metrics.ics.layers
    grad_params = {n for n, p in model.named_parameters() if p.requires_grad}
    ics_layers = [n for n in (ics.auto_layers(model) if layers == "auto" else list(layers)) if n in grad_params]
    a = cfg.metrics.activations
    recorder = None
    if a.every:
        tracked = activations.conv_layers(model)[-1:] if a.layers == "auto" else list(a.layers)
        recorder = activations.ActivationRecorder(model, tracked, list(a.channels), list(a.percentiles))
    forward = torch.compile(model) if cfg.train.compile else model
    return Arm(name, kind, model, opt, sched, ics_layers=ics_layers, recorder=recorder,
               trainable_params=trainable, forward=forward, precision=str(cfg.train.precision),
               loss=losses.name(cfg.data))


def probes_due(cfg: DictConfig, step: int) -> set[str]:
    """Which measurements run at this step (``metrics.<name>.every``; null = off)."""
    due = set()
    for name in ("layer_norms", "landscape", "ics", "divergence", "curvature", "activations"):
        every = cfg.metrics[name].every
        if every and step % int(every) == 0:
            due.add(name)
    hist = cfg.metrics.activations.histogram_every
    if hist and step % int(hist) == 0:
        due.add("histograms")
    if step == 0 and "divergence" in due:
        due.add("init_scales")  # Bjorck et al.'s per-layer scales at initialization
    return due


def initial_scales(arm: Arm, x, y) -> dict:
    """Bjorck et al.: per-layer activation std and gradient norm at initialization."""
    res = divergence.layer_scales(arm.model, arm.loss_fn, x, y)
    out = {}
    for layer, v in res.items():
        out[f"init/act_std/{layer}"] = v["act_std"]
        if "grad_norm" in v:
            out[f"init/grad_norm/{layer}"] = v["grad_norm"]
    return out


def curvature_probe(model, x, y, c, loss_fn=F.cross_entropy) -> dict:
    """Top Hessian eigenvalue(s), and optionally the trace, per BN mode (the mode is in the key)."""
    out = {}
    for mode in c.bn_modes:
        try:
            out.update(curvature_mode(model, x, y, c, mode, loss_fn))
        except torch.linalg.LinAlgError:  # a non-finite Hessian (weights on their way to divergence)
            out[f"curvature/eig1@{mode}"] = float("nan")  # is a recorded result, not a crash
    return out


def curvature_mode(model, x, y, c, mode: str, loss_fn) -> dict:
    """``curvature_probe`` in one BN mode."""
    out = {}
    values, info = curvature.top_eigenvalues(model, loss_fn, x, y, k=int(c.k), bn_mode=mode,
                                             tol=float(c.tol), max_hvps=int(c.max_hvps), return_info=True)
    for i, v in enumerate(values):
        out[f"curvature/eig{i + 1}@{mode}"] = v
    out[f"curvature/hvps@{mode}"] = info["hvps"]
    if c.trace_samples:
        tr = curvature.hutchinson_trace(model, loss_fn, x, y, int(c.trace_samples), bn_mode=mode)
        out[f"curvature/trace@{mode}"], out[f"curvature/trace_stderr@{mode}"] = tr["trace"], tr["stderr"]
    if c.get("slq_runs"):
        out.update(slq_probe(model, x, y, c, mode, loss_fn))
    return out


def slq_probe(model, x, y, c, mode: str, loss_fn) -> dict:
    """SLQ spectral measure (Ghorbani et al. 2019) in one BN mode: its outlier summary, and its nodes and
    weights per Lanczos run (``curvature/slq<run>_node<i>@<mode>``), from which bnlab-plot draws the density."""
    dens = curvature.spectral_density(model, loss_fn, x, y, num_runs=int(c.slq_runs),
                                      lanczos_steps=int(c.slq_steps), bn_mode=mode)
    res = curvature.outliers(dens["nodes"], dens["weights"], float(c.bulk_mass))
    out = {f"curvature/{k}@{mode}": v for k, v in res.items() if v is not None}
    for r, (nodes, weights) in enumerate(zip(dens["nodes"], dens["weights"])):
        out.update({f"curvature/slq{r}_node{i}@{mode}": v for i, v in enumerate(nodes)})
        out.update({f"curvature/slq{r}_weight{i}@{mode}": v for i, v in enumerate(weights)})
    return out


def train_step(arm: Arm, x, y, due: set[str], cfg: DictConfig, step: int = 0) -> tuple[dict, dict]:
    """One optimizer step of one arm on batch (x, y).

    Returns (per-step metrics as device tensors, never synced here; probe
    results as host floats). Probes that are due run on this very batch and
    leave the trajectory untouched.
    """
    arm.model.train()
    forward = arm.forward
    if arm.recorder is not None:  # activation hooks read this forward pass, no extra one
        arm.recorder.armed = "activations" in due or "histograms" in due
        if arm.recorder.armed:
            forward = arm.model  # hooks fire in eager mode only
    device = x.device
    with tf32(arm.precision == "tf32"):
        with autocast(arm.precision, device):
            logits = forward(x)
        loss = arm.loss_fn(logits.float(), y)
        arm.opt.zero_grad(set_to_none=True)
        loss.backward()
    out = {
        "loss": loss.detach(),
        "grad_norm": gradnorms.global_grad_norm(arm.model),
    }
    hits = losses.correct(arm.loss, logits.detach(), y)
    if hits is not None:  # a regression has no accuracy
        out["acc"] = hits / len(y)
    if arm.recorder is not None and arm.recorder.armed:
        stats, samples = arm.recorder.collect()
        if "activations" in due:
            out.update(stats)
        if "histograms" in due:
            arm.histograms.append((step, samples))
    if "layer_norms" in due:
        out.update(gradnorms.layer_norms(arm.model))
        small = gammas.small_gamma_fraction(arm.model)
        if small is not None:
            out["gamma_frac_below_0.01"] = small
    t0 = time.perf_counter()
    fp32_step = arm.precision == "fp32"
    # at w_t; an fp32 step's own loss and gradient serve the probes, others are recomputed in fp32
    probe = probes_at_w(arm, x, y, loss.detach() if fp32_step else None, due, cfg)
    if "ics" in due and arm.ics_layers:  # ICS needs w_t, its gradient and the real update
        weights_before = {n: p.detach().clone() for n, p in arm.model.named_parameters()}
        if fp32_step:
            grads_before = {n: p.grad.detach().clone() for n, p in arm.model.named_parameters()
                            if p.grad is not None}
        else:
            named = [(n, p) for n, p in arm.model.named_parameters() if p.grad is not None]
            with preserved(arm.model):
                _, g = loss_and_grad(arm.model, arm.loss_fn, x, y, [p for _, p in named])
            grads_before = {n: t for (n, _), t in zip(named, g)}
    arm.probe_time_s += time.perf_counter() - t0
    arm.opt.step()
    arm.sched.step()
    if "ics" in due and arm.ics_layers:
        t0 = time.perf_counter()
        res = ics.internal_covariate_shift(arm.model, arm.loss_fn, x, y, weights_before,
                                           grads_before, arm.ics_layers)
        for layer, v in res.items():
            probe[f"ics/{layer}/l2"], probe[f"ics/{layer}/cos"] = v["l2"], v["cos"]
            probe[f"ics/{layer}/rel"] = v["rel"]  # scale-free: ||G - G'|| / ||G|| (bnlab-claims reads it)
        arm.probe_time_s += time.perf_counter() - t0
    return out, probe


def step_arm(arm: Arm, x, y, due: set[str], step: int, cfgs: dict[str, DictConfig]) -> None:
    """``train_step`` of one arm (with its own config copy ``cfgs[arm.name]``), timed; its metrics and
    probe results queued for the next flush."""
    t0, probe_t0 = time.perf_counter(), arm.probe_time_s
    metrics, probe = train_step(arm, x, y, due, cfgs[arm.name], step)
    arm.pending.append((step, metrics))
    if probe:
        arm.probes.append((step, probe))
    arm.train_time_s += time.perf_counter() - t0 - (arm.probe_time_s - probe_t0)
    arm.steps_trained += 1


def probes_at_w(arm: Arm, x, y, loss, due: set[str], cfg: DictConfig) -> dict:
    """Landscape, divergence, initial-scale and curvature probes at the current weights.

    ``loss``: the step's fp32 loss, whose gradient is in ``.grad``; None makes the
    probes compute both in fp32 themselves (a bf16/tf32 step's gradient is not the spec's).
    """
    probe = {}
    grads = [p.grad for p in arm.model.parameters() if p.requires_grad] if loss is not None else None
    lr = arm.sched.get_last_lr()[0]
    if "landscape" in due:
        c = cfg.metrics.landscape
        grid = landscape.step_grid(lr, c.lo, c.hi, int(c.points))
        res = landscape.probe(arm.model, arm.loss_fn, x, y, grid, grad=grads, loss=loss)
        probe.update({f"landscape/{k}": v for k, v in res.items() if not isinstance(v, list)})
        for eta, lo, gp in zip(grid, res["losses"], res["grad_preds"]):
            probe[f"landscape/loss@{eta / lr:g}lr"] = lo
            probe[f"landscape/grad_pred@{eta / lr:g}lr"] = gp
    if "divergence" in due:
        c = cfg.metrics.divergence
        grid = divergence.log_grid(float(c.eta_min), float(c.eta_max), int(c.points))
        res = divergence.relative_loss(arm.model, arm.loss_fn, x, y, grid, float(c.threshold),
                                       grad=grads, loss=loss)
        probe.update({f"divergence/ratio@{eta:.0e}": r for eta, r in zip(grid, res["ratios"])})
        probe["divergence/first_divergent_eta"] = res["first_divergent_eta"]
    if "init_scales" in due:
        probe.update(initial_scales(arm, x, y))
    if "curvature" in due:
        probe.update(curvature_probe(arm.model, x, y, cfg.metrics.curvature, arm.loss_fn))
    return probe


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
                if isinstance(m, norms.BATCH_STAT_TYPES):
                    m.train()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in batches.test_batches(chunk):
            logits = model(x)
            loss_sum += losses.LOSSES[loss](logits, y, reduction="sum").item()
            hits = losses.correct(loss, logits, y)
            correct = None if hits is None else correct + hits.item()
            n += len(y)
    return {"loss": loss_sum / n, **({} if correct is None else {"acc": correct / n})}


def uses_batch_stats(model: torch.nn.Module) -> bool:
    return any(isinstance(m, norms.BATCH_STAT_TYPES) for m in model.modules())


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
    last = rows[-1]["step"]
    probe_rows = [{"step": st, "arm": arm.name, "split": "probe", **v} for st, v in arm.probes if st <= last]
    arm.probes.clear()
    return sorted(rows + probe_rows, key=lambda r: r["step"])


def tracker_rows(rows: list[dict], arm: Arm) -> dict[int, dict]:
    """Record rows (and queued histograms) as one W&B dict per step: ``<split>/<metric>`` keys."""
    out: dict[int, dict] = {}
    for r in rows:
        out.setdefault(r["step"], {}).update(
            {f"{r['split']}/{k}": v for k, v in r.items() if k not in ("step", "arm", "split")})
    last = rows[-1]["step"] if rows else -1
    for step, samples in [h for h in arm.histograms if h[0] <= last]:
        out.setdefault(step, {}).update({f"hist/{k}": v for k, v in samples.items()})
    arm.histograms = [h for h in arm.histograms if h[0] > last]
    return dict(sorted(out.items()))


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict:
    """Train every arm in ``cfg.arms`` side by side; write the run record; return the summary."""
    # -- everything that can fail on bad input happens before the first write --
    config.validate(cfg)
    out_dir = Path(out_dir) if out_dir is not None else hydra_output_dir()
    # the lock before the first read that leads to a write; released however the run ends
    with lock.RunLock(out_dir) as held:
        return _run(cfg, out_dir, held)


def _run(cfg: DictConfig, out_dir: Path, held: lock.RunLock) -> dict:
    """``run`` with the run dir locked: resume or start over, train, write the records."""
    device = pick_device(cfg.device)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    finished = completed_summary(out_dir, cfg, resolved)
    if finished is not None:
        log.info("%s already holds this run, completed (summary.json); nothing to do "
                 "(train.resume=never starts it over)", out_dir)
        console.print_summary(finished, out_dir)
        return finished
    state = None
    if cfg.train.resume == "auto":
        state = checkpoint.load(out_dir)
        if state is not None:
            checkpoint.check_config(out_dir, state, resolved)
    torch.manual_seed(cfg.seed)  # anything outside our own generators
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic kernels, without also writing NaN into every new tensor: that fill guards
        # against kernels reading uninitialized memory, costs a memory pass per allocation
        # (~8% of a narrow ResNet-20 step on a CPU), and PyTorch documents that a valid program
        # stays deterministic without it (docs: torch.utils.deterministic).
        torch.utils.deterministic.fill_uninitialized_memory = False
    ds = data.load(cfg.data, device)
    trained_on = data.fingerprint(ds)
    if state is not None:
        checkpoint.check_data(out_dir, state, trained_on)
    aug = cfg.data.augment if cfg.data.augment.enabled else None
    batches = data.Batches(ds, int(cfg.data.batch_size), seed=cfg.seed, augment=aug,
                           channels_last=bool(cfg.train.channels_last))
    steps = total_steps(cfg, batches.steps_per_epoch)
    arms = [build_arm(name, cfg, ds.num_classes, device, steps) for name in arm_names(cfg)]
    pair = config.pair_id(cfg)
    start, resumes, wall_before = 0, [], 0.0
    if state is not None:  # continue exactly where the checkpoint left off
        for arm in arms:
            arm.load_state_dict(state["arms"][arm.name], device)
        batches.load_state_dict(state["batches"])
        checkpoint.set_rng_state(state["rng"], device)
        start, resumes, wall_before = int(state["step"]), list(state["resumes"]) + [int(state["step"])], \
            float(state["wall_time_s"])

    # -- the record and the W&B runs --
    held.start_writing()
    record = results.RunRecord(out_dir)
    if state is not None:
        record.truncate(int(state["metrics_bytes"]))  # drop rows written after the checkpoint
    else:  # resume=never: an old checkpoint, weights, analysis or figures must not come back
        removed = record.start_over()
        if removed:
            log.info("starting over in %s: removed the earlier run's %s", out_dir, ", ".join(removed))
    record.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    tracker = tracking.make(cfg.logger, out_dir, pair, resolved, [a.name for a in arms],
                            resume_ids=state["wandb_ids"] if state is not None else None)
    log.info(
        "pair %s: arms %s, %s on %s (%d train images), %d steps of batch %d, lr %g, device %s%s",
        pair, ",".join(a.name for a in arms), cfg.model.arch, ds.name, ds.train_size, steps,
        cfg.data.batch_size, cfg.optim.lr, device, f", resumed at step {start}" if start else "",
    )
    target = cfg.train.target_acc
    every = cfg.train.checkpoint_every
    started, exit_code = time.time(), 1
    try:
        with preemption.StopSignals() as stop, \
                console.LiveProgress(steps, [a.name for a in arms], cfg.train.progress) as bar, \
                arm_threads.ArmPool(arm_threads.workers(
                    cfg.train.concurrent_arms, device, len(arms), bool(cfg.train.compile),
                    lambda: arm_threads.forward_flops(arms[0].model, ds.train_x.shape[1:]))) as pool:
            threads = {"arm_threads": pool.n, "intra_op_threads_per_arm": pool.threads_per_arm if pool.n
                       else torch.get_num_threads()}
            log.info("arms %s (%s)", "step at once" if pool.n else "step one after the other",
                     ", ".join(f"{k} {v}" for k, v in threads.items()))

            def evaluate_all(step: int) -> None:
                rows = []
                for arm in arms:
                    if not arm.active:
                        continue
                    arm.last_test = evaluate(arm.model, batches, loss=arm.loss)
                    acc = arm.last_test.get("acc")  # None: a regression
                    if acc is not None:
                        arm.best_test_acc = max(acc, arm.best_test_acc or 0.0)
                    if arm.steps_to_target is None and acc is not None and convergence.reached(acc, target):
                        arm.steps_to_target = step
                    row = {"step": step, "arm": arm.name, "split": "test", **arm.last_test}
                    if cfg.train.eval_batch_stats and uses_batch_stats(arm.model):
                        bs = evaluate(arm.model, batches, batch_stats=True, loss=arm.loss)
                        row.update({f"{k}_batch_stats": v for k, v in bs.items()})
                    rows.append(row)
                record.append(rows)
                for r in rows:
                    tracker.log(r["arm"], step, {f"test/{k}": v for k, v in r.items()
                                                 if k not in ("step", "arm", "split")})

            def log_all(step: int) -> None:
                flushed = [(arm, flush(arm, cfg, lrs)) for arm in arms]
                # step after step, every arm within a step: the same lines wherever the flushes fall
                # (a stop signal flushes off the log_every cadence, and a resumed run must match)
                record.append(sorted((r for _, rows in flushed for r in rows), key=lambda r: r["step"]))
                for arm, rows in flushed:
                    for step_, logged in tracker_rows(rows, arm).items():
                        tracker.log(arm.name, step_, logged)
                bar.update(step, {
                    a.name: {"loss": a.last_train.get("loss") or float("nan"),
                             "acc": a.last_train.get("acc") or 0.0, "diverged": a.diverged_step}
                    for a in arms if a.last_train
                })

            def save_state(step: int) -> Path:
                """The checkpoint at a step boundary: records flushed, nothing pending."""
                return checkpoint.save(out_dir, {
                    "step": step, "config": resolved, "arms": {a.name: a.state_dict() for a in arms},
                    "batches": batches.state_dict(), "rng": checkpoint.rng_state(device), "data": trained_on,
                    "metrics_bytes": record.size(), "resumes": resumes,
                    "wandb_ids": {arm: d["id"] for arm, d in tracker.describe().items()},
                    "wall_time_s": wall_before + time.time() - started,
                })

            # an arm thread reads its own copy of the config (OmegaConf is not documented thread-safe)
            arm_cfg = {a.name: copy.deepcopy(cfg) if pool.n else cfg for a in arms}
            if start == 0:
                evaluate_all(0)
            lrs = {}
            for step in range(start, steps):
                x, y = next(batches)  # one batch, consumed by every arm
                lrs[step] = arms[0].sched.get_last_lr()[0]
                due = probes_due(cfg, step)

                # on a CPU the arms step at once (train.concurrent_arms), the slowest one first
                pool.map(functools.partial(step_arm, x=x, y=y, due=due, step=step, cfgs=arm_cfg),
                         sorted((a for a in arms if a.active), key=lambda a: -a.train_time_s / max(a.steps_trained, 1)))
                done = step + 1
                eval_due = done % int(cfg.train.eval_every) == 0 or done == steps
                ckpt_due = (bool(every) and done % int(every) == 0 and done < steps) or stop.requested is not None
                # an evaluation and a checkpoint sync anyway, and W&B needs steps in order: flush first
                if eval_due or ckpt_due or done % int(cfg.train.log_every) == 0:
                    log_all(done)
                    lrs.clear()
                    if not any(a.active for a in arms):
                        log.warning("every arm diverged; stopping at step %d", done)
                        break
                if eval_due:
                    evaluate_all(done)
                if ckpt_due:
                    path = save_state(done)
                    if stop.requested is not None:
                        exit_code = preemption.INTERRUPTED_EXIT  # W&B runs finish with it (finally)
                        stop.hand_over()  # submitit: requeue and exit; otherwise we raise below
                        raise preemption.Interrupted(stop.requested, done, path)
        if cfg.train.save_checkpoint:
            save_checkpoints(out_dir, arms)
        summary = make_summary(cfg, pair, ds, batches, steps, arms, started, tracker)
        summary["data"]["sha256"] = trained_on["sha256"]  # what it trained on, wherever the files were
        summary["threads"] = threads  # an arm's float rounding depends on its intra-op thread count
        summary["wall_time_s"] = round(wall_before + summary["wall_time_s"], 3)
        summary["resumed_at_steps"] = resumes
        record.write_summary(summary)
        checkpoint.path(out_dir).unlink(missing_ok=True)  # the run is complete; the final weights stay
        tracking.publish(tracker, cfg.logger, out_dir, summary)
        exit_code = 0
    finally:
        tracker.finish(exit_code)
    console.print_summary(summary, out_dir)
    return summary


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


def save_checkpoints(out_dir: Path, arms: list[Arm]) -> None:
    """Final weights of every arm, loadable with torch.load(weights_only=True)."""
    for arm in arms:
        state = {"model": arm.model.state_dict(), "step": arm.steps_trained,
                 "diverged_step": arm.diverged_step}
        checkpoint.atomic_save(Path(out_dir) / "checkpoints" / f"{arm.name}.pt", state)


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
                "norm": a.norm,
                "trainable_params": a.trainable_params,
                "final_gamma_frac_below_0.01": _item(gammas.small_gamma_fraction(a.model)),
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
                "probe_time_s": round(a.probe_time_s, 3),
            }
            for a in arms
        },
        "wall_time_s": round(time.time() - started, 3),
        "wandb": tracker.describe(),
    }


def _item(t):
    return None if t is None else t.item()


def hydra_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
