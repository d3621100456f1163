"""Config checks that run before anything is written, and the pair id.

Hydra already rejects unknown keys and unknown group options; this module
rejects impossible values (lr <= 0, batch size <= 0, an unknown norm in
``arms``, NaN or Inf anywhere, a seed beyond 32 bits, a step size float32
cannot hold, probe layers the model lacks, a device this machine lacks...)
with one line that names the key and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import torch
from omegaconf import DictConfig, OmegaConf

from bnlab import clipping, init, lstm, models, norms, optim
from bnlab.errors import BnlabError
from bnlab.metrics import activations, ics, registry
from bnlab.records import wandb_log as tracking

# Keys that do not change what is trained, so they stay out of the pair id.
_NOT_IN_PAIR_ID = ("arms", "logger", "experiment_name", "claims_tested", "train.progress", "data.root", "data.download",
                   "train.checkpoint_every", "train.resume")
PRECISIONS = ("fp32", "tf32", "bf16")
RESUME = ("auto", "never")
# Seeds go to torch's CPU generator (Mersenne Twister), which keeps only the low 32 bits of a seed:
# seed=2**32 would silently repeat seed=0's run under another pair id.
SEED_LIMIT = 2**32
# Parameters are float32: a step size beyond this cannot even be converted to their dtype.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(cfg, key: str, ok, rule: str, example, allow_none=False) -> None:
    """``key`` must be a finite number for which ``ok(value)`` holds (``rule`` says which, in words)."""
    v = OmegaConf.select(cfg, key)
    if v is None and allow_none:
        return
    if not (_is_number(v) and ok(v)):
        raise BnlabError(f"{key}={v} must be {rule}; pass e.g. {key}={example}")


def _positive(cfg, key: str, example, allow_none=False, integer=False) -> None:
    if integer:
        _check(cfg, key, lambda v: v > 0 and float(v).is_integer(), "an integer > 0", example, allow_none)
    else:
        _check(cfg, key, lambda v: v > 0, "> 0", example, allow_none)


def _check_finite(node, path: str = "") -> None:
    """No float anywhere in the resolved config may be NaN or Inf (Hydra reads ``nan``, ``inf`` as floats)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        key = f"{path}[{k}]" if isinstance(node, list) else f"{path}.{k}" if path else str(k)
        if isinstance(v, float) and not math.isfinite(v):
            raise BnlabError(f"{key}={v} is not a finite number; pass a finite value (see `bnlab --cfg job`)")
        _check_finite(v, key)


def validate(cfg: DictConfig) -> None:
    """Raise BnlabError naming the first impossible value in ``cfg``."""
    _check_finite(OmegaConf.to_container(cfg, resolve=True))
    _check_arms_and_groups(cfg)
    _check_logger(cfg)
    _check_frozen(cfg)
    _check_train(cfg)
    _check_metrics(cfg)
    _check_seeds(cfg)
    _check_data(cfg)
    _check_optim(cfg)
    _check_norm(cfg)
    _check(cfg, "train.target_acc", lambda v: 0 <= v <= 1, "a test accuracy in [0, 1]", 0.5)
    if cfg.metrics.divergence.eta_min > cfg.metrics.divergence.eta_max:
        raise BnlabError(f"metrics.divergence.eta_min={cfg.metrics.divergence.eta_min} is above "
                         f"eta_max={cfg.metrics.divergence.eta_max}; the grid runs from eta_min up to eta_max, "
                         f"e.g. eta_min=1e-5 eta_max=1.0")
    _check_step_sizes(cfg)
    _check_probe_layers(cfg)
    _check_device(str(cfg.device))


def _check_arms_and_groups(cfg) -> None:
    """The arms, and the names of the model, init and optimizer."""
    arms = list(cfg.arms)
    if not arms:
        raise BnlabError("arms=[] is empty; pass e.g. arms=[bn,none]")
    if len(set(arms)) != len(arms):
        raise BnlabError(f"arms={arms} repeats an arm; list each norm once")
    for arm in arms:
        norms.check(arm)
    if cfg.model.arch not in models.NETWORKS:
        raise BnlabError(f"model.arch={cfg.model.arch} is not known; choose from {', '.join(models.NETWORKS)}")
    if cfg.model.arch == lstm.ARCH:
        lstm.validate(cfg)
    if cfg.init.scheme not in init.SCHEMES:
        raise BnlabError(f"init.scheme={cfg.init.scheme} is not known; choose from {', '.join(init.SCHEMES)}")
    if cfg.optim.name not in optim.OPTIMIZERS:
        raise BnlabError(f"optim.name={cfg.optim.name} is not known; choose from {', '.join(optim.OPTIMIZERS)}")
    if cfg.optim.schedule not in optim.SCHEDULES:
        raise BnlabError(
            f"optim.schedule={cfg.optim.schedule} is not known; choose from {', '.join(optim.SCHEDULES)}"
        )


