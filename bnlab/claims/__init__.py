"""``bnlab-claims DIR``: verdicts on published claims about BatchNorm, from run records only.

Each claim of docs/science.md that records can speak to reads its own
experiment(s) (``Claim.experiments``, or runs whose config names it in
``claims_tested``) and compares arms of one run (equal init, data order, lr,
batch and length). Runs of other experiments are ignored, never pooled; copies
and prefixes of one trajectory count once (``bnlab.claims.evidence``). Per seed, one
paired effect (a difference, or a log10 ratio); over seeds, an estimate and a
95% interval; the verdict compares the interval with the claim's margin
(``bnlab.claims.stats``; margins and their reasons in ``configs/claims/default.yaml``).
Time-series claims are judged early (first third of the run), late (last third)
and over the whole run. Every verdict carries the runs used and ignored (and
why), and the scale they were measured at.

Modules: ``registry`` (``@claim``, ``Claim``, ``Eff``, ``Skip``), ``catalog`` (the
claims and their measures), ``medians`` (the medians of probe records that
measures read), ``evidence`` (which runs count), ``stats`` (estimates, intervals,
verdicts), ``judge`` (``evaluate``), ``config`` (margins), ``text`` (table and
Markdown) and ``cli`` (``bnlab-claims``).
"""

from bnlab.claims import (
    catalog,  # noqa: F401  (registers every claim, in order)
    lstm,  # noqa: F401  (Cooijmans et al. 2016 on the LSTM, after the CNN claims)
)
from bnlab.claims.cli import main, run_cli
from bnlab.claims.config import default_config, load_config, margin_reasons
from bnlab.claims.judge import evaluate, evaluate_claim, with_display
from bnlab.claims.registry import CLAIMS, DIFFERENCE, LOG_RATIO, WINDOWS, Claim, Eff, Skip, claim, scale, sig
from bnlab.claims.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

__all__ = [
    "CLAIMS", "DIFFERENCE", "INCONCLUSIVE", "LOG_RATIO", "NOT_SUPPORTED", "SUPPORTED", "WINDOWS", "Claim", "Eff",
    "Skip", "claim", "default_config", "evaluate", "evaluate_claim", "load_config", "main", "margin_reasons",
    "run_cli", "scale", "sig", "with_display",
]
