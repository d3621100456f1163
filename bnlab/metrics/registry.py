"""Minimal local copy of the measurement registry's interface (r20-plots worktree only, to run its tests).

r20-train's bnlab/metrics/registry.py replaces this file at merge.
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
    for m in MEASUREMENTS.values():
        if key.startswith(m.prefix):
            return m
    return None