def _check_logger(cfg) -> None:
    if cfg.logger.name == "wandb":
        if cfg.logger.mode not in tracking.MODES:
            raise BnlabError(
                f"logger.mode={cfg.logger.mode} is not known; choose from {', '.join(tracking.MODES)}"
            )
        _positive(cfg, "logger.init_timeout", 30)
        ft = cfg.logger.get("finish_timeout", 0)
        if not isinstance(ft, (int, float)) or isinstance(ft, bool) or ft < 0:
            raise BnlabError(f"logger.finish_timeout={ft} must be >= 0 seconds (0: no limit); "
                             f"pass e.g. logger.finish_timeout=60")
        for key in ("log_figures", "log_checkpoints"):
            if not isinstance(cfg.logger.get(key, False), bool):
                raise BnlabError(f"logger.{key}={cfg.logger.get(key)} must be true or false; "
                                 f"pass e.g. logger.{key}=false")


def _check_frozen(cfg) -> None:
    """train.only_norm_params and its random control (Frankle et al. 2021)."""
    arms = list(cfg.arms)
    if cfg.train.only_norm_params:
        plain = [a for a in arms if a in ("none", "noisy_none")]
        if plain:
            raise BnlabError(f"train.only_norm_params=true needs norm layers, but arm '{plain[0]}' has none; "
                             f"drop it from arms")
    if cfg.train.random_param_control:
        if not cfg.train.only_norm_params:
            raise BnlabError("train.random_param_control=true is the control of train.only_norm_params; set both")
        if cfg.optim.weight_decay:
            raise BnlabError(f"train.random_param_control=true needs optim.weight_decay=0 (decay would move "
                             f"the frozen entries), got {cfg.optim.weight_decay}")


def _check_train(cfg) -> None:
    _positive(cfg, "optim.lr", 0.1)
    _positive(cfg, "data.batch_size", 128, integer=True)
    _positive(cfg, "model.width", 0.25)
    if cfg.train.epochs is None:
        _positive(cfg, "train.steps", 500, integer=True)
    else:
        _positive(cfg, "train.epochs", 10, integer=True)
    _positive(cfg, "train.log_every", 10, integer=True)
    _positive(cfg, "train.eval_every", 100, integer=True)
    _positive(cfg, "train.divergence_loss", 100)
    _positive(cfg, "train.checkpoint_every", 200, allow_none=True, integer=True)
    if cfg.train.precision not in PRECISIONS:
        raise BnlabError(f"train.precision={cfg.train.precision} is not known; choose from {', '.join(PRECISIONS)}")
    concurrent = cfg.train.get("concurrent_arms", "auto")
    if not (concurrent == "auto" or isinstance(concurrent, bool)):
        raise BnlabError(f"train.concurrent_arms={concurrent} is not known; use auto, true or false")
    if cfg.train.resume not in RESUME:
        raise BnlabError(f"train.resume={cfg.train.resume} is not known; choose from {', '.join(RESUME)}")


