"""``bnlab-claims DIR``: verdicts on published claims about BatchNorm, from run records only.

Each claim of ../shared/SCIENCE.md that records can speak to is a rule: a
function of the runs under DIR and the thresholds in ``configs/claims/default.yaml``.
A verdict is SUPPORTED, NOT SUPPORTED, or INCONCLUSIVE when the records lack
the evidence (no runs with the needed arms, probes, learning rates or batch
sizes). Every verdict carries the numbers behind it and the scale they were
measured at (runs, seeds, data set size, steps, models), so a small CPU-scale
result is never mistaken for the paper's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path

import yaml

from bnlab import posthoc
from bnlab.analysis import landscape_medians
from bnlab.errors import BnlabError
from bnlab.results import Run, dumps, finite, load_runs

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "SUPPORTED", "NOT SUPPORTED", "INCONCLUSIVE"
CLAIMS = []


def claim(cid: str, text: str, paper: str):
    def register(fn):
        CLAIMS.append((cid, text, paper, fn))
        return fn

    return register


def verdict(v: str, rule: str, numbers: dict, runs: list[Run]) -> dict:
    return {"verdict": v, "rule": rule, "numbers": numbers, "scale": scale(runs), "runs": len(runs)}


def scale(runs: list[Run]) -> str:
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
    return None if x is None else float(f"{x:.4g}")


def with_arms(runs: list[Run], *arms: str) -> list[Run]:
    return [r for r in runs if all(a in r.summary["arms"] for a in arms)]


def acc(run: Run, arm: str) -> float | None:
    a = run.summary["arms"][arm]
    return None if a["diverged"] else a["final_test_acc"]


def paired(runs: list[Run], better, rule: str, cfg: dict, arm_a="bn", arm_b="none") -> dict:
    """A per-pair comparison counted over runs: SUPPORTED if BN wins in min_pair_fraction of them."""
    pairs = [(r, better(r)) for r in with_arms(runs, arm_a, arm_b)]
    pairs = [(r, w) for r, w in pairs if w is not None]
    if not pairs:
        return verdict(INCONCLUSIVE, rule, {"pairs": 0}, [])
    wins = sum(1 for _, w in pairs if w)
    frac = wins / len(pairs)
    v = SUPPORTED if frac >= cfg["min_pair_fraction"] else NOT_SUPPORTED
    return verdict(v, rule + f" in >= {cfg['min_pair_fraction']:.0%} of pairs",
                   {"pairs": len(pairs), "bn_wins": wins, "fraction": sig(frac)}, [r for r, _ in pairs])


# ------------------------------------------------------------------ claims ----


@claim("bn_higher_lr", "BN trains at a higher learning rate than no-BN",
       "Santurkar et al. 2018; Bjorck et al. 2018; Ioffe & Szegedy 2015")
def bn_higher_lr(runs, cfg):
    rule = (f"largest lr at which an arm trains (no divergence, test acc >= {cfg['trains_acc']}) "
            "is higher for bn than for none")
    groups = defaultdict(list)
    for r in with_arms(runs, "bn", "none"):
        groups[r.summary["lr"]].append(r)
    if len(groups) < 2:
        return verdict(INCONCLUSIVE, rule + " (needs runs at >= 2 learning rates)", {"lrs": sorted(groups)},
                       [r for rs in groups.values() for r in rs])

    def trains(arm, rs):  # in every seed at that lr
        return all((a := acc(r, arm)) is not None and a >= cfg["trains_acc"] for r in rs)

    best = {arm: max([lr for lr, rs in groups.items() if trains(arm, rs)], default=None) for arm in ("bn", "none")}
    used = [r for rs in groups.values() for r in rs]
    if best["bn"] is None:
        return verdict(NOT_SUPPORTED, rule, {"max_lr_bn": None, "max_lr_none": best["none"],
                                             "lrs": sorted(groups)}, used)
    v = SUPPORTED if best["none"] is None or best["bn"] > best["none"] else NOT_SUPPORTED
    return verdict(v, rule, {"max_lr_bn": best["bn"], "max_lr_none": best["none"], "lrs": sorted(groups)}, used)


@claim("bn_divergence_eta", "BN tolerates larger steps at initialization (divergence probe)",
       "Bjorck et al. 2018")
def bn_divergence_eta(runs, cfg):
    rule = "at step 0 the first step size eta with L(w - eta g)/L(w) > threshold is larger for bn (none = never)"

    def first(run, arm):
        rows = [r for r in run.rows(arm, "probe", "divergence/first_divergent_eta") if r["step"] == 0]
        if not rows:
            return None
        return rows[0]["divergence/first_divergent_eta"] or float("inf")

    def better(run):
        bn, none = first(run, "bn"), first(run, "none")
        if bn is None or none is None or bn == none == float("inf"):
            return None  # no probe, or neither arm diverged on the grid: no evidence
        return bn > none

    return paired(runs, better, rule, cfg)


@claim("bn_higher_accuracy", "BN reaches a higher final test accuracy", "Santurkar et al. 2018 (Fig. 1)")
def bn_higher_accuracy(runs, cfg):
    def better(run):
        bn, none = acc(run, "bn"), acc(run, "none")
        if bn is None:
            return False
        return none is None or bn > none

    return paired(runs, better, "final test accuracy of bn > none (a diverged arm loses)", cfg)


@claim("bn_faster_to_target", "BN reaches a target accuracy in fewer steps", "Ioffe & Szegedy 2015")
def bn_faster_to_target(runs, cfg):
    def better(run):
        a = run.summary["arms"]
        bn, none = a["bn"]["steps_to_target"], a["none"]["steps_to_target"]
        if bn is None and none is None:
            return None  # neither reached it: no evidence either way
        return none is None or (bn is not None and bn < none)

    return paired(runs, better, "steps to summary.target_acc (test) smaller for bn; never = infinite", cfg)


def ratio_verdict(ratios: list[float], used: list, rule: str, threshold: float, ratio_key: str, empty_key: str,
                  strict: bool = False, **numbers) -> dict:
    """The median of per-run ratios against ``threshold`` (``>=``, or ``>`` when ``strict``).

    INCONCLUSIVE with ``{empty_key: 0}`` when no run had the evidence, never SUPPORTED.
    """
    if not ratios:
        return verdict(INCONCLUSIVE, rule, {empty_key: 0}, [])
    ratio = statistics.median(ratios)
    ok = ratio > threshold if strict else ratio >= threshold
    return verdict(SUPPORTED if ok else NOT_SUPPORTED, rule, {ratio_key: sig(ratio), **numbers}, used)


def _landscape(runs, cfg, key, what):
    rule = (f"median over probes of {what}: none / bn >= {cfg['landscape_min_ratio']} "
            f"(>= {cfg['min_probes']} probes per arm)")
    ratios, used = [], []
    for r in with_arms(runs, "bn", "none"):
        med = landscape_medians(r.dir)
        if all(med.get(a, {}).get("probes", 0) >= cfg["min_probes"] and med[a][key] for a in ("bn", "none")):
            ratios.append(med["none"][key] / med["bn"][key])
            used.append(r)
    return ratio_verdict(ratios, used, rule, cfg["landscape_min_ratio"], "ratio_none_over_bn", "runs_with_probes",
                         per_run=[sig(x) for x in ratios])


@claim("landscape_band_smaller", "BN's loss landscape band along the gradient is smaller",
       "Santurkar et al. 2018 (Fig. 4a)")
def landscape_band_smaller(runs, cfg):
    return _landscape(runs, cfg, "loss_band", "loss_max - loss_min")


@claim("beta_eff_smaller", "BN's effective beta-smoothness is smaller", "Santurkar et al. 2018 (Fig. 4c)")
def beta_eff_smaller(runs, cfg):
    return _landscape(runs, cfg, "beta_eff", "beta_eff")


@claim("noisy_bn_trains_like_bn", "Noisy BN trains about as well as BN", "Santurkar et al. 2018 (Fig. 2)")
def noisy_bn(runs, cfg):
    tol = cfg["noisy_bn_tolerance"]
    rule = f"final test acc of noisy_bn >= bn - {tol} in every run with both arms"
    rs = with_arms(runs, "bn", "noisy_bn")
    if not rs:
        return verdict(INCONCLUSIVE, rule, {"runs": 0}, [])
    gaps = [(acc(r, "bn") or 0.0) - (acc(r, "noisy_bn") or 0.0) for r in rs]
    v = SUPPORTED if all(g <= tol for g in gaps) else NOT_SUPPORTED

    def batch_stats_acc(run, arm):  # the same test set, normalized with batch statistics (noise off)
        rows = run.rows(arm, "test", "acc_batch_stats")
        return rows[-1]["acc_batch_stats"] if rows else None

    bs = [(batch_stats_acc(r, "bn"), batch_stats_acc(r, "noisy_bn")) for r in rs]
    return verdict(v, rule, {"acc_gap_bn_minus_noisy": [sig(g) for g in gaps],
                             "acc_batch_stats_bn_noisy": [[sig(a), sig(b)] for a, b in bs]}, rs)


@claim("ics_not_smaller_with_bn", "Internal covariate shift is not smaller with BN",
       "Santurkar et al. 2018 (Fig. 3)")
def ics_not_smaller(runs, cfg):
    rule = (f"median over probes and layers of ||G - G'||: bn / none >= {cfg['ics_min_ratio']} "
            f"(>= {cfg['min_probes']} probes per arm)")

    def med(run, arm, suffix):
        vals = [v for r in run.rows(arm, "probe") for k, v in r.items()
                if k.startswith("ics/") and k.endswith(suffix) and finite(v)]
        return statistics.median(vals) if vals else None

    def probes(run, arm):
        return sum(1 for x in run.rows(arm, "probe") if any(k.startswith("ics/") for k in x))

    ratios, cos, used = [], [], []
    for r in with_arms(runs, "bn", "none"):
        bn, none = med(r, "bn", "/l2"), med(r, "none", "/l2")
        if not bn or not none or min(probes(r, "bn"), probes(r, "none")) < cfg["min_probes"]:
            continue
        ratios.append(bn / none)
        cos.append((med(r, "bn", "/cos"), med(r, "none", "/cos")))
        used.append(r)
    return ratio_verdict(ratios, used, rule, cfg["ics_min_ratio"], "ratio_bn_over_none", "runs_with_ics",
                         median_cos_bn_none=[[sig(a), sig(b)] for a, b in cos])


@claim("activations_drift_less", "BN's pre-activation percentiles drift less over training",
       "Ioffe & Szegedy 2015 (Fig. 1)")
def activations_drift(runs, cfg):
    rule = (f"drift = (max - min over training of the p50 trace) / median of (p85 - p15), averaged over tracked "
            f"channels; none / bn > {cfg['drift_min_ratio']}")

    def drift(run, arm):
        keys = sorted({k[: -len("/p50")] for r in run.rows(arm, "train") for k in r if k.endswith("/p50")})
        ds = []
        for base in keys:
            rows = run.rows(arm, "train", f"{base}/p50")
            p50 = [r[f"{base}/p50"] for r in rows]
            spread = statistics.median(r[f"{base}/p85"] - r[f"{base}/p15"] for r in rows)
            if len(p50) >= cfg["min_probes"] and spread > 0:
                ds.append((max(p50) - min(p50)) / spread)
        return statistics.mean(ds) if ds else None

    ratios, used = [], []
    for r in with_arms(runs, "bn", "none"):
        bn, none = drift(r, "bn"), drift(r, "none")
        if bn is not None and none is not None and bn > 0:
            ratios.append(none / bn)
            used.append(r)
    return ratio_verdict(ratios, used, rule, cfg["drift_min_ratio"], "drift_ratio_none_over_bn",
                         "runs_with_activations", strict=True)


@claim("bn_needs_large_batches", "BN's advantage needs large batches", "Wu & He 2018")
def bn_large_batches(runs, cfg):
    ref = "group_norm" if with_arms(runs, "bn", "group_norm") else "none"
    rule = (f"bn - {ref} final test accuracy at the largest batch exceeds that at the smallest batch by "
            f">= {cfg['batch_margin']} (mean over seeds; needs >= 2 batch sizes)")
    by_batch = defaultdict(list)
    for r in with_arms(runs, "bn", ref):
        by_batch[r.summary["batch_size"]].append((acc(r, "bn") or 0.0) - (acc(r, ref) or 0.0))
    used = with_arms(runs, "bn", ref)
    if len(by_batch) < 2:
        return verdict(INCONCLUSIVE, rule, {"batch_sizes": sorted(by_batch)}, used)
    adv = {b: sig(statistics.mean(v)) for b, v in sorted(by_batch.items())}
    big, small = max(adv), min(adv)
    v = SUPPORTED if adv[big] - adv[small] >= cfg["batch_margin"] else NOT_SUPPORTED
    return verdict(v, rule, {"reference_arm": ref, "bn_advantage_by_batch": adv}, used)


@claim("bn_only_beats_random", "Training only BN's gamma and beta beats training as many random weights",
       "Frankle, Schwab & Morcos 2021")
def bn_only(runs, cfg):
    rule = f"final test acc of bn (only gamma/beta) > bn-random + {cfg['bn_only_margin']} in every run"
    rs = [r for r in with_arms(runs, "bn", "bn-random") if r.get("train.only_norm_params")]
    if not rs:
        return verdict(INCONCLUSIVE, rule, {"runs": 0}, [])
    pairs = [(acc(r, "bn") or 0.0, acc(r, "bn-random") or 0.0) for r in rs]
    v = SUPPORTED if all(a > b + cfg["bn_only_margin"] for a, b in pairs) else NOT_SUPPORTED
    small = [r.summary["arms"]["bn"].get("final_gamma_frac_below_0.01") for r in rs]
    return verdict(v, rule, {"acc_bn_only_vs_random": [[sig(a), sig(b)] for a, b in pairs],
                             "gamma_frac_below_0.01": small}, rs)


# ----------------------------------------------------------------- driver ----


# thresholds that are counts, and those that are fractions of runs; every other one is any finite number
COUNT_KEYS = ("min_probes",)
FRACTION_KEYS = ("min_pair_fraction",)


def _default_config() -> dict:
    return yaml.safe_load((resources.files("bnlab.configs") / "claims/default.yaml").read_text())


def load_config(path: Path | None = None) -> dict:
    """The thresholds: the defaults, overridden by the keys of the YAML file ``path``.

    BnlabError (one line) for a file that is not YAML or not a mapping, an unknown key, or a
    threshold that is not a finite number (a count must be a positive integer, a fraction in [0, 1]).
    """
    cfg = _default_config()
    if path is None:
        return cfg
    where = f"--config {path}"
    try:
        given = yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        what = f"line {mark.line + 1}: {getattr(exc, 'problem', '')}" if mark else exc.__class__.__name__
        raise BnlabError(f"{where} is not a readable YAML file ({what}); fix it or pass another file") from None
    if not isinstance(given, dict):
        raise BnlabError(f"{where} must be a mapping of thresholds (e.g. 'min_probes: 5'), not "
                         f"{type(given).__name__}; see configs/claims/default.yaml")
    for key, value in given.items():
        if key not in cfg:
            raise BnlabError(f"{where}: unknown threshold {key!r}; known: {', '.join(cfg)}")
        cfg[key] = _threshold(where, key, value)
    return cfg


def _threshold(where: str, key: str, value) -> float | int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and key in COUNT_KEYS:
        ok = isinstance(value, int) and value >= 1
    if ok and key in FRACTION_KEYS:
        ok = 0 <= value <= 1
    if not ok:
        want = ("a positive integer" if key in COUNT_KEYS else "a number in [0, 1]" if key in FRACTION_KEYS
                else "a finite number")
        raise BnlabError(f"{where}: {key}={value!r} must be {want}; see configs/claims/default.yaml")
    return value


def evaluate(root: Path, cfg: dict | None = None, runs: list[Run] | None = None) -> list[dict]:
    """Every claim's verdict for ``runs`` (default: the runs at or below ``root``)."""
    cfg = cfg or load_config()
    runs = load_runs(root) if runs is None else runs
    return [{"id": cid, "claim": text, "paper": paper, **fn(runs, cfg)} for cid, text, paper, fn in CLAIMS]


