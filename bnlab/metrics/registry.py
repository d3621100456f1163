"""The measurements bnlab records, one registry for the trainer, config checks, plots and claims.

Each metric module registers its ``Measurement`` at import: the config block it
reads (``metrics.<name>``), the key prefixes of the record rows it writes, and,
for the trainer, how it measures (``at_w`` / ``after_step``). Its key builders
and their inverse parsers sit side by side in that module. The trainer's
schedule, ``bnlab.config.validate``, the bench and the post-hoc tools iterate
over ``MEASUREMENTS`` instead of repeating names; a new metric touches its own
module, its config block and its figure.

Hooks take a ``Probe``: the arm's model at w_t, the step's batch and what the
step already computed. ``at_w`` runs after the backward pass and before the
optimizer step; it returns record keys -> values (device tensors for split
"train", host floats for split "probe"). With ``after_step`` set, ``at_w``
returns a state instead (None: nothing to measure) that ``after_step`` turns
into rows once the optimizer has stepped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Probe:
    """What a measurement sees at a step of one arm (read-only; the model must be left as found)."""

    model: Any
    loss_fn: Callable
    x: Any
    y: Any
    grads: list | None  # the step's fp32 gradient (``.grad`` of the trainable parameters); None: recompute
    loss: Any  # the step's fp32 loss (0-d tensor); None: recompute
    lr: float  # the arm's learning rate at this step
    step: int
    due: frozenset  # every probe name due at this step
    block: Mapping  # this measurement's config block, plain values (no OmegaConf: arm threads read it)


@dataclass(frozen=True)
class Measurement:
    name: str  # its config block metrics.<name>; also the probe name in probes_due
    prefix: str  # every record key it writes starts with this (or one of ``also``), e.g. "landscape/"
    title: str  # human name for figures and reports, e.g. "Loss landscape (Santurkar 2018)"
    paper: str  # citation
    split: str  # record split its rows go to: "probe" or "train"
    also: tuple[str, ...] = ()  # further key prefixes it owns (e.g. "weight_norm/" beside "grad_norm/")
    at_w: Callable[[Probe], Any] | None = field(default=None, compare=False)
    after_step: Callable[[Probe, Any], dict] | None = field(default=None, compare=False)
    # more probe names due at a step beside ``name`` (e.g. "histograms"), from the block and the step
    extra_due: Callable[[Mapping, int, bool], set] | None = field(default=None, compare=False)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.prefix, *self.also)


MEASUREMENTS: dict[str, Measurement] = {}


def register(m: Measurement) -> Measurement:
    """Add ``m`` (its name and prefixes must be new) and return it."""
    if m.split not in ("probe", "train"):
        raise ValueError(f"measurement {m.name}: split must be 'probe' or 'train', not {m.split!r}")
    if MEASUREMENTS.get(m.name, m) != m:
        raise ValueError(f"measurement {m.name} is registered twice")
    taken = {p: other.name for other in MEASUREMENTS.values() if other.name != m.name for p in other.prefixes}
    clash = [p for p in m.prefixes if any(p.startswith(q) or q.startswith(p) for q in taken)]
    if clash:
        raise ValueError(f"measurement {m.name}: key prefix {clash[0]!r} overlaps another measurement's")
    MEASUREMENTS[m.name] = m
    return m


def owner(key: str) -> Measurement | None:
    """Which measurement a record key belongs to (None: a per-step quantity such as ``loss``)."""
    for m in MEASUREMENTS.values():
        if key.startswith(m.prefixes):
            return m
    return None


def every(block: Mapping | None) -> int | None:
    """A block's cadence in steps (``every``; null or a missing block: off)."""
    value = None if block is None else block.get("every")
    return int(value) if value else None


def parse_layer_stat(k: str, prefix: str, stats: tuple[str, ...]) -> tuple[str, str] | None:
    """(layer, stat) of a ``<prefix><layer>/<stat>`` key whose stat is one of ``stats``; None for any other key.

    The layer is everything up to the last ``/``: layer names hold dots and may hold slashes.
    """
    if not k.startswith(prefix):
        return None
    layer, _, stat = k[len(prefix):].rpartition("/")
    return (layer, stat) if layer and stat in stats else None
