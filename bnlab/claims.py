"""``bnlab-claims DIR``: verdicts on published claims about BatchNorm, from run records only.

Each claim of ../shared/SCIENCE.md that records can speak to reads its own
experiment(s) (``Claim.experiments``, or runs whose config names it in
``claims_tested``) and compares arms of one run (equal init, data order, lr,
batch and length). Runs of other experiments are ignored, never pooled; copies
and prefixes of one trajectory count once (``bnlab.evidence``). Per seed, one
paired effect (a difference, or a log10 ratio); over seeds, an estimate and a
95% interval; the verdict compares the interval with the claim's margin
(``bnlab.stats``; margins and their reasons in ``configs/claims/default.yaml``).
Time-series claims are judged early (first third of the run), late (last third)
and over the whole run. Every verdict carries the runs used and ignored (and
why), and the scale they were measured at.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bnlab import evidence, posthoc, stats
from bnlab.analysis import activation_drift, ics_median, landscape_medians
from bnlab.claims_config import default_config, load_config, margin_reasons  # noqa: F401  (load_config re-exported)
from bnlab.errors import BnlabError
from bnlab.results import Run, dumps, load_runs
from bnlab.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED  # noqa: F401  (re-exported)

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


# ------------------------------------------------------------- measures ----


def final_acc(run: Run, arm: str) -> float | None:
    """Final test accuracy; a diverged arm is at chance (1 / classes) when the record names the classes."""
    a, classes = run.summary["arms"][arm], run.summary["data"].get("num_classes")
    return 1 / classes if a["diverged"] and classes else a["final_test_acc"]


def acc_diff(run: Run, a: str, b: str) -> Eff | Skip:
    """acc(a) - acc(b) with the binomial standard error of the difference on this test set."""
    pa, pb = final_acc(run, a), final_acc(run, b)
    if pa is None or pb is None:
        return Skip(False, "an arm has no final test accuracy")
    if run.summary["arms"][a]["diverged"] and run.summary["arms"][b]["diverged"]:
        return Skip(True, "both arms diverged")
    m = run.summary["data"]["test_size"]
    return Eff(pa - pb, math.hypot(stats.binomial_se(pa, m), stats.binomial_se(pb, m)))


def log_ratio(num: float | None, den: float | None, what: str) -> Eff | Skip:
    if num is None or den is None or num <= 0 or den <= 0:
        return Skip(False, f"no positive {what} in both arms")
    return Eff(math.log10(num / den))


def window_of(run: Run, name: str) -> tuple[float, float] | None:
    """Steps of a window: early = first third of the run, late = last third, whole = None."""
    n = run.summary["steps"]
    return {"early": (0, n / 3), "late": (2 * n / 3, n)}.get(name)


@claim("bn_higher_lr", "BN trains at a higher learning rate than no-BN",
       "Santurkar et al. 2018; Bjorck et al. 2018; Ioffe & Szegedy 2015", ["santurkar_fig1"],
       "bn vs none over an lr grid, one seed: equal init, data order, batch and length at each lr",
       "log10(largest lr at which bn trains / largest at which none trains); 'trains': not diverged and "
       "test acc >= trains_acc; an arm that trains at no lr counts as half the smallest lr",
       LOG_RATIO, "lr_min_ratio", grid=("optim.lr",))
def bn_higher_lr(runs, cfg):
    by_lr = {r.summary["lr"]: r for r in runs}
    if len(by_lr) < 2:
        return Skip(False, f"needs >= 2 learning rates, has {sorted(by_lr)}")

    def best(arm):
        ok = [lr for lr, r in by_lr.items() if not r.summary["arms"][arm]["diverged"]
              and (final_acc(r, arm) or 0) >= cfg["trains_acc"]]
        return max(ok, default=min(by_lr) / 2)

    bn, none = best("bn"), best("none")
    return Skip(True, f"both arms train up to the same lr {bn:g}") if bn == none else Eff(math.log10(bn / none))


@claim("bn_divergence_eta", "BN tolerates larger steps at initialization (divergence probe)", "Bjorck et al. 2018",
       ["init_sensitivity"], "bn vs none in one run at step 0: same weights up to BN, same batch",
       "log10(first eta with L(w - eta g)/L(w) > threshold, bn / none) at step 0, mean over the run's cells; "
       "an arm that never diverges on the grid counts as one grid step past its end",
       LOG_RATIO, "divergence_min_ratio")
def bn_divergence_eta(run, cfg, window=None):
    def first(arm):
        rows = [r for r in run.rows(arm, "probe", "divergence/first_divergent_eta") if r["step"] == 0]
        return rows[0]["divergence/first_divergent_eta"] if rows else False

    bn, none = first("bn"), first("none")
    if bn is False or none is False:
        return Skip(False, "no divergence probe at step 0")
    if bn == none:
        return Skip(True, "neither arm diverges on the grid" if bn is None else f"both diverge at eta {bn:g}")
    c = run.get("metrics.divergence", {}) or {}
    lo, hi, k = c.get("eta_min", 1e-5), c.get("eta_max", 1.0), c.get("points", 11)
    past_end = hi * (hi / lo) ** (1 / max(k - 1, 1))
    return Eff(math.log10((bn or past_end) / (none or past_end)))


@claim("bn_higher_accuracy", "BN reaches a higher final test accuracy", "Santurkar et al. 2018 (Fig. 1)",
       ["santurkar_fig1", "demo"], "bn vs none in one run: equal init, data order, lr, batch and length",
       "final test acc of bn - none (a diverged arm is at chance), mean over the run's cells", DIFFERENCE,
       "accuracy_margin")
def bn_higher_accuracy(run, cfg, window=None):
    return acc_diff(run, "bn", "none")


@claim("bn_faster_to_target", "BN reaches a target accuracy in fewer steps", "Ioffe & Szegedy 2015",
       ["santurkar_fig1", "demo"], "bn vs none in one run: equal init, data order, lr, batch and length",
       "log10(steps to target_acc of none / bn); an arm that never reaches it counts as the run's length + 1 "
       "(conservative); the same step (e.g. both at the last evaluation) is a tie", LOG_RATIO, "speedup_min_ratio")
def bn_faster_to_target(run, cfg, window=None):
    a, never = run.summary["arms"], run.summary["steps"] + 1
    bn, none = a["bn"]["steps_to_target"], a["none"]["steps_to_target"]
    if bn == none:
        return Skip(True, "neither arm reaches the target" if bn is None else f"both reach it at step {bn}")
    return Eff(math.log10(max(none or never, 1) / max(bn or never, 1)))


def _landscape(key: str):
    def measure(run, cfg, window=None):
        med = landscape_medians(run.dir, rows=run.metrics, min_step=window and window[0],
                                max_step=window and window[1])
        probes = min(med.get(a, {}).get("probes", 0) for a in ("bn", "none"))
        if probes < cfg["min_probes"]:
            return Skip(False, f"{probes} landscape probe(s) per arm in the window < min_probes {cfg['min_probes']}")
        return log_ratio(med["none"][key], med["bn"][key], key)

    return measure


LANDSCAPE_COMPARES = "bn vs none in one run, probed at the same steps on each arm's own batch of the same data order"
claim("landscape_band_smaller", "BN's loss landscape band along the gradient is smaller",
      "Santurkar et al. 2018 (Fig. 4a)", ["santurkar_fig4"], LANDSCAPE_COMPARES,
      "log10(none / bn) of the median over probes of (loss_max - loss_min) / L(w) (scale-free band)",
      LOG_RATIO, "landscape_min_ratio", windowed=True)(_landscape("loss_band_rel"))
claim("beta_eff_smaller", "BN's effective beta-smoothness is smaller", "Santurkar et al. 2018 (Fig. 4c)",
      ["santurkar_fig4"], LANDSCAPE_COMPARES, "log10(none / bn) of the median over probes of beta_eff",
      LOG_RATIO, "beta_min_ratio", windowed=True)(_landscape("beta_eff"))


@claim("noisy_bn_trains_like_bn", "Noisy BN trains about as well as BN", "Santurkar et al. 2018 (Fig. 2)",
       ["santurkar_noisy_bn"], "noisy_bn vs bn in one run: equal init, data order, lr, batch and length",
       "final test acc of noisy_bn - bn (above -noisy_bn_tolerance: about as well)", DIFFERENCE,
       "noisy_bn_tolerance", arms=("bn", "noisy_bn"))
def noisy_bn(run, cfg, window=None):
    return acc_diff(run, "noisy_bn", "bn")


@claim("ics_not_smaller_with_bn", "Internal covariate shift is not smaller with BN",
       "Santurkar et al. 2018 (Fig. 3)", ["santurkar_fig4"], LANDSCAPE_COMPARES,
       "log10(bn / none) of the median over probes and layers of ||G - G'|| / ||G|| (scale-free ICS)",
       LOG_RATIO, "ics_min_ratio", windowed=True)
def ics_not_smaller(run, cfg, window=None):
    (bn, pb), (none, pn) = (ics_median(run.metrics, a, "rel", window) for a in ("bn", "none"))
    if min(pb, pn) < cfg["min_probes"]:
        return Skip(False, f"{min(pb, pn)} probe(s) with ics/<layer>/rel per arm in the window < min_probes "
                           f"{cfg['min_probes']} (records before the scale-free ICS have none)")
    return log_ratio(bn, none, "relative ICS")


@claim("activations_drift_less", "BN's input to the nonlinearity drifts less over training",
       "Ioffe & Szegedy 2015 (Fig. 1)", ["ioffe_fig1"], "bn vs none in one run: equal init, data order and lr",
       "log10(none / bn) of the drift of the nonlinearity's input (nl_in/: BN's output in the BN arm) = "
       "(max - min of the p50 trace) / median (p85 - p15), mean over channels",
       LOG_RATIO, "drift_min_ratio", windowed=True)
def activations_drift(run, cfg, window=None):
    bn, none = (activation_drift(run.metrics, a, cfg["min_probes"], window) for a in ("bn", "none"))
    if bn is None and none is None and any(k.startswith("act/") for r in run.metrics for k in r):
        return Skip(False, "records before bnlab recorded the nonlinearity's input (nl_in/); rerun the experiment")
    return log_ratio(none, bn, "drift")


@claim("bn_needs_large_batches", "BN's advantage needs large batches", "Wu & He 2018", ["batch_size_dependence"],
       "bn vs group_norm over a batch grid, one seed: equal init and epochs, lr scaled with the batch",
       "(bn - group_norm test acc at the largest batch) - (the same at the smallest batch)", DIFFERENCE,
       "batch_margin", arms=("bn", "group_norm"), grid=("data.batch_size", "optim.lr"))
def bn_large_batches(runs, cfg):
    by_batch = {r.summary["batch_size"]: r for r in runs}
    if len(by_batch) < 2:
        return Skip(False, f"needs >= 2 batch sizes, has {sorted(by_batch)}")
    big, small = (acc_diff(by_batch[b], "bn", "group_norm") for b in (max(by_batch), min(by_batch)))
    if isinstance(big, Skip) or isinstance(small, Skip):
        return Skip(False, "an arm has no final accuracy at the largest or smallest batch")
    return Eff(big.value - small.value, math.hypot(big.se, small.se))


@claim("bn_only_beats_random", "Training only BN's gamma and beta beats training as many random weights",
       "Frankle, Schwab & Morcos 2021", ["bn_only_training"],
       "bn (only gamma/beta trained) vs bn-random (as many random weights) in one run",
       "final test acc of bn - bn-random", DIFFERENCE, "bn_only_margin", arms=("bn", "bn-random"))
def bn_only(run, cfg, window=None):
    if not run.get("train.only_norm_params"):
        return Skip(False, "train.only_norm_params is off")
    return acc_diff(run, "bn", "bn-random")


# ---------------------------------------------------- paper scale (issue 18) ----


def _resnets() -> dict[str, int]:
    """Blocks per stage of each CIFAR ResNet (imported late: bnlab-claims otherwise never loads torch)."""
    from bnlab.models import RESNET_DEPTHS

    return RESNET_DEPTHS


def _arch(run: Run) -> str:
    return run.get("model.arch") or run.summary["model"]


def depth(run: Run) -> int:
    """A CIFAR ResNet's depth, 6n + 2 (n blocks per stage), from the run's model."""
    return 6 * _resnets()[_arch(run)] + 2


def largest_stable_eta(run: Run, arm: str) -> float | None:
    """Median over the probed minibatches of the largest grid eta below the first divergent one.

    An arm that never diverges on the grid counts as eta_max; one that diverges at eta_min as one
    grid step below it. None: no divergence probe.
    """
    c = run.get("metrics.divergence", {}) or {}
    lo, hi, k = c.get("eta_min", 1e-5), c.get("eta_max", 10.0), c.get("points", 13)
    step = (hi / lo) ** (1 / max(k - 1, 1))
    firsts = [r["divergence/first_divergent_eta"] for r in run.rows(arm, "probe", "divergence/first_divergent_eta")]
    if not firsts:
        return None
    return statistics.median(hi if f is None else f / step for f in firsts)


def _depth_etas(runs: list[Run], arm: str) -> dict[int, float | None]:
    return {depth(r): largest_stable_eta(r, arm) for r in runs if _arch(r) in _resnets()}


BJORCK_COMPARES = "ResNets of several depths, one seed: the same data order, Kaiming init, probed at initialization"


@claim("bjorck_no_bn_eta_falls_with_depth", "Without BN, the largest stable step at initialization falls with depth",
       "Bjorck et al. 2018", ["bjorck_depth"], BJORCK_COMPARES,
       "log10(largest non-divergent eta of none at the shallowest depth / at the deepest), each the median over the "
       "probed minibatches of the grid step below the first eta with L(w - eta g)/L(w) > threshold",
       LOG_RATIO, "depth_eta_min_ratio", grid=("model.arch",))
def bjorck_falls_with_depth(runs, cfg):
    etas = _depth_etas(runs, "none")
    if len(etas) < 2 or None in etas.values():
        return Skip(False, f"needs divergence probes at >= 2 ResNet depths, has {sorted(etas)}")
    if etas[min(etas)] == etas[max(etas)]:
        return Skip(True, f"none's stable eta is {etas[min(etas)]:g} at depth {min(etas)} and {max(etas)} alike")
    return log_ratio(etas[min(etas)], etas[max(etas)], "stable eta")


@claim("bjorck_bn_eta_far_above_at_depth", "At the deepest ResNet, BN's largest stable step is far above no-BN's",
       "Bjorck et al. 2018", ["bjorck_depth"], BJORCK_COMPARES,
       "log10(largest non-divergent eta of bn / of none) at the deepest ResNet of the seed (ResNet-110)",
       LOG_RATIO, "divergence_min_ratio", grid=("model.arch",))
def bjorck_bn_far_above(runs, cfg):
    deepest = max((r for r in runs if _arch(r) in _resnets()), key=depth, default=None)
    if deepest is None:
        return Skip(False, "no ResNet run")
    bn, none = largest_stable_eta(deepest, "bn"), largest_stable_eta(deepest, "none")
    if bn is not None and bn == none:
        return Skip(True, f"both arms are stable up to eta {bn:g} at depth {depth(deepest)}")
    return log_ratio(bn, none, "stable eta")


def outlier_ratio(run: Run, arm: str, mode: str) -> dict[int, float]:
    """{probe step: |lambda_max| / bulk edge} of the SLQ measure in one BN mode (metrics/curvature.outliers)."""
    key = f"curvature/ratio@{mode}"
    return {r["step"]: r[key] for r in run.rows(arm, "probe", key)}


def _outlier_effect(run: Run, num: tuple[str, str], den: tuple[str, str]) -> Eff | Skip:
    """Mean over the probe steps both sides have of log10(ratio of ``num`` / ratio of ``den``) ((arm, mode) each)."""
    a, b = outlier_ratio(run, *num), outlier_ratio(run, *den)
    steps = sorted(set(a) & set(b))
    logs = [math.log10(a[s] / b[s]) for s in steps if a[s] > 0 and b[s] > 0]
    if not logs:
        return Skip(False, f"no SLQ outlier probe (curvature/ratio@) in {num[0]}@{num[1]} and {den[0]}@{den[1]}")
    return Eff(statistics.fmean(logs))


GHORBANI_COMPARES = "one run, both arms probed at the same steps (init, after a short training) on the step's batch"


@claim("outliers_without_bn", "Without BN the Hessian has isolated outliers far above the bulk; with BN "
       "(batch statistics) they are absent", "Ghorbani, Krishnan & Xiao 2019", ["ghorbani_spectrum"],
       GHORBANI_COMPARES, "log10(outlier ratio of none / of bn with batch statistics), outlier ratio = |lambda_max| / "
       "edge of the bulk (|eigenvalue| below which 99% of the SLQ measure lies), mean over the probe steps",
       LOG_RATIO, "outlier_min_ratio")
def outliers_without_bn(run, cfg, window=None):
    return _outlier_effect(run, ("none", "batch"), ("bn", "batch"))


@claim("outliers_return_with_running_stats", "With BN, the Hessian's outliers return when it uses running "
       "statistics", "Ghorbani, Krishnan & Xiao 2019", ["ghorbani_spectrum"], GHORBANI_COMPARES,
       "log10(outlier ratio of bn with running statistics / with batch statistics), same criterion, mean over the "
       "probe steps", LOG_RATIO, "outlier_min_ratio", arms=("bn",))
def outliers_return(run, cfg, window=None):
    return _outlier_effect(run, ("bn", "running"), ("bn", "batch"))


DLN_COMPARES = "bn vs none in one run of the deep linear network: equal init and data, probed at the same steps"
claim("dln_landscape_band_smaller",
      "In the deep linear network, BN's loss landscape band along the gradient is smaller",
      "Santurkar et al. 2018 (Fig. 4, DLN)", ["santurkar_dln"], DLN_COMPARES,
      "log10(none / bn) of the median over probes of (loss_max - loss_min) / L(w) (scale-free band)",
      LOG_RATIO, "landscape_min_ratio", windowed=True)(_landscape("loss_band_rel"))
claim("dln_beta_eff_smaller", "In the deep linear network, BN's effective beta-smoothness is smaller",
      "Santurkar et al. 2018 (Fig. 4, DLN)", ["santurkar_dln"], DLN_COMPARES,
      "log10(none / bn) of the median over probes of beta_eff", LOG_RATIO, "beta_min_ratio",
      windowed=True)(_landscape("beta_eff"))


# ---------------------------------------------------------------- judge ----


def seed_outcome(c: Claim, runs: list[Run], cfg: dict, window: str) -> Eff | Skip:
    """One seed's effect: the mean over its cells' effects (a cell: one run, or one grid of runs)."""
    if c.grid:
        grids = defaultdict(list)  # runs that differ only in the grid's keys (other settings held equal)
        for r in runs:
            grids[evidence.trajectory_key(r, c.grid)].append(r)
        outs = [c.measure(rs, cfg) for rs in grids.values()]
    else:
        outs = [c.measure(r, cfg, window_of(r, window)) for r in runs]
    effs = [o for o in outs if isinstance(o, Eff)]
    if not effs:
        ties = [o for o in outs if o.tie]
        return ties[0] if ties else outs[0]
    se = [e.se for e in effs]
    return Eff(statistics.fmean(e.value for e in effs),
               None if None in se else math.sqrt(sum(s * s for s in se)) / len(se))


def margin_value(c: Claim, cfg: dict) -> float:
    """The margin on the effect's scale (a ratio margin becomes log10; a tolerance a negative bound)."""
    m = cfg[c.margin]
    if c.scale == LOG_RATIO:
        return math.log10(m)
    return -m if c.margin == "noisy_bn_tolerance" else m


