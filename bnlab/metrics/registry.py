"""LOCAL STAND-IN (branch lstm): the measurement registry interface of HELPER_SETUP.md, so that
bnlab/metrics/recurrent_stats.py can register and its tests run before r20-train's registry merges.
At merge, take r20-train's bnlab/metrics/registry.py and drop this file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    name: str    # its config block metrics.<name>; also the probe name in probes_due
    prefix: str  # every record key it writes starts with this
    title: str   # human name for figures and reports
    paper: str   # citation
    split: str   # record split its rows go to: "probe" or "train"


MEASUREMENTS: dict[str, Measurement] = {}


def register(m: Measurement) -> Measurement:
    MEASUREMENTS[m.name] = m
    return m


def owner(key: str) -> Measurement | None:
    return next((m for m in MEASUREMENTS.values() if key.startswith(m.prefix)), None)
