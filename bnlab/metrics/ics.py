"""Internal covariate shift, Santurkar et al. 2018, Definition 2.1.

For layer i of a k-layer network trained on batch B_t:

    G  = grad_{W_i} L(W_1^t, ..., W_k^t; B_t)
    G' = grad_{W_i} L(W_1^{t+1}, ..., W_{i-1}^{t+1}, W_i^t, ..., W_k^t; B_t)

i.e. the gradient of layer i after only the layers before it took their real
optimizer update (momentum and weight decay included, since W^{t+1} is what
the optimizer actually produced). ICS is reported as ||G - G'||_2 and
cos(G, G'). Beside the absolute ||G - G'||, its scale-free form

    rel = ||G - G'||_2 / ||G||_2

(docs/science.md sec. 9): ||G - G'|| scales with the gradient, so an arm that never
learns (near-zero gradients) shows near-zero ICS; comparisons between arms use
``rel``. Their finding: ICS is not smaller with BN (often larger), yet BN
trains better, so BN's benefit is not a reduction of ICS.

"Before layer i" means every parameter registered before W_i in
``model.named_parameters()`` (so BN's gamma/beta of earlier layers count as
earlier layers). Cost: one forward+backward per measured layer. All passes run
in training mode (batch statistics) and leave the model as found.
"""

from __future__ import annotations

import torch
from torch import nn

from bnlab.metrics._state import loss_and_grad, preserved
from bnlab.metrics.registry import Measurement, Probe, parse_layer_stat, register

PREFIX = "ics/"
STATS = ("l2", "cos", "rel")


def key(layer: str, stat: str) -> str:
    """Record key of one ICS statistic (``l2``, ``cos``, ``rel``) of a layer: ``ics/<layer>/<stat>``."""
    return f"{PREFIX}{layer}/{stat}"


def parse_key(k: str) -> tuple[str, str] | None:
    """(layer, stat) of a ``key``; None for any other key."""
    return parse_layer_stat(k, PREFIX, STATS)


def weight_layers(model: nn.Module) -> list[str]:
    """Parameter names of every conv/linear weight, in registration order."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))]


def auto_layers(model: nn.Module, count: int = 3) -> list[str]:
    """``count`` layers spread from early to last, skipping the first (its ICS is 0 by definition)."""
    names = weight_layers(model)
    if len(names) <= count:
        return names[1:]
    picks = sorted({round(j * (len(names) - 1) / count) for j in range(1, count + 1)})
    return [names[i] for i in picks]


def internal_covariate_shift(
    model: nn.Module,
    loss_fn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    weights_before: dict[str, torch.Tensor],
    grads_before: dict[str, torch.Tensor],
    layers: list[str],
) -> dict[str, dict[str, float]]:
    """ICS of each layer in ``layers`` for the update that produced the model's current weights.

    ``model`` holds W^{t+1} (after the optimizer step); ``weights_before`` maps
    parameter names to W^t and ``grads_before`` to G (gradients at W^t on this
    batch), for at least the parameters from the first measured layer onward.
    Returns ``{layer: {"l2": ||G - G'||, "cos": cos(G, G'), "rel": ||G - G'|| / ||G||}}``
    (``rel`` is inf or NaN when G = 0; records write it as null).
    """
    named = list(model.named_parameters())
    order = {n: i for i, (n, _) in enumerate(named)}
    out = {}
    with preserved(model):
        model.train()
        after = {n: p.detach().clone() for n, p in named}
        for layer in layers:
            if layer not in order:
                raise KeyError(f"{layer} is not a parameter of the model")
            with torch.no_grad():  # earlier layers at W^{t+1}, layer i and later at W^t
                for n, p in named:
                    p.copy_(after[n] if order[n] < order[layer] else weights_before[n])
            target = dict(named)[layer]
            with torch.enable_grad():
                (g_new,) = torch.autograd.grad(loss_fn(model(inputs), targets), [target])
            g_old = grads_before[layer]
            diff = torch.linalg.vector_norm(g_old - g_new)
            cos = torch.nn.functional.cosine_similarity(g_old.flatten(), g_new.flatten(), dim=0)
            out[layer] = torch.stack([diff, cos, diff / torch.linalg.vector_norm(g_old)])
    return {k: dict(zip(("l2", "cos", "rel"), v.tolist())) for k, v in out.items()}


def probe_layers(model: nn.Module, layers) -> list[str]:
    """The measured layers: ``auto_layers`` or the names in ``metrics.ics.layers``, trainable ones only."""
    grad_params = {n for n, p in model.named_parameters() if p.requires_grad}
    return [n for n in (auto_layers(model) if layers == "auto" else list(layers)) if n in grad_params]


def _before_step(p: Probe):
    """w_t, its gradient and the layers: what ICS needs once the optimizer has stepped (None: no layer)."""
    layers = probe_layers(p.model, p.block["layers"])
    if not layers:
        return None
    weights_before = {n: t.detach().clone() for n, t in p.model.named_parameters()}
    if p.loss is not None:  # the step's own fp32 gradient
        grads_before = {n: t.grad.detach().clone() for n, t in p.model.named_parameters() if t.grad is not None}
    else:  # a bf16/tf32 step's gradient is not the spec's: recompute it in fp32
        named = [(n, t) for n, t in p.model.named_parameters() if t.grad is not None]
        with preserved(p.model):
            _, g = loss_and_grad(p.model, p.loss_fn, p.x, p.y, [t for _, t in named])
        grads_before = {n: t for (n, _), t in zip(named, g)}
    return weights_before, grads_before, layers


def _after_step(p: Probe, state) -> dict:
    weights_before, grads_before, layers = state
    res = internal_covariate_shift(p.model, p.loss_fn, p.x, p.y, weights_before, grads_before, layers)
    # rel is scale-free: ||G - G'|| / ||G|| (bnlab-claims reads it)
    return {key(layer, stat): v[stat] for layer, v in res.items() for stat in STATS}


MEASUREMENT = register(Measurement(
    name="ics", prefix=PREFIX, split="probe", at_w=_before_step, after_step=_after_step,
    title="Internal covariate shift (Santurkar et al. 2018, Def. 2.1)",
    paper="Santurkar, Tsipras, Ilyas, Madry, How Does Batch Normalization Help Optimization?, NeurIPS 2018",
))
