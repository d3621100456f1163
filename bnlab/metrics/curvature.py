"""Curvature of L(w; B): Hessian-vector products, top eigenvalues, trace, spectral density.

H = d^2 L(w; B) / dw^2 over every trainable parameter (``p.requires_grad``) of
one arm, on one batch B. H is never formed: everything is built on the
Hessian-vector product (Pearlmutter 1994) by double backward,
H v = d/dw (grad L(w) . v), with the gradient graph built once per call and
reused for every product.

- Top eigenvalues by Lanczos with full reorthogonalization (Lanczos 1950;
  Golub & Van Loan, Matrix Computations, sec. 10.1): an orthonormal basis
  Q_j of the Krylov space span{q, Hq, ..., H^{j-1} q} and the tridiagonal
  T_j = Q_j^T H Q_j, whose eigenvalues (Ritz values) approach the extreme
  eigenvalues of H after a few tens of products.
- Power iteration with deflation, PyHessian's default (Yao et al. 2020):
  v <- H v / ||H v|| projected off the eigenvectors already found; the
  Rayleigh quotient v^T H v converges to the eigenvalue of largest magnitude
  at rate |lambda_2 / lambda_1| per product. The baseline Lanczos beats.
- Trace by Hutchinson's estimator (Hutchinson 1989): tr(H) = E[v^T H v] for
  Rademacher v (entries +-1 with equal probability).
- Spectral density by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao
  2019; PyHessian): for a random unit start q and m Lanczos steps,
  T_m = U diag(theta) U^T gives the quadrature nodes theta_i with weights
  tau_i = U[0, i]^2, and phi(t) ~ mean over runs of
  sum_i tau_i N(t; theta_i, sigma^2).

BN mode (docs/science.md sec. 5). Ghorbani et al. find that BN removes the large
outlier eigenvalues only when the Hessian is taken with batch statistics
(``bn_mode="batch"``, train mode); with population statistics the outliers
return. PyHessian computes in eval mode (``bn_mode="running"``). Every
function takes ``bn_mode`` so each number records which one it used, and
leaves the model bitwise as it found it (``_state.preserved``).
"""

from __future__ import annotations

import collections
from contextlib import contextmanager

import torch
from torch import nn

from bnlab.metrics._state import preserved, trainable
from bnlab.metrics.registry import Measurement, register

BN_MODES = ("batch", "running")
PREFIX = "curvature/"


def key(quantity: str, mode: str) -> str:
    """Record key of a quantity in a BN mode: ``curvature/eig1@batch``, ``curvature/trace@running``..."""
    return f"{PREFIX}{quantity}@{mode}"


def parse_key(k: str) -> tuple[str, str] | None:
    """(quantity, mode) of a ``key`` (SLQ nodes and weights included); None for any other key."""
    if not k.startswith(PREFIX) or "@" not in k:
        return None
    quantity, _, mode = k[len(PREFIX):].rpartition("@")
    return (quantity, mode) if quantity and mode in BN_MODES else None


def slq_key(run: int, part: str, i: int, mode: str) -> str:
    """Record key of node or weight ``i`` (``part``: "node" or "weight") of SLQ run ``run``."""
    return key(f"slq{run}_{part}{i}", mode)


def parse_slq_key(k: str) -> tuple[int, str, int, str] | None:
    """(run, part, i, mode) of an ``slq_key``; None for any other key."""
    parsed = parse_key(k)
    if parsed is None or not parsed[0].startswith("slq"):
        return None
    head, _, tail = parsed[0][3:].partition("_")
    part = "node" if tail.startswith("node") else "weight" if tail.startswith("weight") else None
    if part is None or not head.isdigit() or not tail[len(part):].isdigit():
        return None
    return int(head), part, int(tail[len(part):]), parsed[1]
