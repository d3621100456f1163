"""Config checks that run before anything is written, and the pair id.

Hydra already rejects unknown keys and unknown group options; this module
rejects impossible values (lr <= 0, batch size <= 0, an unknown norm in
``arms``...) with one line that names the key and the fix.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from bnlab import init, models, norms, optim, tracking
from bnlab.errors import BnlabError

# Keys that do not change what is trained, so they stay out of the pair id.
_NOT_IN_PAIR_ID = ("arms", "logger", "experiment_name", "claims_tested", "train.progress", "data.root", "data.download",
                   "train.checkpoint_every", "train.resume")
PRECISIONS = ("fp32", "tf32", "bf16")
RESUME = ("auto", "never")


def _positive(cfg, key: str, example, allow_none=False, integer=False) -> None:
    v = OmegaConf.select(cfg, key)
    if v is None and allow_none:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    if integer:
        ok = ok and float(v).is_integer()
    if not ok:
        kind = "an integer > 0" if integer else "> 0"
        raise BnlabError(f"{key}={v} must be {kind}; pass e.g. {key}={example}")


def validate(cfg: DictConfig) -> None:
    """Raise BnlabError naming the first impossible value in ``cfg``."""
    arms = list(cfg.arms)
    if not arms:
        raise BnlabError("arms=[] is empty; pass e.g. arms=[bn,none]")
    if len(set(arms)) != len(arms):
        raise BnlabError(f"arms={arms} repeats an arm; list each norm once")
    for arm in arms:
        norms.check(arm)
    if cfg.model.arch not in models.ARCHS:
        raise BnlabError(f"model.arch={cfg.model.arch} is not known; choose from {', '.join(models.ARCHS)}")
    if cfg.init.scheme not in init.SCHEMES:
        raise BnlabError(f"init.scheme={cfg.init.scheme} is not known; choose from {', '.join(init.SCHEMES)}")
    if cfg.optim.name not in optim.OPTIMIZERS:
        raise BnlabError(f"optim.name={cfg.optim.name} is not known; choose from {', '.join(optim.OPTIMIZERS)}")
    if cfg.optim.schedule not in optim.SCHEDULES:
        raise BnlabError(
            f"optim.schedule={cfg.optim.schedule} is not known; choose from {', '.join(optim.SCHEDULES)}"
        )
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
    for name in ("layer_norms", "landscape", "ics", "divergence", "curvature", "activations"):
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
            raise BnlabError(f"metrics.curvature.bn_modes: unknown mode '{mode}'; use [batch], [running] or [batch,running]")
    _positive(cfg, "metrics.activations.histogram_every", 500, allow_none=True, integer=True)
    if cfg.metrics.activations.histogram_every and not cfg.metrics.activations.every:
        raise BnlabError("metrics.activations.histogram_every needs metrics.activations.every; set e.g. every=50")
    for p in cfg.metrics.activations.percentiles:
        if not 0 <= p <= 100:
            raise BnlabError(f"metrics.activations.percentiles: {p} is not in [0, 100]")
    layers = cfg.metrics.ics.layers
    if layers != "auto" and not OmegaConf.is_list(layers):
        raise BnlabError(f"metrics.ics.layers={layers} must be 'auto' or a list of parameter names")
    if cfg.device not in ("auto", "cpu", "cuda", "mps") and not str(cfg.device).startswith("cuda:"):
        raise BnlabError(f"device={cfg.device} is not known; use device=auto, cpu, cuda or cuda:N")


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
