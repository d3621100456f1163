"""Claim verdicts as text: claims.md, the rich table of ``bnlab-claims``, and cells the HTML report reuses.

Effects on a log10 ratio scale are shown as ratios (``3.2x``), differences with
their sign; an accuracy difference carries its test set's binomial standard error.
"""

from __future__ import annotations

from collections import defaultdict

from bnlab.claims.evidence import OTHER_EXPERIMENT
from bnlab.claims.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

DASH = "-"


def effect(c: dict, x: float | None) -> str:
    """One value on the claim's scale, shown for readers: a ratio ``1.5x`` or a difference ``+0.031``."""
    if x is None:
        return DASH
    return f"{10 ** x:.3g}x" if c["measure"] == "log10 ratio" else f"{x:+.3g}"


def interval(c: dict, iv: list | None) -> str:
    return DASH if not iv else f"[{effect(c, iv[0])}, {effect(c, iv[1])}]"


def estimate(c: dict) -> str:
    """Estimate and interval, e.g. ``2.1x [1.4x, 3.0x]``; with the reason when there is no interval."""
    text = f"{effect(c, c['estimate'])} {interval(c, c['interval'])}"
    return text if c["interval"] else f"{effect(c, c['estimate'])} (no interval: {c['reason']})"


def per_seed(c: dict) -> str:
    """``seed 0: +0.031 ± 0.021 (binomial SE), ...``; the seeds that gave no effect and why."""
    parts = [f"seed {p['seed']}: {effect(c, p['value'])}" + (f" ± {p['se']:.2g}" if p["se"] is not None else "")
             for p in c["per_seed"]]
    parts += [f"seed {s}: {why}" for s, why in c["no_effect"].items()]
    note = " (± binomial SE of the test set)" if any(p["se"] is not None for p in c["per_seed"]) else ""
    return ("; ".join(parts) + note) or DASH


def margin(c: dict) -> str:
    return f"{c['margin']:g}x" if c["measure"] == "log10 ratio" else f"{c['margin_on_scale']:g}"


def windows(c: dict) -> str:
    """``early SUPPORTED 3.1x / late ... / whole ...`` and a flag when they disagree; '-' for a single value."""
    if not c["windows"]:
        return "whole run (not a time series)"
    text = " / ".join(f"{w} {s['verdict']} {effect(c, s['estimate'])} (n={s['n']})" for w, s in c["windows"].items())
    return text + (" - WINDOWS DISAGREE" if c["windows_disagree"] else "")


def runs(c: dict, limit: int = 6, name_others: bool = False) -> str:
    """Runs used, then runs ignored grouped by reason (at most ``limit`` names per group).

    Runs of experiments the claim does not read are counted per experiment, named only with ``name_others``.
    """

    def names(xs):
        return ", ".join(xs[:limit]) + (f" and {len(xs) - limit} more" if len(xs) > limit else "")

    groups, others = defaultdict(list), defaultdict(int)
    for run, why in c["runs_ignored"].items():
        if why.startswith(OTHER_EXPERIMENT) and not name_others:
            others[why[len(OTHER_EXPERIMENT):].strip()] += 1
        else:
            groups[why].append(run)
    parts = [f"used {len(c['runs_used'])}: {names(c['runs_used'])}" if c["runs_used"] else "used none"]
    if others:
        parts.append(f"ignored {sum(others.values())} of experiments this claim does not read ("
                     + ", ".join(f"{e} {k}" for e, k in sorted(others.items())) + ")")
    parts += [f"ignored {len(xs)} ({why}): {names(xs)}" for why, xs in groups.items()]
    return "; ".join(parts)


def to_markdown(results: list[dict]) -> str:
    head = ["claim", "experiment", "n", "per-seed effects", "estimate [95% interval]", "margin", "windows",
            "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in results:
        cells = [c["claim"], c["experiment"] or DASH, str(c["n"]), per_seed(c), estimate(c), margin(c), windows(c),
                 f"**{c['verdict']}**"]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
    lines += ["", "n = independent seeds behind the comparison (copies and prefixes of one trajectory count once); "
              "the interval is a 95% bootstrap interval of the mean per-seed effect; SUPPORTED needs it wholly "
              "beyond the margin in the paper's direction and the seeds to agree (exact sign test p <= 0.05: with "
              "5 seeds, all 5 beyond the margin); NOT SUPPORTED the same on the other side.", ""]
    for c in results:
        lines += [f"### `{c['id']}`: {c['claim']}", "",
                  f"- paper: {c['paper']}; reads: {', '.join(c['experiments'])}; compares: {c['compares']}",
                  f"- rule: {c['rule']}", f"- margin {margin(c)}: {c['margin_reason']}",
                  f"- verdict: {c['verdict']}" + (f" ({c['reason']})" if c["reason"] else "")
                  + (f"; exact sign test p = {c['sign_test_p']:.3g}" if c["sign_test_p"] is not None else ""),
                  f"- scale: {c['scale']}", f"- runs: {runs(c, limit=50, name_others=True)}"]
        lines += [f"- also judged: experiment {a['experiment']}, n = {a['n']}, {a['verdict']}" for a in c["also"]]
        lines.append("")
    return "\n".join(lines)


def print_table(results: list[dict]) -> None:
    """One small field/value table per claim (readable in 80 columns), under a "bnlab claims" rule."""
    from rich import get_console
    from rich.markup import escape
    from rich.table import Table

    console = get_console()
    console.rule("bnlab claims")
    colors = {SUPPORTED: "green", NOT_SUPPORTED: "red", INCONCLUSIVE: "yellow"}
    for c in results:
        table = Table(title=f"[bold]{escape(c['id'])}[/]: [{colors[c['verdict']]}]{c['verdict']}[/]",
                      show_header=False, title_justify="left", expand=True)
        table.add_column("field", style="dim", no_wrap=True)
        table.add_column("value", overflow="fold", ratio=1)
        for field, value in (("claim", f"{c['claim']} ({c['paper']})"), ("experiment", c["experiment"] or DASH),
                             ("n", str(c["n"])), ("per-seed effects", per_seed(c)),
                             ("estimate [95% interval]", estimate(c)),
                             ("margin", f"{margin(c)}: {c['margin_reason']}"), ("windows", windows(c)),
                             ("runs", runs(c)), ("scale", c["scale"])):
            table.add_row(field, escape(value))
        console.print(table)
