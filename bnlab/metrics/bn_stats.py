"""BatchNorm's statistics and the distributions it acts on, at a cadence (Ioffe & Szegedy 2015, sec. 3.1).

Three measurements, all read by forward hooks during the training step's own forward pass (no
extra pass, no RNG, activations untouched, so the trajectory is unchanged), armed only when due:

- ``bn_stats`` (train rows): for every BatchNorm layer and each tracked channel c, the batch
  statistics BN normalizes with and the running statistics inference uses, read BEFORE this
  step's update of the running ones:
      batch_mean = mean of x[:, c] over n, h, w      batch_var = biased variance (BN's own)
      running_mean, running_var                       (PyTorch: running = (1-m) running + m batch)
  keys ``bn_stats/<norm layer>/c<ch>/<stat>`` (``stat_key`` / ``parse_stat_key``).
- ``act_hist`` (train rows): the histogram of channel c of each tracked conv layer's output (the
  norm's input, ``pre``) and of the following norm layer's output (the nonlinearity's input,
  ``nl``; in an unnormalized arm the same values): ``bins`` equal bins over [lo, hi] = the values'
  min and max, as fractions of the values; keys ``act_hist/<conv>/c<ch>/<where>/{lo,hi,b<i>}``.
- ``bn_batch`` (probe rows): one saved batch of real pre-norm values of each tracked channel
  (``values`` of them, evenly spaced over the flattened n, h, w, so they span the examples), with
  the norm layer's running statistics, gamma, beta and eps at that step: what bnlab-explore's
  playground normalizes in the page. Keys ``bn_batch/<conv>/c<ch>/{x<i>,running_mean,...}``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from bnlab.metrics.activations import conv_layers, norm_after
from bnlab.metrics.registry import Measurement, register

PREFIX, HIST_PREFIX, BATCH_PREFIX = "bn_stats/", "act_hist/", "bn_batch/"


def _extra_due(block, step: int, due: bool) -> set:
    """``act_hist`` at ``hist_every``, ``bn_batch`` at ``batch_every`` (their own cadences in the same block)."""
    return {name for name, key in (("act_hist", "hist_every"), ("bn_batch", "batch_every"))
            if block.get(key) and step % int(block[key]) == 0}


# No hook of its own: the trainer arms the recorder for the step's forward pass (no extra pass).
# bnlab-explore draws all three (bnlab/explore), so bnlab-plot draws no generic figure of them.
MEASUREMENT = register(Measurement(
    name="bn_stats", prefix=PREFIX, also=(HIST_PREFIX,), split="train", extra_due=_extra_due,
    title="BatchNorm statistics and activation distributions (bnlab-explore)",
    paper="Ioffe & Szegedy 2015, sec. 3.1 and Fig. 1"))
# The saved batch goes to probe rows: a measurement of its own (no config block: bn_stats.batch_every arms it).
BATCH_MEASUREMENT = register(Measurement(
    name="bn_batch", prefix=BATCH_PREFIX, split="probe",
    title="A saved batch of pre-norm activations (bnlab-explore's playground)",
    paper="Ioffe & Szegedy 2015, Alg. 1"))
STAT_NAMES = ("batch_mean", "batch_var", "running_mean", "running_var")
BATCH_PARAMS = ("running_mean", "running_var", "gamma", "beta", "eps")
_STAT = re.compile(r"^bn_stats/(.+)/c(\d+)/(batch_mean|batch_var|running_mean|running_var)$")
_HIST = re.compile(r"^act_hist/(.+)/c(\d+)/(pre|nl)/(lo|hi|b\d+)$")
_BATCH = re.compile(r"^bn_batch/(.+)/c(\d+)/(x\d+|running_mean|running_var|gamma|beta|eps)$")


def stat_key(layer: str, ch: int, stat: str) -> str:
    return f"{PREFIX}{layer}/c{ch}/{stat}"


def parse_stat_key(key: str) -> tuple[str, int, str] | None:
    """(norm layer, channel, stat) of a ``stat_key``; None for any other key."""
    m = _STAT.match(key)
    return (m[1], int(m[2]), m[3]) if m else None


def hist_key(layer: str, ch: int, where: str, field: str) -> str:
    return f"{HIST_PREFIX}{layer}/c{ch}/{where}/{field}"


def parse_hist_key(key: str) -> tuple[str, int, str, str] | None:
    """(conv layer, channel, "pre"|"nl", "lo"|"hi"|"b<i>") of a ``hist_key``; None for any other key."""
    m = _HIST.match(key)
    return (m[1], int(m[2]), m[3], m[4]) if m else None


def batch_key(layer: str, ch: int, field: str) -> str:
    return f"{BATCH_PREFIX}{layer}/c{ch}/{field}"


def parse_batch_key(key: str) -> tuple[str, int, str] | None:
    """(conv layer, channel, "x<i>" or a BATCH_PARAMS name) of a ``batch_key``; None for any other key."""
    m = _BATCH.match(key)
    return (m[1], int(m[2]), m[3]) if m else None


def histogram(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, hi, fractions per bin) of ``values`` over [min, max] (device tensors: no sync here)."""
    values = values.contiguous()  # a channel of an N C H W tensor can be a strided view
    lo, hi = values.min(), values.max()
    # torch.histc wants python bounds (a sync); bucketize against device edges instead
    edges = torch.linspace(0.0, 1.0, bins + 1, device=values.device)[1:-1] * (hi - lo) + lo
    counts = torch.bincount(torch.bucketize(values, edges, right=True), minlength=bins).float()
    return lo, hi, counts / values.numel()