def _check_metrics(cfg) -> None:
    """Every registered measurement's cadence, then the blocks' own values."""
    for name in registry.MEASUREMENTS:  # every measurement's cadence; a missing block is off
        _positive(cfg, f"metrics.{name}.every", 50, allow_none=True, integer=True)
    _positive(cfg, "metrics.landscape.points", 8, integer=True)
    _positive(cfg, "metrics.landscape.lo", 0.5)
    _positive(cfg, "metrics.landscape.hi", 4.0)
    if cfg.metrics.landscape.lo > cfg.metrics.landscape.hi:
        raise BnlabError("metrics.landscape.lo must be <= metrics.landscape.hi; e.g. lo=0.5 hi=4.0")
    _positive(cfg, "metrics.divergence.points", 11, integer=True)
    _positive(cfg, "metrics.divergence.eta_min", 1e-5)
    _positive(cfg, "metrics.divergence.eta_max", 1.0)
    _positive(cfg, "metrics.divergence.threshold", 1000.0)
    _positive(cfg, "metrics.curvature.k", 1, integer=True)
    _positive(cfg, "metrics.curvature.tol", 1e-3)
    _positive(cfg, "metrics.curvature.max_hvps", 30, integer=True)
    for mode in cfg.metrics.curvature.bn_modes:
        if mode not in ("batch", "running"):
            raise BnlabError(f"metrics.curvature.bn_modes: unknown mode '{mode}'; "
                             f"use [batch], [running] or [batch,running]")
    _positive(cfg, "metrics.activations.histogram_every", 500, allow_none=True, integer=True)
    if cfg.metrics.activations.histogram_every and not cfg.metrics.activations.every:
        raise BnlabError("metrics.activations.histogram_every needs metrics.activations.every; set e.g. every=50")
    for p in cfg.metrics.activations.percentiles:
        if not 0 <= p <= 100:
            raise BnlabError(f"metrics.activations.percentiles: {p} is not in [0, 100]")
    for key in ("hist_every", "batch_every"):  # bnlab-explore's records (metrics/bn_stats.py)
        _positive(cfg, f"metrics.bn_stats.{key}", 25, allow_none=True, integer=True)
    _positive(cfg, "metrics.bn_stats.bins", 40, integer=True)
    _positive(cfg, "metrics.bn_stats.batch_values", 256, integer=True)
    layers = cfg.metrics.ics.layers
    if layers != "auto" and not OmegaConf.is_list(layers):
        raise BnlabError(f"metrics.ics.layers={layers} must be 'auto' or a list of parameter names")


def _check_seeds(cfg) -> None:
    keys = ["seed"] + (["data.seed"] if OmegaConf.select(cfg, "data.seed") is not None else [])
    for key in keys:
        v = OmegaConf.select(cfg, key)
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < SEED_LIMIT):
            raise BnlabError(f"{key}={v} must be an integer in [0, 2^32) (torch's CPU generator keeps only the "
                             f"low 32 bits, so 2^32 would repeat seed 0); pass e.g. {key}=0")


def _check_data(cfg) -> None:
    _positive(cfg, "data.train_size", 1000, allow_none=True, integer=True)
    if cfg.data.name == "synthetic":  # its sizes; CIFAR's are checked when the files are read
        _check(cfg, "data.num_classes", lambda v: v >= 2 and float(v).is_integer(), "an integer >= 2", 10)
        _positive(cfg, "data.num_train", 1024, integer=True)
        _positive(cfg, "data.num_test", 256, integer=True)
        _check(cfg, "data.noise", lambda v: v >= 0, ">= 0", 0.15)