def disagree(windows: dict, margin: float) -> bool:
    """Windows disagree: different verdicts, or estimates on both sides of the margin (even when n is small)."""
    sides = {s["estimate"] > margin for s in windows.values() if s["estimate"] is not None}
    return len({s["verdict"] for s in windows.values()}) > 1 or len(sides) > 1


def judge_experiment(c: Claim, experiment: str, runs: list[Run], cfg: dict, root: Path) -> dict:
    """The claim on one experiment's runs: trajectories, per-seed effects, intervals per window."""
    ignored, usable = {}, []
    for r in runs:
        missing = [a for a in c.arms if a not in r.summary["arms"]]
        if missing:
            ignored[evidence.label(r, root)] = f"lacks arm(s) {', '.join(missing)}"
        else:
            usable.append(r)
    kept, copies = evidence.one_per_trajectory(usable, root)
    ignored.update(copies)
    by_seed = defaultdict(list)
    for r in kept:
        by_seed[r.summary["seed"]].append(r)
    margin = margin_value(c, cfg)
    windows = {}
    for w in WINDOWS if c.windowed else ("whole",):
        outcomes = {s: seed_outcome(c, rs, cfg, w) for s, rs in sorted(by_seed.items())}
        effs = {s: o for s, o in outcomes.items() if isinstance(o, Eff)}
        summary = stats.summarize([e.value for e in effs.values()], margin, cfg["min_seeds"], cfg["confidence"],
                                  cfg["bootstrap_resamples"])
        summary["per_seed"] = [{"seed": s, "value": sig(e.value), "se": sig(e.se),
                                "runs": [evidence.label(r, root) for r in by_seed[s]]} for s, e in effs.items()]
        summary["no_effect"] = {str(s): ("tie: " if o.tie else "no evidence: ") + o.reason
                                for s, o in outcomes.items() if isinstance(o, Skip)}
        if not effs and summary["no_effect"]:
            summary["reason"] = "no seed gave evidence: " + "; ".join(sorted(set(summary["no_effect"].values())))
        windows[w] = summary
    whole = windows["whole"]
    return {
        "experiment": experiment, "verdict": whole["verdict"], "n": whole["n"], "reason": whole["reason"],
        "per_seed": whole["per_seed"], "no_effect": whole["no_effect"], "estimate": sig(whole["estimate"]),
        "interval": _sig_all(whole["interval"]), "sign_test_p": sig(whole["sign_test_p"]),
        "margin_on_scale": sig(margin),
        "windows": {w: {"n": s["n"], "estimate": sig(s["estimate"]), "verdict": s["verdict"],
                        "interval": _sig_all(s["interval"]), "per_seed": [p["value"] for p in s["per_seed"]]}
                    for w, s in windows.items()} if c.windowed else {},
        "windows_disagree": disagree(windows, margin),
        "runs_used": [evidence.label(r, root) for r in kept], "runs_ignored": ignored, "_kept": kept,
    }