def to_markdown(results: list[dict]) -> str:
    lines = ["| claim | paper | verdict | numbers | scale |", "|---|---|---|---|---|"]
    for c in results:
        nums = json.dumps(c["numbers"]).replace("|", "/")
        lines.append(f"| {c['claim']} | {c['paper']} | **{c['verdict']}** | {nums} | {c['scale']} |")
    lines += ["", "Rules:", ""] + [f"- `{c['id']}`: {c['rule']}" for c in results]
    return "\n".join(lines) + "\n"


def print_table(results: list[dict]) -> None:
    from rich import get_console
    from rich.table import Table

    table = Table(title="bnlab claims", show_lines=True)
    for col in ("claim", "paper", "verdict", "numbers", "scale"):
        table.add_column(col, overflow="fold")
    colors = {SUPPORTED: "green", NOT_SUPPORTED: "red", INCONCLUSIVE: "yellow"}
    for c in results:
        table.add_row(c["claim"], c["paper"], f"[{colors[c['verdict']]}]{c['verdict']}[/]",
                      json.dumps(c["numbers"]), c["scale"])
    get_console().print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnlab-claims", description=__doc__.split("\n")[0])
    ap.add_argument("path", type=Path, help="a run or multirun directory (or a folder of them)")
    ap.add_argument("--config", type=Path, help="claim thresholds (default: configs/claims/default.yaml)")
    ap.add_argument("--out", type=Path, help="where claims.json and claims.md go (default: PATH)")
    args = ap.parse_args(argv)
    return posthoc.main("bnlab-claims", lambda: run_cli(args))


def run_cli(args) -> None:
    """Check the config and the output folder, then read the runs, judge, print and write."""
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
