"""The batch-statistics norm layers written out in bnlab (bnlab/norms.py chooses among them by name).

- ``ScratchBatchNorm``: BN by hand, with a hand-derived backward pass (``BatchNormFunction``): the
  teaching reference (Ioffe & Szegedy 2015).
- ``GhostBatchNorm``: BN over consecutive sub-batches (Hoffer, Hubara & Soudry 2017).
- ``BatchRenorm``: Batch Renormalization (Ioffe 2017).

They keep PyTorch's parameter and buffer names (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``) so probes, checkpoints and ``init.initialize`` treat them
like ``nn.BatchNorm2d``, and accept (N, C) and (N, C, *) inputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------- helpers


def _reduce_dims(x: torch.Tensor) -> list[int]:
    """The dims a per-channel statistic reduces over: batch and every spatial dim (all but 1)."""
    return [0, *range(2, x.dim())]


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (C,) vector shaped (1, C, 1, ...) to broadcast against ``x``."""
    return v.view(1, -1, *([1] * (x.dim() - 2)))


def _elements_per_channel(x: torch.Tensor) -> int:
    """m: how many values one channel's batch statistics average over (N * H * W)."""
    return x.numel() // x.shape[1]


class _BatchStatNorm(nn.Module):
    """Shared state of the hand-written batch-statistics layers, laid out like ``nn.BatchNorm2d``.

    Parameters ``weight`` (gamma, 1) and ``bias`` (beta, 0); buffers
    ``running_mean`` (0), ``running_var`` (1) and ``num_batches_tracked`` (long, 0).
    Running averages follow PyTorch's convention (docs/science.md sec. 1):
    running = (1 - momentum) * running + momentum * batch, with the batch
    variance stored unbiased (times m / (m - 1)); momentum=None gives the
    cumulative average 1 / num_batches_tracked, as in PyTorch.
    Eval mode normalizes with the running statistics:
    y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
    """

    affine = True  # always learns gamma and beta (init.initialize resets them)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.weight = nn.Parameter(torch.ones(self.num_features))
        self.bias = nn.Parameter(torch.zeros(self.num_features))
        self.register_buffer("running_mean", torch.zeros(self.num_features))
        self.register_buffer("running_var", torch.ones(self.num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__} expects input (N, {self.num_features}, ...); got {tuple(x.shape)}"
            )

    @staticmethod
    def _check_batch(x: torch.Tensor) -> int:
        m = _elements_per_channel(x)
        if m < 2:  # the unbiased running variance needs m - 1 > 0 (PyTorch raises the same)
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        return m

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var_unbiased: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
        self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
        self.running_var.mul_(1 - f).add_(var_unbiased.detach(), alpha=f)

    def _eval_forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = (x - _per_channel(self.running_mean, x)) * torch.rsqrt(_per_channel(self.running_var, x) + self.eps)
        return _per_channel(self.weight, x) * x_hat + _per_channel(self.bias, x)


# --------------------------------------------------------------------------- scratch_bn


