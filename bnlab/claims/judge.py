"""Verdicts: per seed an effect, over seeds an estimate and interval, against the claim's margin."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from bnlab.claims import evidence, stats
from bnlab.claims.catalog import window_of
from bnlab.claims.config import default_config, load_config, margin_reasons
from bnlab.claims.registry import CLAIMS, LOG_RATIO, WINDOWS, Claim, Eff, Skip, scale, sig
from bnlab.records.store import Run, load_runs

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