# Lanczos stops when the new residual is this small relative to the largest
# ||H q_j|| seen (an estimate of ||H||): the Krylov space is invariant and the
# Ritz values are exact. Float64 round-off; a float32 model's residual stays
# above it, so Lanczos just runs on to its step limit (at most the dimension).
_INVARIANT = 1e3 * torch.finfo(torch.float64).eps
# Default SLQ broadening, in grid cells: wide enough for the trapezoid rule to
# integrate each Gaussian to ~1e-6, narrow enough to resolve the spectrum.
_SIGMA_CELLS = 5.0


@contextmanager
def bn_probe(model: nn.Module, bn_mode: str):
    """Evaluate with BN in ``bn_mode`` and restore the model bitwise afterwards.

    "batch": train mode, BN normalizes with the statistics of the batch (the
    running statistics it updates on the way are put back). "running": eval
    mode, BN uses its running (population) statistics.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode={bn_mode!r} is not one of {BN_MODES}")
    with preserved(model):
        model.train(bn_mode == "batch")
        yield


class _Hessian:
    """v -> H v at the current weights; one gradient graph serves every product."""

    def __init__(self, model, loss_fn, inputs, targets):
        self.params = trainable(model)
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
        # a gradient that does not depend on w contributes a zero row of H
        self._rows = [i for i, g in enumerate(grads) if g.requires_grad]
        self._grads = [grads[i] for i in self._rows]
        self.dim = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.hvps = 0

    def __call__(self, vec: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v = d/dw (g . v) by double backward, keeping the gradient graph."""
        self.hvps += 1
        hv = torch.autograd.grad(
            self._grads,
            self.params,
            grad_outputs=[vec[i] for i in self._rows],
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        return [h.detach() for h in hv]

    def flat(self, v: torch.Tensor) -> torch.Tensor:
        """H v on the flattened parameter vector."""
        return _flatten(self(_unflatten(v, self.params)))


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    chunks = torch.split(flat, [p.numel() for p in like])
    return [c.view_as(p) for c, p in zip(chunks, like)]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _gaussian(g: torch.Generator, hess: _Hessian) -> torch.Tensor:
    """N(0, I) in the parameters' dimension and dtype, drawn on the CPU generator."""
    return torch.randn(hess.dim, generator=g, dtype=hess.dtype).to(hess.device)


def _rademacher(g: torch.Generator, hess: _Hessian) -> torch.Tensor:
    """Entries +-1 with probability 1/2 each."""
    return (torch.randint(0, 2, (hess.dim,), generator=g) * 2 - 1).to(hess.device, hess.dtype)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


def _report(values: list[float], hvps: int, converged: bool, bn_mode: str, return_info: bool):
    if not return_info:
        return values
    return values, {"hvps": hvps, "converged": converged, "bn_mode": bn_mode}


def _close(new: float, old: float | None, tol: float) -> bool:
    """|new - old| <= tol |new|: the value moved by less than ``tol`` relative since the last iteration."""
    return old is not None and abs(new - old) <= tol * abs(new)


def _settled(new: list[float], old: list[float] | None, tol: float) -> bool:
    return old is not None and len(new) == len(old) and all(_close(a, b, tol) for a, b in zip(new, old))


# ----------------------------------------------------------------- Lanczos ----


def _lanczos(matvec, start: torch.Tensor, steps: int):
    """Lanczos with full reorthogonalization (Golub & Van Loan, Alg. 10.1.1 + reorth.).

    q_1 = start / ||start||; step j: w = H q_j, alpha_j = q_j^T w, then w is
    orthogonalized against all of Q_j twice ("twice is enough", Parlett), which
    subsumes the three-term recurrence w - alpha_j q_j - beta_{j-1} q_{j-1};
    beta_j = ||w||, q_{j+1} = w / beta_j. Yields (T_j, exact) after each of at
    most ``steps`` products, T_j as a float64 matrix; ``exact`` marks the last
    step when the Krylov space is invariant (beta_j ~ 0 or j = dim), where the
    Ritz values are eigenvalues of H.
    """
    if steps < 1:
        raise ValueError(f"Lanczos needs at least one step, got {steps}")
    basis, alphas, betas, norm_h = [_unit(start)], [], [], 0.0
    for j in range(min(steps, start.numel())):
        w = matvec(basis[-1])
        alphas.append(float(basis[-1] @ w))
        norm_h = max(norm_h, float(torch.linalg.vector_norm(w)))  # ||H q_j|| <= ||H||
        q = torch.stack(basis)
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = float(torch.linalg.vector_norm(w))
        exact = beta <= _INVARIANT * norm_h or j + 1 == start.numel()
        yield _tridiagonal(alphas, betas), exact
        if exact:
            return
        betas.append(beta)
        basis.append(w / beta)


def _tridiagonal(alphas: list[float], betas: list[float]) -> torch.Tensor:
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    return t


def _lanczos_top(matvec, start: torch.Tensor, k: int, tol: float, steps: int) -> tuple[list[float], bool]:
    """The k largest Ritz values once they stop moving (relative change < tol), and whether they did."""
    top = None
    for t, exact in _lanczos(matvec, start, steps):
        new = torch.linalg.eigvalsh(t).flip(0)[:k].tolist()
        if exact or _settled(new, top, tol):
            return new, True
        top = new
    return top, False


def top_eigenvalues(
    model, loss_fn, inputs, targets, k=1, bn_mode="batch", tol=1e-3, max_hvps=100, seed=0, return_info=False
):
    """The k largest (algebraic) eigenvalues of H, largest first, by Lanczos.

    Starts from a Gaussian vector drawn from ``torch.Generator().manual_seed(seed)``
    and stops when each of the top-k Ritz values changes by less than ``tol``
    relative between two steps, after ``max_hvps`` products, or when the Krylov
    space is exhausted. Single-vector Lanczos sees each distinct eigenvalue
    once, so a multiple eigenvalue is reported once and fewer than k values come
    back only if H has fewer than k distinct eigenvalues. With ``return_info``:
    (values, {"hvps", "converged", "bn_mode"}).
    """
    with bn_probe(model, bn_mode):
        hess = _Hessian(model, loss_fn, inputs, targets)
        start = _gaussian(_generator(seed), hess)
        values, converged = _lanczos_top(hess.flat, start, k, tol, max_hvps)
    return _report(values, hess.hvps, converged, bn_mode, return_info)


# ----------------------------------------------------------------- power ----


def _deflate(v: torch.Tensor, found: list[torch.Tensor]) -> torch.Tensor:
    for u in found:
        v = v - (u @ v) * u
    return v


def _power(matvec, start: torch.Tensor, found: list[torch.Tensor], tol: float, budget: int):
    """PyHessian's loop: v <- deflate(v)/||.||, lambda = v^T H v, v <- H v; stop when lambda settles.

    Returns (lambda, unit eigenvector estimate, converged).
    """
    v, value = start, None
    for _ in range(budget):
        v = _unit(_deflate(v, found))
        hv = matvec(v)
        new = float(v @ hv)
        if _close(new, value, tol):
            return new, v, True
        value, v = new, hv
    return value, _unit(_deflate(v, found)), False


def power_iteration(
    model, loss_fn, inputs, targets, k=1, bn_mode="batch", tol=1e-3, max_hvps=1000, seed=0, return_info=False
):
    """k eigenvalues of H by power iteration with deflation (PyHessian's default method).

    Each eigenvalue starts from a fresh Gaussian vector (one generator seeded
    with ``seed``), is iterated in the orthogonal complement of the
    eigenvectors already found, and stops when its Rayleigh quotient changes by
    less than ``tol`` relative; each gets ``max_hvps // k`` products at most.
    Values come in the order found: decreasing magnitude, not algebraic order.
    With ``return_info``: (values, {"hvps", "converged", "bn_mode"}).
    """
    with bn_probe(model, bn_mode):
        hess = _Hessian(model, loss_fn, inputs, targets)
        g = _generator(seed)
        values, found, converged = [], [], True
        for _ in range(k):
            value, vec, ok = _power(hess.flat, _gaussian(g, hess), found, tol, max(1, max_hvps // k))
            values.append(value)
            found.append(vec)
            converged = converged and ok
    return _report(values, hess.hvps, converged, bn_mode, return_info)


# ----------------------------------------------------------- trace, SLQ ----


def hvp(model, loss_fn, inputs, targets, vec, bn_mode="batch") -> list[torch.Tensor]:
    """H v for ``vec``, a list of tensors shaped like the trainable parameters."""
    with bn_probe(model, bn_mode):
        return _Hessian(model, loss_fn, inputs, targets)(list(vec))


def hutchinson_trace(model, loss_fn, inputs, targets, num_samples=100, bn_mode="batch", seed=0) -> dict:
    """tr(H) ~ mean of v^T H v over ``num_samples`` Rademacher v (Hutchinson 1989).

    Returns {"trace", "stderr" (sample std / sqrt(n)), "samples", "bn_mode"}.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples={num_samples} must be >= 2 to estimate a standard error")
    with bn_probe(model, bn_mode):
        hess = _Hessian(model, loss_fn, inputs, targets)
        g = _generator(seed)
        probes = (_rademacher(g, hess) for _ in range(num_samples))
        samples = torch.tensor([float(v @ hess.flat(v)) for v in probes], dtype=torch.float64)
    return {
        "trace": float(samples.mean()),
        "stderr": float(samples.std() / num_samples**0.5),
        "samples": num_samples,
        "bn_mode": bn_mode,
    }


def _quadrature(matvec, start: torch.Tensor, steps: int) -> tuple[list[float], list[float]]:
    """Gauss quadrature from m Lanczos steps: nodes theta_i = eig(T_m), weights tau_i = U[0, i]^2."""
    (t, _), = collections.deque(_lanczos(matvec, start, steps), maxlen=1)  # the last T_m of the run
    theta, u = torch.linalg.eigh(t)
    return theta.tolist(), (u[0] ** 2).tolist()


def _broadened(nodes: list[list[float]], weights: list[list[float]], grid_size: int, sigma: float | None):
    """phi(t) = mean over runs of sum_i tau_i N(t; theta_i, sigma^2) on a grid that holds its mass.

    The grid spans the extreme nodes plus 4 sigma and 1% of their range on each
    side, so the density integrates to 1 and covers every node.
    """
    lo, hi = min(min(n) for n in nodes), max(max(n) for n in nodes)
    span = (hi - lo) or max(abs(hi), 1.0)
    sigma = sigma or _SIGMA_CELLS * span / grid_size
    margin = 4 * sigma + 0.01 * span
    grid = torch.linspace(lo - margin, hi + margin, grid_size, dtype=torch.float64)
    theta = torch.tensor([x for n in nodes for x in n], dtype=torch.float64)
    tau = torch.tensor([x for w in weights for x in w], dtype=torch.float64) / len(nodes)
    gauss = torch.exp(-0.5 * ((grid[:, None] - theta) / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)
    return grid, gauss @ tau, sigma


def spectral_density(
    model, loss_fn, inputs, targets, num_runs=3, lanczos_steps=30, bn_mode="batch", seed=0, grid_size=500, sigma=None
) -> dict:
    """Eigenvalue density of H by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    Each of ``num_runs`` runs starts Lanczos from a normalized Rademacher
    vector and takes ``lanczos_steps`` steps. ``sigma`` (the Gaussian
    broadening) defaults to 5 grid cells of the node range. Returns {"grid",
    "density", "nodes", "weights" (per run), "sigma", "bn_mode"}; the
    density integrates to 1 on the grid (trapezoid rule).
    """
    if sigma is not None and sigma <= 0:
        raise ValueError(f"sigma={sigma} must be > 0 (or None for the default)")
    with bn_probe(model, bn_mode):
        hess = _Hessian(model, loss_fn, inputs, targets)
        g = _generator(seed)
        runs = [
            _quadrature(hess.flat, _rademacher(g, hess), lanczos_steps) for _ in range(num_runs)
        ]
    nodes, weights = [n for n, _ in runs], [w for _, w in runs]
    grid, density, sigma = _broadened(nodes, weights, grid_size, sigma)
    return {
        "grid": grid.tolist(),
        "density": density.tolist(),
        "nodes": nodes,
        "weights": weights,
        "sigma": sigma,
        "bn_mode": bn_mode,
    }


def outliers(nodes: list[list[float]], weights: list[list[float]], mass: float = 0.99) -> dict:
    """Ghorbani et al.'s outliers from an SLQ measure (``spectral_density``'s nodes and weights per run).

    The criterion, fixed before any measurement: the edge of the bulk is the |eigenvalue| below which
    ``mass`` of the spectral measure lies (runs averaged); ``lambda_max`` is the Ritz value of largest
    magnitude (Lanczos finds the extremes first; an outlier may be negative); ``ratio`` = |lambda_max| /
    edge (>= 1), None when the edge is not > 0.
    An isolated outlier carries a weight of order 1/P (P parameters), far below 1 - mass, so it never
    moves the edge: a large ratio means eigenvalues far above the bulk.
    """
    pairs = sorted((abs(n), w / len(nodes)) for ns, ws in zip(nodes, weights) for n, w in zip(ns, ws))
    total, cum, edge = sum(w for _, w in pairs), 0.0, pairs[-1][0]
    for value, w in pairs:
        cum += w
        if cum >= mass * total:
            edge = value
            break
    top = max((n for ns in nodes for n in ns), key=abs)
    return {"lambda_max": top, "bulk_edge": edge, "ratio": abs(top) / edge if edge > 0 else None}


def record(model, x, y, c, loss_fn) -> dict:
    """Top Hessian eigenvalue(s), and optionally the trace and SLQ, per BN mode in ``c["bn_modes"]``."""
    out = {}
    for mode in c["bn_modes"]:
        try:
            out.update(_record_mode(model, x, y, c, mode, loss_fn))
        except torch.linalg.LinAlgError:  # a non-finite Hessian (weights on their way to divergence)
            out[key("eig1", mode)] = float("nan")  # is a recorded result, not a crash
    return out


def _record_mode(model, x, y, c, mode: str, loss_fn) -> dict:
    out = {}
    values, info = top_eigenvalues(model, loss_fn, x, y, k=int(c["k"]), bn_mode=mode, tol=float(c["tol"]),
                                   max_hvps=int(c["max_hvps"]), return_info=True)
    for i, v in enumerate(values):
        out[key(f"eig{i + 1}", mode)] = v
    out[key("hvps", mode)] = info["hvps"]
    if c["trace_samples"]:
        tr = hutchinson_trace(model, loss_fn, x, y, int(c["trace_samples"]), bn_mode=mode)
        out[key("trace", mode)], out[key("trace_stderr", mode)] = tr["trace"], tr["stderr"]
    if c.get("slq_runs"):
        out.update(_slq_record(model, x, y, c, mode, loss_fn))
    return out


def _slq_record(model, x, y, c, mode: str, loss_fn) -> dict:
    """SLQ spectral measure (Ghorbani et al. 2019) in one BN mode: its outlier summary, and its nodes and
    weights per Lanczos run (``slq_key``), from which bnlab-plot draws the density."""
    dens = spectral_density(model, loss_fn, x, y, num_runs=int(c["slq_runs"]), lanczos_steps=int(c["slq_steps"]),
                            bn_mode=mode)
    res = outliers(dens["nodes"], dens["weights"], float(c["bulk_mass"]))
    out = {key(k, mode): v for k, v in res.items() if v is not None}
    for r, (nodes, weights) in enumerate(zip(dens["nodes"], dens["weights"])):
        out.update({slq_key(r, "node", i, mode): v for i, v in enumerate(nodes)})
        out.update({slq_key(r, "weight", i, mode): v for i, v in enumerate(weights)})
    return out


MEASUREMENT = register(Measurement(
    name="curvature", prefix=PREFIX, split="probe",
    at_w=lambda p: record(p.model, p.x, p.y, p.block, p.loss_fn),
    title="Hessian curvature (top eigenvalues, trace, spectral density)",
    paper="Ghorbani, Krishnan, Xiao, An Investigation into Neural Net Optimization via Hessian Eigenvalue "
          "Density, ICML 2019",
))