def _sig_all(xs: list | None) -> list | None:
    return None if xs is None else [sig(x) for x in xs]


def evaluate_claim(c: Claim, runs: list[Run], cfg: dict, root: Path) -> dict:
    """The claim's verdict on the experiment(s) it reads; every other run is listed as ignored, with why."""
    ignored, by_exp = {}, defaultdict(list)
    for r in runs:
        exp, how = evidence.experiment_of(r)
        if c.id in evidence.claims_tested(r):
            by_exp[exp or evidence.UNKNOWN].append(r)
        elif exp is None:
            ignored[evidence.label(r, root)] = f"experiment unknown ({how})"
        elif exp not in c.experiments:
            ignored[evidence.label(r, root)] = f"{evidence.OTHER_EXPERIMENT} {exp}"
        else:
            by_exp[exp].append(r)
    order = list(c.experiments)
    evals = sorted((judge_experiment(c, e, rs, cfg, root) for e, rs in by_exp.items()),
                   key=lambda ev: (-ev["n"], order.index(ev["experiment"]) if ev["experiment"] in order else 99))
    if not evals:
        evals = [{**judge_experiment(c, None, [], cfg, root),
                  "reason": f"no run of {', '.join(c.experiments)} (nor one naming this claim in claims_tested)"}]
    main, others = evals[0], evals[1:]
    for ev in others:
        for lab in ev["runs_used"]:
            ignored[lab] = f"experiment {ev['experiment']}: judged on its own (n = {ev['n']}, {ev['verdict']})"
    kept = main.pop("_kept")
    return {**main, "runs_ignored": {**ignored, **main["runs_ignored"]}, "runs": len(kept), "scale": scale(kept),
            "also": [{"experiment": ev["experiment"], "n": ev["n"], "verdict": ev["verdict"],
                      "estimate": ev["estimate"], "interval": ev["interval"]} for ev in others]}


