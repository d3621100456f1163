"""Measurement registry (minimal local copy of the issue-20 contract; r20-train's module replaces it at merge).

Each metric module registers what it writes: its config block, record key prefix, title, paper and split.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    name: str  # its config block metrics.<name>; also the probe name in probes_due
    prefix: str  # every record key it writes starts with this, e.g. "landscape/"
    title: str  # human name for figures and reports
    paper: str  # citation
    split: str  # record split its rows go to: "probe" or "train"


MEASUREMENTS: dict[str, Measurement] = {}


def register(m: Measurement) -> Measurement:
    MEASUREMENTS[m.name] = m
    return m


def owner(key: str) -> Measurement | None:
    """Which measurement a record key belongs to (None: a core key such as loss)."""
    return next((m for m in MEASUREMENTS.values() if key.startswith(m.prefix)), None)
