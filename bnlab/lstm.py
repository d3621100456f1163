"""Recurrent arms on sequential CIFAR: LSTM, BN-LSTM, LN-LSTM (``model=lstm``).

An image batch (N, 3, 32, 32) is read as a sequence inside ``forward``
(``as_sequence``): time step t is image row t, its 96 features the row's
3 x 32 values (channel-major), so the data loader is the CNNs' one. An LSTM of
``model.layers`` layers of ``model.hidden`` units reads the 32 steps; a linear
head (``classifier``) maps the last hidden state to the logits.

One cell, four arms (the arm's norm kind picks the three normalizers):

- ``none``: the plain LSTM (Hochreiter & Schmidhuber 1997, with a forget gate)
      (f, i, o, g) = W_h h_{t-1} + W_x x_t + b
      c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
      h_t = sigmoid(o) * tanh(c_t)
- ``bn``: Cooijmans, Ballas, Laurent, Gulcehre & Courville 2016, "Recurrent
  Batch Normalization", eqs. 6-8 (SCIENCE.md sec. 10):
      (f, i, o, g) = BN_t(W_h h_{t-1}; gamma_h, 0) + BN_t(W_x x_t; gamma_x, 0) + b
      c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
      h_t = sigmoid(o) * tanh(BN_t(c_t; gamma_c, beta_c))
  BN_t normalizes each unit over the batch with the statistics of time step t
  (``SequenceBatchNorm``); gamma starts at ``model.gamma_init`` (0.1, the
  paper's: gamma = 1 saturates the tanh and the gradient vanishes), beta at 0;
  the two gate normalizers have no beta (b already shifts the gates).
- ``scratch_bn``: the same recurrent BN on bnlab's hand-derived BatchNorm
  (``norms.BatchNormFunction``: forward and backward written out).
- ``layer_norm``: Ba, Kiros & Hinton 2016, "Layer Normalization", LN-LSTM
  (their supplementary eqs.):
      (f, i, o, g) = LN(W_h h_{t-1}; a_1, b_1) + LN(W_x x_t; a_2, b_2) + b
      h_t = sigmoid(o) * tanh(LN(c_t; a_3, b_3))
  per sample over the 4H gate units (and the H cell units), gains 1 and
  biases 0 as in the paper (``model.gamma_init`` is BN's only).

Identical initial weights across arms: W_x, W_h (``wx``, ``wh``, bias-free
``nn.Linear``) and the head are the only randomly drawn tensors, in the same
module order in every arm, so ``init.initialize`` gives every arm the same
draws, as for the CNNs. The gate bias b (``bias``) is a plain parameter set at
construction: 0, except the forget gate's ``model.forget_bias`` (1.0; Gers,
Schmidhuber & Cummins 2000; Jozefowicz et al. 2015), the same in every arm.
The norm parameters are not random, so arms differ only by their norms.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bnlab import norms
from bnlab.errors import BnlabError

ARCH = "lstm"
KINDS = ("bn", "scratch_bn", "layer_norm", "none")  # the arms model=lstm builds
ORDERINGS = ("rows",)  # each image row is one time step (32 steps of 96 features)
FEATURES = 3 * 32  # features per time step: one CIFAR image row, 3 channels x 32 columns


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """An image batch (N, C, H, W) as a sequence (N, T=H, F=C*W): time step t is image row t."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


# --------------------------------------------------------------------------- per-time-step BN


