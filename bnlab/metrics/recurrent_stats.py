"""Per-time-step statistics of an LSTM's recurrent pre-activations, and the gradient through time.

Cooijmans, Ballas, Laurent, Gulcehre & Courville 2016, "Recurrent Batch
Normalization": BN-LSTM keeps BN statistics PER TIME STEP because the
distribution of the hidden-to-hidden pre-activation a_t = W_h h_{t-1} changes
with t (h_{-1} = 0, so a_0 = 0 exactly; the first steps differ most), and
initializes gamma to 0.1 because with gamma = 1 the tanh saturates and the
gradient reaching early steps vanishes (their Fig. 1: ||dL/dh_t|| against t).

One probe, at w_t on the step's own batch, in training mode (batch statistics,
as the step itself), inside ``preserved`` (the trajectory stays bitwise
unchanged), one forward and one backward pass. Per LSTM layer l and time step t:

    hh_mean_u<u>  = (1/N) sum_n a_t[n, u]                 batch mean of unit u (``units``)
    hh_var_u<u>   = (1/N) sum_n (a_t[n, u] - mean)^2      biased batch variance of unit u
    hh_var_avg    = mean over the 4H units of the batch variance
    hh_mean_avg   = mean over the 4H units of |batch mean|
    grad_h        = ||dL/dh_t||_F over the batch (L the mean loss of the batch)

Record keys ``recurrent/l<l>/<stat>@t<t>`` (split "probe"); ``key`` builds one,
``parse_key`` reads it back.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from bnlab.metrics._state import preserved
from bnlab.metrics.registry import Measurement, register

UNITS = (0, 1, 2, 3)  # tracked units of W_h h_{t-1} when metrics.recurrent_stats.units is not set
STATS = ("hh_mean_avg", "hh_var_avg", "grad_h")  # plus hh_mean_u<u>, hh_var_u<u> per tracked unit
_KEY = re.compile(r"^recurrent/l(\d+)/(\w+?)@t(\d+)$")


def key(layer: int, stat: str, t: int) -> str:
    """``recurrent/l<layer>/<stat>@t<t>``, e.g. key(0, "hh_var_u3", 7) = "recurrent/l0/hh_var_u3@t7"."""
    return f"{MEASUREMENT.prefix}l{layer}/{stat}@t{t}"


def parse_key(k: str) -> tuple[int, str, int] | None:
    """(layer, stat, t) of a key built by ``key``; None for any other key."""
    m = _KEY.match(k)
    return None if m is None else (int(m.group(1)), m.group(2), int(m.group(3)))


def applies(model: nn.Module) -> bool:
    """Whether ``model`` can be traced (bnlab/lstm.py's SequenceLSTM): a no-op probe on the CNNs."""
    return hasattr(model, "trace") and hasattr(model, "layers")


def probe(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, units=UNITS) -> dict[str, float]:
    """The statistics above for every layer and time step (host floats, one sync); {} if not ``applies``."""
    if not applies(model):
        return {}
    names, values = [], []
    with preserved(model):
        model.train()
        model.trace = []
        try:
            with torch.enable_grad():
                loss = loss_fn(model(x), y)
                traces = model.trace
                hs = [h for trace in traces for _, _, h in trace]
                grads = iter(torch.autograd.grad(loss, hs))
        finally:
            model.trace = None
        for layer, trace in enumerate(traces):
            for t, hw, _ in trace:
                hw = hw.detach()
                mean, var = hw.mean(0), hw.var(0, correction=0)
                stats = {"hh_mean_avg": mean.abs().mean(), "hh_var_avg": var.mean(),
                         "grad_h": torch.linalg.vector_norm(next(grads))}
                for u in units:
                    if 0 <= u < hw.shape[1]:
                        stats[f"hh_mean_u{u}"], stats[f"hh_var_u{u}"] = mean[u], var[u]
                names += [key(layer, s, t) for s in stats]
                values += list(stats.values())
    return dict(zip(names, torch.stack(values).tolist())) if values else {}


def _at_w(p) -> dict[str, float]:
    """The registry's hook: ``probe`` on the step's batch, the tracked units from ``metrics.recurrent_stats.units``."""
    return probe(p.model, p.loss_fn, p.x, p.y, tuple(p.block.get("units") or UNITS))


MEASUREMENT = register(Measurement(
    name="recurrent_stats", prefix="recurrent/",
    title="Per-time-step statistics of the recurrent pre-activations (Cooijmans 2016)",
    paper="Cooijmans, Ballas, Laurent, Gulcehre & Courville 2016, Recurrent Batch Normalization",
    split="probe", at_w=_at_w))
