"""Record keys read back: each parse in one small function (None: not such a key).

Each belongs beside its builder in the metric module that writes the key (named
on each function); the figures call these and never match keys themselves.
"""

from __future__ import annotations

import re

_ACT = re.compile(r"^act/(?P<layer>.+)/c(?P<ch>\d+)/p(?P<q>[0-9.]+)$")
_EIG = re.compile(r"^curvature/eig1@(?P<mode>\w+)$")
_ICS = re.compile(r"^ics/(?P<param>.+)/(?P<m>l2|cos)$")
_SLQ_NODE = re.compile(r"^curvature/slq(?P<run>\d+)_node(?P<i>\d+)@(?P<mode>\w+)$")
DIVERGENCE_RATIO = "divergence/ratio@"


def parse_act_key(key: str) -> tuple[str, int, float] | None:
    """``act/<layer>/c<ch>/p<q>`` -> (layer, channel, percentile q). Belongs in metrics/activations.py."""
    m = _ACT.match(key)
    return (m["layer"], int(m["ch"]), float(m["q"])) if m else None


def parse_layer_norm_key(key: str, kind: str) -> str | None:
    """``<kind>/<param>`` (kind: grad_norm or weight_norm) -> param. Belongs in metrics/gradnorms.py
    (its parse_grad_key / parse_weight_key)."""
    return key[len(kind) + 1:] if key.startswith(f"{kind}/") else None


def parse_eig_key(key: str) -> str | None:
    """``curvature/eig1@<mode>`` -> BN mode. Belongs in metrics/curvature.py."""
    m = _EIG.match(key)
    return m["mode"] if m else None


def slq_weight_key(run: int, i: int, mode: str) -> str:
    """The weight key paired with ``slq_node``'s node key. Belongs in metrics/curvature.py (slq_key)."""
    return f"curvature/slq{run}_weight{i}@{mode}"


def parse_slq_node_key(key: str) -> tuple[int, int, str] | None:
    """``curvature/slq<run>_node<i>@<mode>`` -> (run, i, mode). Belongs in metrics/curvature.py."""
    m = _SLQ_NODE.match(key)
    return (int(m["run"]), int(m["i"]), m["mode"]) if m else None


def parse_ics_key(key: str) -> tuple[str, str] | None:
    """``ics/<param>/<l2|cos>`` -> (param, l2 or cos). Belongs in metrics/ics.py."""
    m = _ICS.match(key)
    return (m["param"], m["m"]) if m else None


def parse_init_key(key: str, kind: str) -> str | None:
    """``init/<kind>/<layer>`` -> layer. Belongs in metrics/divergence.py (parse_init_key)."""
    prefix = f"init/{kind}/"
    return key[len(prefix):] if key.startswith(prefix) else None


def parse_ratio_key(key: str) -> float | None:
    """``divergence/ratio@<eta>`` -> eta. Belongs in metrics/divergence.py (parse_ratio_key)."""
    return float(key.split("@", 1)[1]) if key.startswith(DIVERGENCE_RATIO) else None