class SequenceBatchNorm(nn.Module):
    """BatchNorm with statistics per time step (Cooijmans et al. 2016, Sec. 3), on (N, C) inputs.

    ``forward(x, t)``, training: x_hat = (x - mu_t) / sqrt(var_t + eps) with the
    batch mean and biased batch variance of THIS step's inputs, per unit;
    y = gamma * x_hat + beta (beta = 0 without ``shift``). gamma and beta are
    shared by all time steps; the statistics are not: the population of
    W_h h_{t-1} at t = 1 differs from that at t = 20 (bnlab/lstm_plots.py).
    Running averages per time step, rows of ``running_mean`` / ``running_var``
    (T_max, C), in PyTorch's convention (SCIENCE.md sec. 1: momentum, variance
    stored unbiased). Steps t >= T_max normalize with their own batch
    statistics in training and with row T_max - 1 in eval, as the paper does;
    only steps t < T_max update the running averages. Eval:
    y = gamma * (x - running_mean[t']) / sqrt(running_var[t'] + eps) + beta,
    t' = min(t, T_max - 1).

    ``scratch=False``: the batch-statistics forward is PyTorch's
    ``F.batch_norm``; ``scratch=True``: bnlab's hand-derived
    ``norms.BatchNormFunction`` (same numbers, its own backward).
    """

    def __init__(self, num_features: int, t_max: int, gamma_init: float, shift: bool, eps: float = 1e-5,
                 momentum: float = 0.1, scratch: bool = False):
        super().__init__()
        self.num_features, self.t_max, self.eps, self.momentum = int(num_features), int(t_max), float(eps), momentum
        self.scratch = scratch
        self.weight = nn.Parameter(torch.full((self.num_features,), float(gamma_init)))
        self.bias = nn.Parameter(torch.zeros(self.num_features)) if shift else None
        self.register_buffer("running_mean", torch.zeros(self.t_max, self.num_features))
        self.register_buffer("running_var", torch.ones(self.t_max, self.num_features))

    def extra_repr(self) -> str:
        return (f"{self.num_features}, t_max={self.t_max}, eps={self.eps}, momentum={self.momentum}, "
                f"shift={self.bias is not None}, scratch={self.scratch}")

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        slot = min(t, self.t_max - 1)
        if not self.training:
            x_hat = (x - self.running_mean[slot]) * torch.rsqrt(self.running_var[slot] + self.eps)
            return self._affine(x_hat)
        if x.shape[0] < 2:  # the unbiased running variance needs m - 1 > 0 (PyTorch raises the same)
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        update = t < self.t_max
        if not self.scratch:  # F.batch_norm updates the rows (views) of the running buffers in place
            rm, rv = (self.running_mean[slot], self.running_var[slot]) if update else (None, None)
            return F.batch_norm(x, rm, rv, self.weight, self.bias, True, self.momentum, self.eps)
        bias = self.bias if self.bias is not None else torch.zeros_like(self.weight)
        y, mean, var = norms.BatchNormFunction.apply(x, self.weight, bias, self.eps)
        if update:
            m = x.shape[0]
            with torch.no_grad():
                self.running_mean[slot].lerp_(mean, self.momentum)
                self.running_var[slot].lerp_(var * m / (m - 1), self.momentum)
        return y

    def _affine(self, x_hat: torch.Tensor) -> torch.Tensor:
        return x_hat * self.weight + (self.bias if self.bias is not None else 0)


class StepLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim (Ba et al. 2016) that takes, and ignores, the time step."""

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:  # noqa: ARG002  (same call as SequenceBatchNorm)
        return super().forward(x)


class StepIdentity(nn.Module):
    """No normalization (the plain LSTM's three 'normalizers')."""

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:  # noqa: ARG002
        return x


def step_norm(kind: str, num_features: int, shift: bool, model_cfg, norm_cfg) -> nn.Module:
    """The normalizer of one LSTM pre-activation (gates: shift=False; cell state: shift=True)."""
    if kind == "none":
        return StepIdentity()
    eps = float(norm_cfg.bn.eps)
    if kind == "layer_norm":
        return StepLayerNorm(num_features, eps=eps)
    return SequenceBatchNorm(num_features, int(model_cfg.t_max), float(model_cfg.gamma_init), shift, eps=eps,
                             momentum=float(norm_cfg.bn.momentum), scratch=kind == "scratch_bn")


# --------------------------------------------------------------------------- the network


class LSTMLayer(nn.Module):
    """One LSTM layer with per-arm normalizers (module docstring); gates ordered (f, i, o, g)."""

    def __init__(self, in_dim: int, hidden: int, kind: str, model_cfg, norm_cfg):
        super().__init__()
        self.hidden = hidden
        self.wx = nn.Linear(in_dim, 4 * hidden, bias=False)
        self.wh = nn.Linear(hidden, 4 * hidden, bias=False)
        b = torch.zeros(4 * hidden)
        b[:hidden] = float(model_cfg.forget_bias)
        self.bias = nn.Parameter(b)
        # Ba et al.'s LN-LSTM has a shift in all three normalizers; Cooijmans fixes beta_x = beta_h = 0
        gate_shift = kind == "layer_norm"
        self.norm_x = step_norm(kind, 4 * hidden, gate_shift, model_cfg, norm_cfg)
        self.norm_h = step_norm(kind, 4 * hidden, gate_shift, model_cfg, norm_cfg)
        self.norm_c = step_norm(kind, hidden, True, model_cfg, norm_cfg)

    def forward(self, seq: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        """(N, T, F) -> hidden states (N, T, H). ``trace``: append (t, W_h h_{t-1}, h_t) per step."""
        n, steps, _ = seq.shape
        xw = self.wx(seq)  # W_x x_t for every t in one matmul; BN_t still sees each step alone
        h = c = seq.new_zeros(n, self.hidden)
        out = []
        for t in range(steps):
            hw = self.wh(h)
            gates = self.norm_h(hw, t) + self.norm_x(xw[:, t], t) + self.bias
            f, i, o, g = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.norm_c(c, t))
            if trace is not None:
                trace.append((t, hw, h))
            out.append(h)
        return torch.stack(out, dim=1)


class SequenceLSTM(nn.Module):
    """``layers`` stacked ``LSTMLayer`` s on the image rows, a linear head on the last hidden state.

    ``trace``: None, or a list that ``forward`` fills with one list per layer of
    (t, W_h h_{t-1}, h_t) (bnlab/metrics/recurrent_stats.py sets it inside a probe).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, kind: str, model_cfg, norm_cfg, num_classes: int):
        super().__init__()
        self.in_dim = in_dim
        self.layers = nn.ModuleList(
            LSTMLayer(in_dim if k == 0 else hidden, hidden, kind, model_cfg, norm_cfg) for k in range(layers))
        self.classifier = nn.Linear(hidden, num_classes)
        self.trace: list | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] * x.shape[3] != self.in_dim:
            raise BnlabError(f"model=lstm reads image batches (N, 3, 32, 32) row by row ({self.in_dim} features a "
                             f"step), got a batch of shape {tuple(x.shape)}; use data=cifar10 or data=cifar100")
        seq = as_sequence(x)
        for layer in self.layers:
            trace = None
            if self.trace is not None:
                trace = []
                self.trace.append(trace)
            seq = layer(seq, trace)
        return self.classifier(seq[:, -1])


# --------------------------------------------------------------------------- factory and checks


def _int_at_least(model_cfg, key: str, low: int, example) -> int:
    v = model_cfg.get(key)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
        raise BnlabError(f"model.{key}={v} must be an integer >= {low}; pass e.g. model.{key}={example}")
    return v


def check(model_cfg, kind: str) -> None:
    """Raise BnlabError (one line, the key and its fix) for an impossible ``model=lstm`` setting or arm."""
    if kind not in KINDS:
        raise BnlabError(f"arms: model=lstm has no '{kind}' arm; choose from {', '.join(KINDS)}")
    _int_at_least(model_cfg, "hidden", 1, 128)
    _int_at_least(model_cfg, "layers", 1, 1)
    _int_at_least(model_cfg, "t_max", 1, 32)
    for key, example in (("gamma_init", 0.1), ("forget_bias", 1.0)):
        v = model_cfg.get(key)
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise BnlabError(f"model.{key}={v} must be a finite number; pass e.g. model.{key}={example}")
    if model_cfg.get("ordering") not in ORDERINGS:
        raise BnlabError(f"model.ordering={model_cfg.get('ordering')} is not known; choose from {', '.join(ORDERINGS)}")


def validate(cfg) -> None:
    """``model=lstm``'s checks before anything is written (config.validate calls it): every arm, every
    model key, and image data (the LSTM reads rows of images; data=gaussian gives vectors)."""
    if cfg.data.name == "gaussian":
        raise BnlabError("model=lstm reads images row by row, and data=gaussian gives vectors; "
                         "use data=cifar10, data=cifar100 or data=synthetic")
    for arm in cfg.arms:
        check(cfg.model, arm)


def build(model_cfg, kind: str, norm_cfg, num_classes: int) -> SequenceLSTM:
    """The LSTM of ``model_cfg`` (configs/model/lstm.yaml) with the arm ``kind``'s normalizers."""
    check(model_cfg, kind)
    width = float(model_cfg.get("width", 1.0))
    hidden = max(1, int(round(int(model_cfg.hidden) * width)))
    return SequenceLSTM(FEATURES, hidden, int(model_cfg.layers), kind, model_cfg, norm_cfg, num_classes)
