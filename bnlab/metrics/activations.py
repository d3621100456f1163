"""Activation statistics: Ioffe & Szegedy 2015, Figure 1.

Ioffe & Szegedy track "a typical unit" of an MNIST MLP: the {15, 50, 85}th
percentiles of one pre-activation over training. Without BN the percentiles
drift and spread; with BN they stay put. The CNN analogue (docs/science.md sec. 4)
tracks chosen channels of chosen conv layers, BEFORE the normalization: the
conv output, which is the norm layer's input (and the nonlinearity's input in
the unnormalized arm). For channel c of a layer's output a (N x C x H x W):

    p_q(c) = q-th percentile of {a[n, c, h, w] over n, h, w}     (torch.quantile)

plus, for every conv layer, the mean and standard deviation of its whole
output, the per-layer view of the same drift.

Ioffe & Szegedy's figure itself tracks the input to the nonlinearity, which in
the BN network is BN's output. So each tracked conv layer's channels are also
read at the output of the norm layer that follows it (``norm_after``: the
module the ReLU reads; in the plain arm an identity, so the conv output), keys
``nl_in/<conv layer>/c<ch>/p<q>``. In a ResNet block's second conv that is the
norm's output before the residual add. ``activations_drift_less`` uses these.

``ActivationRecorder`` reads the outputs through forward hooks during the
training step's own forward pass, only when armed: no extra pass, nothing
written to the activations, no RNG used, so the trajectory is unchanged.
Results stay on the device until the trainer's logging cadence.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from bnlab.metrics.registry import Measurement, parse_layer_stat, register

ACT, NL_IN = "act/", "nl_in/"  # a conv layer's output; the nonlinearity's input after it
_PERCENTILE = re.compile(r"^(?P<where>act|nl_in)/(?P<layer>.+)/c(?P<ch>\d+)/p(?P<q>[0-9.]+)$")


def stat_key(layer: str, stat: str) -> str:
    """Record key of a whole conv output's ``mean`` or ``std``: ``act/<layer>/mean``."""
    return f"{ACT}{layer}/{stat}"


def parse_stat_key(k: str) -> tuple[str, str] | None:
    """(layer, stat) of a ``stat_key``; None for any other key."""
    return parse_layer_stat(k, ACT, ("mean", "std"))


def percentile_key(where: str, layer: str, channel: int, q: float) -> str:
    """Record key of percentile ``q`` of a channel; ``where``: "act" (conv output) or "nl_in" (after its norm)."""
    return f"{where}/{layer}/c{channel}/p{q:g}"


def parse_percentile_key(k: str) -> tuple[str, str, int, float] | None:
    """(where, layer, channel, q) of a ``percentile_key``; None for any other key."""
    m = _PERCENTILE.match(k)
    return None if m is None else (m["where"], m["layer"], int(m["ch"]), float(m["q"]))


def conv_layers(model: nn.Module) -> list[str]:
    """Module names of every conv layer, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def norm_after(conv: str) -> str:
    """The norm module that follows conv layer ``conv`` in bnlab's models (``features.conv3`` ->
    ``features.norm3``, ``stem.conv`` -> ``stem.norm``, ``...0.conv2`` -> ``...0.norm2``)."""
    parent, _, leaf = conv.rpartition(".")
    return f"{parent}.{leaf.replace('conv', 'norm', 1)}" if parent else leaf.replace("conv", "norm", 1)


class ActivationRecorder:
    """Forward hooks on every conv layer; percentiles for ``tracked`` layers and ``channels``."""

    def __init__(self, model: nn.Module, tracked: list[str], channels: list[int], percentiles: list[float]):
        modules = dict(model.named_modules())
        missing = [name for name in tracked if not isinstance(modules.get(name), nn.Conv2d)]
        if missing:
            raise KeyError(f"not conv layers of the model: {missing}; choose from {conv_layers(model)}")
        self.tracked, self.channels = list(tracked), list(channels)
        self.q = torch.tensor([p / 100.0 for p in percentiles])
        self.percentiles = list(percentiles)
        self.armed, self.captured = False, {}
        self.samples: dict[str, torch.Tensor] = {}
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in conv_layers(model)]
        # the nonlinearity's input: the output of the norm after each tracked conv (see the module doc)
        self.handles += [modules[norm_after(name)].register_forward_hook(self._nl_hook(name))
                         for name in self.tracked if norm_after(name) in modules]

    def _hook(self, name: str):
        def hook(_module, _inputs, out):
            if self.armed:
                self._record(name, out.detach())

        return hook

    def _nl_hook(self, conv: str):
        def hook(_module, _inputs, out):
            if self.armed:
                self._percentiles("nl_in", conv, out.detach().float())

        return hook

    def _record(self, name: str, a: torch.Tensor) -> None:
        a = a.float()
        self.captured[stat_key(name, "mean")] = a.mean()
        self.captured[stat_key(name, "std")] = a.std()
        if name in self.tracked:
            for c, values in self._percentiles("act", name, a).items():
                self.samples[f"{name}/c{c}"] = values

    def _percentiles(self, where: str, layer: str, a: torch.Tensor) -> dict[int, torch.Tensor]:
        """``percentile_key(where, layer, ...)`` for the tracked channels of ``a``; returns each channel's values."""
        out = {}
        for c in self.channels:
            if c >= a.shape[1]:
                raise IndexError(f"channel {c} does not exist in {layer} ({a.shape[1]} channels)")
            values = a[:, c].flatten()
            qs = torch.quantile(values, self.q.to(values.device))
            for p, v in zip(self.percentiles, qs):
                self.captured[percentile_key(where, layer, c, p)] = v
            out[c] = values
        return out

    def collect(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(statistics, raw tracked-channel values) of the last armed forward; disarms."""
        stats, samples = self.captured, self.samples
        self.armed, self.captured, self.samples = False, {}, {}
        return stats, samples

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def recorder(model: nn.Module, block) -> ActivationRecorder | None:
    """The arm's recorder for ``metrics.activations`` (None when off): the last conv layer by default."""
    if not block["every"]:
        return None
    tracked = conv_layers(model)[-1:] if block["layers"] == "auto" else list(block["layers"])
    return ActivationRecorder(model, tracked, list(block["channels"]), list(block["percentiles"]))


def _extra_due(block, step: int, due: bool) -> set:
    hist = block.get("histogram_every")
    return {"histograms"} if hist and step % int(hist) == 0 else set()  # W&B histograms


# No hook of its own: the trainer arms the recorder for the step's forward pass (no extra pass).
MEASUREMENT = register(Measurement(
    name="activations", prefix=ACT, also=(NL_IN,), split="train", extra_due=_extra_due,
    title="Activation percentiles (Ioffe & Szegedy 2015, Fig. 1)",
    paper="Ioffe, Szegedy, Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
          "Covariate Shift, ICML 2015",
))