def spaced(values: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` entries of a flat tensor at evenly spaced indices (all of them if it has fewer): no RNG."""
    if values.numel() <= n:
        return values
    return values[torch.linspace(0, values.numel() - 1, n, device=values.device).round().long()]


def has_running_stats(m: nn.Module) -> bool:
    """A batch-statistics norm layer with running statistics (nn.BatchNorm2d and bnlab's hand-written ones)."""
    return isinstance(getattr(m, "running_mean", None), torch.Tensor) and hasattr(m, "num_features")


def recorder(model: nn.Module, block, activations_block) -> BNRecorder | None:
    """The arm's recorder for ``metrics.bn_stats`` (None when all three cadences are off); it tracks the
    layers and channels of ``metrics.activations`` (``auto``: the last conv layer)."""
    if not block or not (block.get("every") or block.get("hist_every") or block.get("batch_every")):
        return None
    a = activations_block
    tracked = conv_layers(model)[-1:] if a["layers"] == "auto" else list(a["layers"])
    return BNRecorder(model, tracked, list(a["channels"]), int(block["bins"]), int(block["batch_values"]))


class BNRecorder:
    """Hooks for ``bn_stats`` (every BatchNorm layer), ``act_hist`` and ``bn_batch`` (tracked conv layers).

    Set ``armed`` to a subset of {"bn_stats", "act_hist", "bn_batch"} before the forward pass;
    ``collect()`` returns (train rows' values as device tensors, probe rows' values as floats) and disarms.
    """

    def __init__(self, model: nn.Module, tracked: list[str], channels: list[int], bins: int = 40,
                 values: int = 256):
        modules = dict(model.named_modules())
        self.channels, self.bins, self.values = list(channels), int(bins), int(values)
        self.armed: set[str] = set()
        self.train: dict[str, torch.Tensor] = {}
        self.probe: dict[str, torch.Tensor] = {}
        bns = {n: m for n, m in modules.items() if has_running_stats(m)}
        for name, m in bns.items():
            bad = [c for c in self.channels if c >= m.num_features]
            if bad:
                raise IndexError(f"channel(s) {bad} do not exist in {name} ({m.num_features} channels)")
        self.handles = [m.register_forward_pre_hook(self._bn_hook(n)) for n, m in bns.items()]
        for conv in tracked:
            self.handles.append(modules[conv].register_forward_hook(self._conv_hook(conv)))
            norm = modules.get(norm_after(conv))
            if norm is not None:
                self.handles.append(norm.register_forward_hook(self._nl_hook(conv, norm)))

    def _bn_hook(self, name: str):
        def hook(module, inputs):
            if "bn_stats" in self.armed and module.training:
                x = inputs[0].detach().float().transpose(0, 1).flatten(1)  # C x (N H W)
                for c in self.channels:
                    self.train[stat_key(name, c, "batch_mean")] = x[c].mean()
                    self.train[stat_key(name, c, "batch_var")] = x[c].var(unbiased=False)
                    if module.running_mean is not None:  # read before this step's update
                        self.train[stat_key(name, c, "running_mean")] = module.running_mean[c].detach().clone()
                        self.train[stat_key(name, c, "running_var")] = module.running_var[c].detach().clone()

        return hook

    def _conv_hook(self, conv: str):
        def hook(_module, _inputs, out):
            if self.armed & {"act_hist", "bn_batch"}:
                a = out.detach().float()
                for c in self.channels:
                    if "act_hist" in self.armed:
                        self._hist(conv, c, "pre", a[:, c].flatten())
                    if "bn_batch" in self.armed:
                        for i, v in enumerate(spaced(a[:, c].flatten(), self.values)):
                            self.probe[batch_key(conv, c, f"x{i}")] = v

        return hook

    def _nl_hook(self, conv: str, norm: nn.Module):
        def hook(_module, _inputs, out):
            if "act_hist" in self.armed:
                for c in self.channels:
                    self._hist(conv, c, "nl", out.detach().float()[:, c].flatten())
            if "bn_batch" in self.armed and has_running_stats(norm):
                self._bn_params(conv, norm)

        return hook

    def _hist(self, conv: str, c: int, where: str, values: torch.Tensor) -> None:
        lo, hi, frac = histogram(values, self.bins)
        self.train[hist_key(conv, c, where, "lo")], self.train[hist_key(conv, c, where, "hi")] = lo, hi
        for i, f in enumerate(frac):
            self.train[hist_key(conv, c, where, f"b{i}")] = f

    def _bn_params(self, conv: str, norm: nn.Module) -> None:
        """The norm's state after this forward (running stats already include this batch)."""
        for c in self.channels:
            p = {"running_mean": norm.running_mean[c], "running_var": norm.running_var[c],
                 "gamma": norm.weight[c] if norm.weight is not None else torch.tensor(1.0),
                 "beta": norm.bias[c] if norm.bias is not None else torch.tensor(0.0),
                 "eps": torch.tensor(float(norm.eps))}
            for k, v in p.items():
                self.probe[batch_key(conv, c, k)] = v.detach().clone()

    def collect(self) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(train values as device tensors, probe values as floats) of the last armed forward; disarms."""
        keys = list(self.probe)
        values = torch.stack([self.probe[k].float().reshape(()) for k in keys]).tolist() if keys else []
        train, probe = self.train, dict(zip(keys, values))  # one sync for the whole saved batch
        self.armed, self.train, self.probe = set(), {}, {}
        return train, probe

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