def with_display(c: Claim, result: dict, cfg: dict) -> dict:
    """The claim's fields for readers: rule, margin and its reason, ratios shown as ratios."""
    ratio = c.scale == LOG_RATIO

    def shown(x):
        return None if x is None else sig(10 ** x) if ratio else sig(x)

    margin = f"{cfg[c.margin]:g}x" if ratio else f"{margin_value(c, cfg):g}"
    rule = (f"per seed: {c.effect}. SUPPORTED when the {cfg['confidence']:.0%} interval of the mean over seeds "
            f"lies above {margin} and the exact sign test of the seeds agrees (p <= {1 - cfg['confidence']:.2g}), "
            f"NOT SUPPORTED when both say below; >= {cfg['min_seeds']} seeds")
    numbers = {"n": result["n"], "estimate": shown(result["estimate"]), "margin": margin,
               "interval": None if result["interval"] is None else [shown(x) for x in result["interval"]],
               "per_seed": [shown(p["value"]) for p in result["per_seed"]]}
    if any(p["se"] is not None for p in result["per_seed"]):
        numbers["per_seed_binomial_se"] = [p["se"] for p in result["per_seed"]]
    default = default_config()[c.margin]
    reason = margin_reasons().get(c.margin, "")
    if cfg[c.margin] != default:
        reason = f"set by --config (the default {default:g}: {reason})"
    return {"id": c.id, "claim": c.text, "paper": c.paper, "experiments": list(c.experiments),
            "compares": c.compares, "effect": c.effect, "measure": c.scale, "rule": rule,
            "margin": cfg[c.margin], "margin_reason": reason, **result, "numbers": numbers}


