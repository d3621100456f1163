"""Record keys read back for the figures, in the shapes the figures want.

Every parse here delegates to the parser that sits beside the key's builder in its metric module
(bnlab/metrics/*: one place builds a key, the same place parses it); the figures call these and
never match keys themselves.
"""

from __future__ import annotations

from bnlab.metrics import activations, curvature, divergence, gradnorms, ics


def parse_act_key(key: str) -> tuple[str, int, float] | None:
    """``act/<layer>/c<ch>/p<q>`` -> (layer, channel, percentile q) (activations.parse_percentile_key)."""
    parsed = activations.parse_percentile_key(key)
    return None if parsed is None or parsed[0] != "act" else parsed[1:]


def parse_layer_norm_key(key: str, kind: str) -> str | None:
    """``<kind>/<param>`` (kind: grad_norm or weight_norm) -> param (gradnorms' parsers)."""
    return {"grad_norm": gradnorms.parse_grad_key, "weight_norm": gradnorms.parse_weight_key}[kind](key)


def parse_eig_key(key: str) -> str | None:
    """``curvature/eig1@<mode>`` -> BN mode (curvature.parse_key)."""
    parsed = curvature.parse_key(key)
    return parsed[1] if parsed is not None and parsed[0] == "eig1" else None


def slq_weight_key(run: int, i: int, mode: str) -> str:
    """The weight key paired with an SLQ node key (curvature.slq_key)."""
    return curvature.slq_key(run, "weight", i, mode)


def parse_slq_node_key(key: str) -> tuple[int, int, str] | None:
    """``curvature/slq<run>_node<i>@<mode>`` -> (run, i, mode) (curvature.parse_slq_key)."""
    parsed = curvature.parse_slq_key(key)
    return None if parsed is None or parsed[1] != "node" else (parsed[0], parsed[2], parsed[3])


def parse_ics_key(key: str) -> tuple[str, str] | None:
    """``ics/<param>/<l2|cos>`` -> (param, l2 or cos) (ics.parse_key; the scale-free ``rel`` is not drawn)."""
    parsed = ics.parse_key(key)
    return parsed if parsed is not None and parsed[1] in ("l2", "cos") else None


def parse_init_key(key: str, kind: str) -> str | None:
    """``init/<kind>/<layer>`` -> layer (divergence.parse_init_key)."""
    parsed = divergence.parse_init_key(key)
    return parsed[1] if parsed is not None and parsed[0] == kind else None


def parse_ratio_key(key: str) -> float | None:
    """``divergence/ratio@<eta>`` -> eta (divergence.parse_ratio_key)."""
    return divergence.parse_ratio_key(key)
