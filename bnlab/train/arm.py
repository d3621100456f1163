"""One arm of the pair: what it trains (model, optimizer, schedule) and what it measured so far (``Tally``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from bnlab import freeze, init, losses, models, norms, optim
from bnlab.metrics import activations, bn_stats


@dataclass
class Tally:
    """An arm's buffers (results not yet written) and its running totals."""

    pending: list = field(default_factory=list)  # (step, {key: device tensor}) not yet synced
    probes: list = field(default_factory=list)  # (step, {key: float}) probe results not yet written
    histograms: list = field(default_factory=list)  # (step, {key: values}) for W&B only
    diverged_step: int | None = None
    steps_trained: int = 0
    train_time_s: float = 0.0  # host time in training steps, probes excluded
    probe_time_s: float = 0.0
    last_train: dict = field(default_factory=dict)
    last_test: dict = field(default_factory=dict)
    best_test_acc: float | None = None
    steps_to_target: int | None = None

    # What a checkpoint holds of the tally; the buffers are empty at a checkpoint.
    SCALARS = ("diverged_step", "steps_trained", "train_time_s", "probe_time_s", "last_train", "last_test",
               "best_test_acc", "steps_to_target")

    def mean_step_s(self) -> float:
        return self.train_time_s / max(self.steps_trained, 1)


@dataclass
class Arm:
    """What one arm trains, built from the config; its measurements so far in ``tally``."""

    name: str  # the norm kind, or "<kind>-random" for a random-parameter control
    norm: str
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    forward: object = None  # what the training step calls: the model, or torch.compile(model)
    recorder: activations.ActivationRecorder | None = None
    bn_recorder: bn_stats.BNRecorder | None = None  # metrics.bn_stats: what bnlab-explore draws
    loss: str = "cross_entropy"  # data.loss (bnlab/losses.py): the step, every probe and evaluation use it
    precision: str = "fp32"
    grad_clip: float | None = None  # optim.grad_clip: the update's gradient norm cap (bnlab/clipping.py)
    trainable_params: int = 0
    tally: Tally = field(default_factory=Tally)

    @property
    def loss_fn(self):
        return losses.LOSSES[self.loss]

    @property
    def active(self) -> bool:
        return self.tally.diverged_step is None

    def state_dict(self) -> dict:
        noise = [None if m.generator is None else m.generator.get_state() for m in self._noise_layers()]
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "noise": noise, **{k: getattr(self.tally, k) for k in Tally.SCALARS}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        for m, g in zip(self._noise_layers(), state["noise"], strict=True):
            m.generator = None if g is None else torch.Generator(device=device)
            if g is not None:
                m.generator.set_state(g)
        for k in Tally.SCALARS:
            setattr(self.tally, k, state[k])

    def _noise_layers(self) -> list:
        return [m for m in self.model.modules() if isinstance(m, norms.ActivationNoise)]


def arm_names(cfg: DictConfig) -> list[str]:
    """cfg.arms, plus a "<kind>-random" control per arm when train.random_param_control is on."""
    names = list(cfg.arms)
    if cfg.train.random_param_control:
        names += [f"{kind}-random" for kind in cfg.arms]
    return names


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
    forward = torch.compile(model) if cfg.train.compile else model
    recorder = activations.recorder(model, cfg.metrics.activations)
    bn_recorder = bn_stats.recorder(model, cfg.metrics.get("bn_stats"), cfg.metrics.activations)
    return Arm(name, kind, model, opt, sched, forward=forward, recorder=recorder, bn_recorder=bn_recorder,
               loss=losses.name(cfg.data),
               precision=str(cfg.train.precision), grad_clip=cfg.optim.get("grad_clip"), trainable_params=trainable)