# ----------------------------------------------------------------- driver ----


def evaluate(root: Path, cfg: dict | None = None, runs: list[Run] | None = None) -> list[dict]:
    """Every claim's verdict for ``runs`` (default: the runs at or below ``root``)."""
    cfg = cfg or load_config()
    runs = load_runs(root) if runs is None else runs
    return [with_display(c, evaluate_claim(c, runs, cfg, Path(root)), cfg) for c in CLAIMS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnlab-claims", description=__doc__.split("\n")[0])
    ap.add_argument("path", type=Path, help="a run or multirun directory (or a folder of them)")
    ap.add_argument("--config", type=Path, help="claim thresholds (default: configs/claims/default.yaml)")
    ap.add_argument("--out", type=Path, help="where claims.json and claims.md go (default: PATH)")
    args = ap.parse_args(argv)
    return posthoc.main("bnlab-claims", lambda: run_cli(args))


def run_cli(args) -> None:
    """Check the config and the output folder, then read the runs, judge, print and write."""
    from bnlab.claims_text import print_table, to_markdown

    if args.config and not args.config.is_file():
        raise BnlabError(f"--config {args.config} does not exist; pass a YAML file of thresholds")
    cfg = load_config(args.config)
    out = args.out or args.path
    fix = "free space, or pass --out DIR to write claims.json and claims.md elsewhere"
    if out.exists() and not out.is_dir():
        raise BnlabError(f"--out {out} is a file; bnlab-claims writes claims.json and claims.md into a "
                         f"directory: pass a directory")
    runs = posthoc.usable_runs(args.path, "bnlab-claims")
    posthoc.check_writable(out, fix)
    results = evaluate(args.path, cfg, runs)
    print_table(results)
    for name, text in (("claims.json", dumps(results, indent=2) + "\n"), ("claims.md", to_markdown(results))):
        print(posthoc.write_text(out / name, text, fix))


if __name__ == "__main__":
    sys.exit(main())
