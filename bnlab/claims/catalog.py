"""The published claims bnlab judges, each registered with ``@claim`` beside the measure of one seed's effect.

Order here is the order of ``CLAIMS``, so of claims.json and claims.md.
"""

from __future__ import annotations

import math
import statistics

from bnlab.claims import stats
from bnlab.claims.medians import activation_drift, ics_median, landscape_medians
from bnlab.claims.registry import DIFFERENCE, LOG_RATIO, Eff, Skip, claim
from bnlab.records.store import Run

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