def _check_optim(cfg) -> None:
    _check(cfg, "optim.weight_decay", lambda v: v >= 0, ">= 0", 0.0)
    clipping.check(cfg.optim.get("grad_clip"))
    if cfg.optim.name == "sgd":
        _check(cfg, "optim.momentum", lambda v: 0 <= v < 1, "in [0, 1)", 0.9)
        if cfg.optim.get("nesterov", False) and not cfg.optim.momentum:
            raise BnlabError("optim.nesterov=true needs a momentum; pass e.g. optim.momentum=0.9")
    if cfg.optim.name == "adam":
        betas = cfg.optim.betas
        if not (OmegaConf.is_list(betas) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
            raise BnlabError(f"optim.betas={betas} must be two numbers in [0, 1); pass e.g. optim.betas=[0.9,0.999]")


def _check_norm(cfg) -> None:
    _positive(cfg, "norm.bn.eps", 1e-5)
    _check(cfg, "norm.bn.momentum", lambda v: 0 <= v <= 1, "in [0, 1] (running = (1 - m) running + m batch)", 0.1)
    for key, example in (("mean_range", 0.5), ("std_low", 1.0), ("elem_mean_halfwidth", 0.1), ("elem_std", 0.1)):
        _check(cfg, f"norm.noise.{key}", lambda v: v >= 0, ">= 0", example)
    low = cfg.norm.noise.std_low
    _check(cfg, "norm.noise.std_high", lambda v: v >= low, f">= norm.noise.std_low ({low})", 1.25)


def _check_step_sizes(cfg) -> None:
    """Every step size bnlab or the optimizer takes must fit float32, the parameters' dtype.

    An absurd but representable lr (1e30) diverges, which is a recorded result; one beyond
    float32's range cannot be applied at all (torch raises on the conversion).
    """
    lr = float(cfg.optim.lr)
    factors = {"optim.lr": 1.0}
    if cfg.metrics.landscape.every:
        hi = float(cfg.metrics.landscape.hi)
        factors["metrics.landscape.hi x optim.lr (the landscape probe's largest step)"] = hi
    if cfg.optim.name == "adam":  # Adam's first step size is lr / (1 - beta1)
        factors["optim.lr / (1 - optim.betas[0]) (Adam's first step)"] = 1 / (1 - float(cfg.optim.betas[0]))
    what, factor = max(factors.items(), key=lambda kv: kv[1])
    if lr * factor > FLOAT32_MAX:
        raise BnlabError(f"optim.lr={lr:g}: {what} is {lr * factor:.3g}, beyond float32's range "
                         f"({FLOAT32_MAX:.3g}); pass optim.lr <= {FLOAT32_MAX / factor:.2g}, e.g. optim.lr=0.1")
    _check(cfg, "metrics.divergence.eta_max", lambda v: v <= FLOAT32_MAX, f"<= {FLOAT32_MAX:.3g} (float32)", 1.0)


def _check_probe_layers(cfg) -> None:
    """Names in metrics.ics.layers and metrics.activations.layers/channels must exist in the models."""
    a = cfg.metrics.activations
    if cfg.metrics.ics.layers == "auto" and a.layers == "auto" and not a.every:
        return
    # on the meta device: names and shapes only, no memory and no init (num_classes changes no name)
    with torch.device("meta"):
        nets = [models.build(cfg.model, kind, cfg.norm, 10) for kind in cfg.arms]
    if cfg.metrics.ics.layers != "auto":
        params = {n for net in nets for n, _ in net.named_parameters()}
        unknown = [n for n in cfg.metrics.ics.layers if n not in params]
        if unknown:
            raise BnlabError(f"metrics.ics.layers: {', '.join(map(str, unknown))} is not a parameter of "
                             f"{cfg.model.arch}; choose from its conv/linear weights "
                             f"{', '.join(ics.weight_layers(nets[0]))} (or another parameter name)")
    for net in nets:
        modules = dict(net.named_modules())
        convs = {name: modules[name] for name in activations.conv_layers(net)}
        tracked = list(convs)[-1:] if a.layers == "auto" else list(a.layers)
        unknown = [n for n in tracked if n not in convs]
        if unknown:
            raise BnlabError(f"metrics.activations.layers: {', '.join(map(str, unknown))} is not a conv layer "
                             f"of {cfg.model.arch}; choose from {', '.join(convs)}")
        for name in tracked:
            width = convs[name].out_channels
            bad = [c for c in a.channels if not (isinstance(c, int) and not isinstance(c, bool) and 0 <= c < width)]
            if bad:
                raise BnlabError(f"metrics.activations.channels: {bad[0]} is not a channel of {name} "
                                 f"({width} channels); choose channels in 0..{width - 1}")


def _check_device(device: str) -> None:
    """The device must exist on this machine (auto picks CUDA when there is one)."""
    if device in ("auto", "cpu"):
        return
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise BnlabError("device=mps: no MPS device is available here; use device=cpu or device=auto")
        return
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        raise BnlabError(f"device={device} is not known; use device=auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count()
    if count == 0:
        raise BnlabError(f"device={device}: no CUDA device is available here; use device=cpu or device=auto")
    if m.group(1) is not None and int(m.group(1)) >= count:
        raise BnlabError(f"device={device}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; "
                         f"use one of them or device=auto")


def pair_id(cfg: DictConfig) -> str:
    """Hash of the resolved config without the arm choice: the same for every arm of a pair."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_IN_PAIR_ID:
        node, *rest = key.split(".")
        if rest:
            c.get(node, {}).pop(rest[0], None)
        else:
            c.pop(node, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:10]
