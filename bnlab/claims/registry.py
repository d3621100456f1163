"""The ``@claim`` registry: a claim, its one-seed effect (``Eff``) or why there is none (``Skip``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from bnlab.records.store import Run

DIFFERENCE, LOG_RATIO = "difference", "log10 ratio"
WINDOWS = ("early", "late", "whole")


class Eff(NamedTuple):
    """One paired effect (on the claim's scale) and its standard error when known (accuracies)."""

    value: float
    se: float | None = None


class Skip(NamedTuple):
    """No effect from this run: a tie (``tie``; no evidence either way) or missing evidence."""

    tie: bool
    reason: str


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    paper: str
    experiments: tuple[str, ...]  # the experiments it reads (plus runs naming it in claims_tested)
    compares: str                 # what one comparison holds equal
    effect: str                   # one seed's effect, in words (oriented: the paper's direction is larger)
    scale: str                    # DIFFERENCE or LOG_RATIO
    margin: str                   # key of the margin in the claims config
    measure: Callable             # (run, cfg, window) -> Eff | Skip; with a grid: (runs of one grid, cfg) -> ...
    arms: tuple[str, ...] = ("bn", "none")
    grid: tuple[str, ...] = ()    # config keys one effect spans within a seed (an lr or batch grid)
    windowed: bool = False        # a time series: judged early, late and whole


CLAIMS: list[Claim] = []


def claim(cid, text, paper, experiments, compares, effect, scale, margin, **kw):
    def register(fn):
        CLAIMS.append(Claim(cid, text, paper, tuple(experiments), compares, effect, scale, margin, fn, **kw))
        return fn

    return register


def scale(runs: list[Run]) -> str:
    """The scale behind a verdict: runs, data, models, steps, seeds."""
    if not runs:
        return "no runs"
    data = {f"{r.summary['data']['name']} ({r.summary['data']['train_size']} train / "
            f"{r.summary['data']['test_size']} test)" for r in runs}
    models = {f"{r.summary['model']} x{r.summary['width']}" for r in runs}
    steps = sorted({r.summary["steps"] for r in runs})
    seeds = sorted({r.summary["seed"] for r in runs})
    return (f"{len(runs)} run(s); {', '.join(sorted(data))}; {', '.join(sorted(models))}; "
            f"steps {steps[0]}" + (f"-{steps[-1]}" if len(steps) > 1 else "") + f"; {len(seeds)} seed(s)")


def sig(x: float | None) -> float | None:
    """4 significant digits: readable in tables, precise enough for any ratio's size."""
    return None if x is None or not math.isfinite(x) else float(f"{x:.4g}")