class BatchNormFunction(torch.autograd.Function):
    """BatchNorm's training-mode forward and its hand-derived backward (Ioffe & Szegedy 2015, Sec. 3).

    ``BatchNormFunction.apply(x, weight, bias, eps) -> (y, mean, var)``: ``y`` as
    ``x`` (N, C, ...); ``mean`` and biased ``var`` (C,) are the batch
    statistics (non-differentiable outputs, for the running averages). The
    derivation is in ``ScratchBatchNorm``'s docstring; per channel, with sums
    over the m = N * H * W values of that channel:

        dbeta  = sum(dy)
        dgamma = sum(dy * x_hat)
        dx     = gamma / sqrt(var + eps) / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

    Like PyTorch's kernel, forward saves x, gamma and the per-channel mean and
    1/sqrt(var + eps), not a full-size x_hat; backward rebuilds
    x_hat = (x - mean) / sqrt(var + eps) from them. The backward is plain tensor
    arithmetic, so autograd can differentiate it once more for Hessian-vector
    products (``metrics.curvature``): under ``create_graph=True`` (grad mode on
    inside backward) the statistics are recomputed from the saved x, so that
    the second derivative sees their dependence on x.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        dims = _reduce_dims(x)
        mean = x.mean(dims, keepdim=True)                  # mu = 1/m sum x
        xc = x - mean                                      # x - mu
        var = (xc * xc).mean(dims, keepdim=True)           # biased: 1/m sum (x - mu)^2
        invstd = torch.rsqrt(var + eps)                    # 1 / sqrt(var + eps)
        x_hat = xc * invstd
        y = _per_channel(weight, x) * x_hat + _per_channel(bias, x)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        mean_c, var_c = mean.reshape(-1), var.reshape(-1)
        ctx.mark_non_differentiable(mean_c, var_c)
        return y, mean_c, var_c

    @staticmethod
    def backward(ctx, dy: torch.Tensor, _dmean, _dvar):
        x, weight, mean, invstd = ctx.saved_tensors
        dims = _reduce_dims(x)
        if torch.is_grad_enabled():  # create_graph=True: keep the statistics' dependence on x
            mean = x.mean(dims, keepdim=True)
            invstd = torch.rsqrt(((x - mean) ** 2).mean(dims, keepdim=True) + ctx.eps)
        x_hat = (x - mean) * invstd
        m = _elements_per_channel(x)
        dbeta = dy.sum(dims)                                # sum(dy)
        dgamma = (dy * x_hat).sum(dims)                     # sum(dy * x_hat)
        dx = None
        if ctx.needs_input_grad[0]:
            scale = _per_channel(weight, x) * invstd / m     # gamma / sqrt(var + eps) / m
            dx = scale * (m * dy - _per_channel(dbeta, x) - x_hat * _per_channel(dgamma, x))
        return (
            dx,
            dgamma if ctx.needs_input_grad[1] else None,
            dbeta if ctx.needs_input_grad[2] else None,
            None,
        )


class ScratchBatchNorm(_BatchStatNorm):
    r"""Batch Normalization written from scratch (Ioffe & Szegedy 2015), a step-by-step reference.

    Same layer as ``nn.BatchNorm1d``/``nn.BatchNorm2d`` (inputs (N, C) or
    (N, C, H, W)), same parameters and buffers, but the forward and backward
    passes are spelled out in ``BatchNormFunction`` so each formula below sits
    next to its line of code. Constructor: ``(num_features, eps, momentum)``.

    Forward (training), for one channel c. Its m = N * H * W values
    x_1 .. x_m are normalized together (the batch and every spatial position
    share the channel's statistics, so a conv feature stays a convolution):

        (1) mu     = 1/m * sum_i x_i                       batch mean
        (2) xc_i   = x_i - mu                              centered input
        (3) var    = 1/m * sum_i xc_i^2                    biased batch variance
        (4) s      = 1 / sqrt(var + eps)                   inverse std, eps = 1e-5
        (5) x_hat_i = xc_i * s                             normalized: mean 0, var ~1
        (6) y_i    = gamma * x_hat_i + beta                learned scale and shift

    Computation graph (each node with the nodes it is computed from):

        mu    <- x                     (1)
        xc    <- x, mu                 (2)
        var   <- xc                    (3)
        s     <- var                   (4)
        x_hat <- xc, s                 (5)
        y     <- x_hat, gamma, beta    (6)

    so x reaches x_hat along three paths: x -> xc -> x_hat (directly),
    x -> mu -> xc -> ... (through the mean), and x -> xc -> var -> s -> x_hat
    (through the variance). The backward pass must add all three; this is
    the derivation of Ioffe & Szegedy's Sec. 3 written out in full.

    Backward. Given the upstream gradient dy_i = dL/dy_i, walk the graph in
    reverse, summing over every path (chain rule); sums run over i = 1..m.

    (a) From (6), y is affine in gamma and beta, and both are shared by the m
        values, so their gradients add up:
            dbeta  = sum_i dy_i
            dgamma = sum_i dy_i * x_hat_i
    (b) From (6), the gradient reaching x_hat:
            dx_hat_i = gamma * dy_i
    (c) Into var, through (5) and (4): x_hat_i = xc_i * (var + eps)^(-1/2), so
        d x_hat_i / d var = -1/2 * xc_i * (var + eps)^(-3/2) and
            dvar = sum_i dx_hat_i * xc_i * (-1/2) * (var + eps)^(-3/2)
                 = -1/2 * s^2 * sum_i dx_hat_i * x_hat_i
    (d) Into mu, through (2) directly and through (3):
            dmu = sum_i dx_hat_i * (-s)  +  dvar * (-2/m) * sum_i xc_i
        and sum_i xc_i = 0, so only the first term stays: dmu = -s * sum_i dx_hat_i.
    (e) Into x_i, three paths: through xc_i in (5) with weight s; through var
        with d var / d x_i = 2 * xc_i / m; through mu with d mu / d x_i = 1/m:
            dx_i = dx_hat_i * s  +  dvar * 2 * xc_i / m  +  dmu / m
        Substituting (c) and (d) and xc_i * s = x_hat_i:
            dx_i = s * dx_hat_i - (s/m) * x_hat_i * sum_j dx_hat_j * x_hat_j - (s/m) * sum_j dx_hat_j
                 = s/m * (m * dx_hat_i - sum_j dx_hat_j - x_hat_i * sum_j dx_hat_j * x_hat_j)
    (f) With (b), dx_hat = gamma * dy, and the sums of (a):
            dx_i = gamma / sqrt(var + eps) / m * (m * dy_i - dbeta - x_hat_i * dgamma)
                 = gamma / sqrt(var + eps) / m * (m * dy_i - sum_j dy_j - x_hat_i * sum_j dy_j * x_hat_j)

    Reading (f): dx is gamma * dy / sqrt(var + eps) with its mean and its
    component along x_hat removed (sum_i x_hat_i^2 = m * var / (var + eps)),
    so per channel sum_i dx_i = 0 and, up to a relative eps / (var + eps),
    sum_i dx_i * x_hat_i = 0: shifting or scaling a channel's input changes
    nothing downstream, which is BN's scale invariance (docs/science.md sec. 1).

    Running statistics (PyTorch's convention, used in eval mode):
        running_mean <- (1 - momentum) * running_mean + momentum * mu
        running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)
    and num_batches_tracked += 1 per training forward. Eval mode:
        y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if not self.training:
            return self._eval_forward(x)
        m = self._check_batch(x)
        y, mean, var = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        self._update_running(mean, var * m / (m - 1))
        return y


# --------------------------------------------------------------------------- ghost_bn


class GhostBatchNorm(_BatchStatNorm):
    """Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better", Alg. 1).

    Training: split the batch into consecutive ghost batches of
    ``ghost_batch_size`` samples (``torch.split``; the last one may be smaller)
    and apply BN to each with its own statistics and the shared gamma, beta:
    for ghost batch l, per channel,
        mu_l = mean(x^l), var_l = mean((x^l - mu_l)^2),
        y^l = gamma * (x^l - mu_l) / sqrt(var_l + eps) + beta.
    This keeps BN's noise at the level of a small batch while the optimizer
    step uses the whole batch. With ``ghost_batch_size`` >= the batch size
    there is one ghost batch and the layer is plain BN (same outputs,
    gradients and running statistics as ``nn.BatchNorm2d``).

    Running statistics, a choice of this implementation: one momentum update
    per forward (per optimizer step, as BN does) with the average over ghost
    batches of their means and of their unbiased variances,
        running_mean <- (1 - momentum) * running_mean + momentum * mean_l(mu_l)
        running_var  <- (1 - momentum) * running_var  + momentum * mean_l(var_l * m_l / (m_l - 1)),
    every ghost batch weighted equally (the paper's Algorithm 1 instead decays
    the running averages once per ghost batch); one update per step keeps
    ``momentum``'s horizon in optimizer steps the same as BN's.
    Each unbiased ghost variance estimates the population variance, so
    running_var does too (not the smaller spread within one ghost batch).
    Eval mode uses the running statistics, like BN. A ghost batch needs more
    than one value per channel (after a linear layer: >= 2 samples).
    """

    def __init__(self, num_features: int, ghost_batch_size: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__(num_features, eps, momentum)
        self.ghost_batch_size = int(ghost_batch_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch_size={self.ghost_batch_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if not self.training:
            return self._eval_forward(x)
        dims = _reduce_dims(x)
        outs, means, variances = [], [], []
        for chunk in torch.split(x, self.ghost_batch_size, dim=0):
            self._check_batch(chunk)
            # BN of one ghost batch with its own batch statistics (no running buffers touched)
            outs.append(F.batch_norm(chunk, None, None, self.weight, self.bias, True, 0.0, self.eps))
            with torch.no_grad():
                means.append(chunk.mean(dims))
                variances.append(chunk.var(dims, correction=1))
        self._update_running(torch.stack(means).mean(0), torch.stack(variances).mean(0))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


# --------------------------------------------------------------------------- batch_renorm


class BatchRenorm(_BatchStatNorm):
    """Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing
    Minibatch Dependence in Batch-Normalized Models", Algorithm 1).

    Training, per channel, with mu_B and the biased var_B of the batch and the
    running averages mu, sigma:

        sigma_B = sqrt(var_B + eps)
        sigma   = sqrt(running_var + eps)
        r = stop_gradient(clip(sigma_B / sigma, 1 / r_max, r_max))
        d = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
        x_hat = (x - mu_B) / sigma_B * r + d
        y = gamma * x_hat + beta

    r and d are constants for backprop (``detach``): the gradient flows through
    mu_B and sigma_B as in BN. When the clips are inactive, x_hat equals
    (x - mu) / sigma, the eval-mode output, so training sees what inference
    will. r_max = 1, d_max = 0 gives r = 1, d = 0: plain BN. Eval mode:
    y = gamma * (x - mu) / sigma + beta.

    Two departures from the paper, both documented choices: (1) the running
    averages are PyTorch's (``running_var`` unbiased, updated with
    ``momentum``; sigma derived from it) instead of the paper's update of
    sigma itself, so the layer's buffers mean what BN's do; (2) r_max and
    d_max are fixed (``norm.batch_renorm.r_max`` = 3, ``.d_max`` = 5, the
    paper's final values) rather than relaxed from 1 and 0 over training as
    in the paper's experiments.
    """

    def __init__(self, num_features: int, r_max: float = 3.0, d_max: float = 5.0, eps: float = 1e-5,
                 momentum: float | None = 0.1):
        super().__init__(num_features, eps, momentum)
        self.r_max, self.d_max = float(r_max), float(d_max)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r_max={self.r_max}, d_max={self.d_max}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if not self.training:
            return self._eval_forward(x)
        m = self._check_batch(x)
        dims = _reduce_dims(x)
        mu_b = x.mean(dims)
        var_b = x.var(dims, correction=0)
        sigma_b = torch.sqrt(var_b + self.eps)
        with torch.no_grad():
            sigma = torch.sqrt(self.running_var + self.eps)
            r = (sigma_b / sigma).clamp(1.0 / self.r_max, self.r_max)
            d = ((mu_b - self.running_mean) / sigma).clamp(-self.d_max, self.d_max)
        x_hat = (x - _per_channel(mu_b, x)) / _per_channel(sigma_b, x) * _per_channel(r, x) + _per_channel(d, x)
        y = _per_channel(self.weight, x) * x_hat + _per_channel(self.bias, x)
        self._update_running(mu_b, var_b * m / (m - 1))
        return y
