"""The report's config, summary and claim-verdict sections."""

from __future__ import annotations

from bnlab import claims
from bnlab.records.store import Run, flatten
from bnlab.report.html import DASH, MISSING, config_grid, esc, fmt_acc, fmt_time, fmt_value, table


def config_section(runs: list[Run], labels: list[str], differ: list[str], same: list[str]) -> str:
    flats = [flatten(r.config) for r in runs]
    if len(runs) == 1:
        if not flats[0]:
            return "<p class=\"note\">No config.yaml in the run directory.</p>"
        return ("<p>The resolved config of the run (<code>config.yaml</code>), flattened to dotted keys, "
                "grouped by config group.</p>" + config_grid(flats[0]))
    out = []
    if differ:
        rows = []
        for label, flat in zip(labels, flats):
            cells = "".join(f"<td>{esc(fmt_value(flat.get(k, MISSING)))}</td>" for k in differ)
            rows.append(f"<tr><th scope=\"row\">{esc(label.split(' (')[0])}</th>{cells}</tr>")
        out.append(f"<p>The {len(differ)} config key(s) whose values differ between the {len(runs)} runs; "
                   "one row per run.</p>")
        out.append(table(["run"] + differ, rows, "config-diff"))
    else:
        out.append(f"<p>All {len(runs)} runs have the same resolved config.</p>")
    if same:
        out.append(f"<details><summary>The {len(same)} keys shared by every run</summary>"
                   + config_grid({k: flats[0].get(k, MISSING) for k in same}) + "</details>")
    return "\n".join(out)


SUMMARY_HEADERS = ["run", "arm", "final test acc", "best test acc", "steps to target", "diverged (step)",
                   "steps trained", "train time (s)", "probe time (s)"]


def summary_section(runs: list[Run], labels: list[str]) -> str:
    rows = []
    for run, label in zip(runs, labels):
        for arm, a in run.summary["arms"].items():
            div = a.get("diverged")
            div_txt = f"yes (step {a.get('diverged_step')})" if div else "no"
            stt = a.get("steps_to_target")
            rows.append(
                f"<tr class=\"{'diverged' if div else ''}\" data-run=\"{esc(label)}\" data-arm=\"{esc(arm)}\">"
                f"<td>{esc(label)}</td><td class=\"arm\">{esc(arm)}</td>"
                f"<td class=\"num\">{fmt_acc(a.get('final_test_acc'))}</td>"
                f"<td class=\"num\">{fmt_acc(a.get('best_test_acc'))}</td>"
                f"<td class=\"num\">{esc('never' if stt is None else stt)}</td>"
                f"<td>{esc(div_txt)}</td>"
                f"<td class=\"num\">{esc(a.get('steps_trained', DASH))}</td>"
                f"<td class=\"num\">{fmt_time(a.get('train_time_s'))}</td>"
                f"<td class=\"num\">{fmt_time(a.get('probe_time_s'))}</td></tr>")
    targets = sorted({r.summary.get("target_acc") for r in runs if r.summary.get("target_acc") is not None})
    note = (f"<p>Test accuracy on the whole test set in eval mode; steps to target: first evaluation at or above "
            f"test accuracy {esc(', '.join(fmt_value(t) for t in targets) or '?')} (never: not reached). "
            "A diverged arm's final accuracy is its last evaluation before it diverged. Times are host seconds "
            "spent in that arm's training steps and in its probes.</p>")
    return note + table(SUMMARY_HEADERS, rows, "summary")


VERDICT_CLASS = {claims.SUPPORTED: "supported", claims.NOT_SUPPORTED: "not-supported",
                 claims.INCONCLUSIVE: "inconclusive"}


CLAIM_HEADERS = ["claim", "paper", "verdict", "experiment", "n", "per-seed effects", "estimate [95% interval]",
                 "margin", "windows", "scale", "runs", "rule"]


def claims_section(results: list[dict]) -> str:
    """The verdict table: per claim its experiment, n, per-seed effects, interval, margin, windows and runs."""
    from bnlab.claims import text as ct

    counts = {v: sum(1 for c in results if c["verdict"] == v) for v in VERDICT_CLASS}
    tally = ", ".join(f"<span class=\"verdict {VERDICT_CLASS[v]}\">{esc(v)}</span> {n}" for v, n in counts.items())
    rows = []
    for c in results:
        cls = VERDICT_CLASS.get(c["verdict"], "inconclusive")
        why = f"<br><small>{esc(c['reason'])}</small>" if c["reason"] else ""
        cells = [ct.per_seed(c), ct.estimate(c), ct.margin(c) + f" ({c['margin_reason']})", ct.windows(c),
                 c["scale"], ct.runs(c), c["rule"]]
        rows.append(
            f"<tr data-claim=\"{esc(c['id'])}\" data-n=\"{c['n']}\"><td><strong>{esc(c['claim'])}</strong><br>"
            f"<code class=\"id\">{esc(c['id'])}</code></td><td>{esc(c['paper'])}</td>"
            f"<td><span class=\"verdict {cls}\">{esc(c['verdict'])}</span>{why}</td>"
            f"<td>{esc(c['experiment'] or DASH)}</td><td class=\"num\">{c['n']}</td>"
            + "".join(f"<td>{esc(x)}</td>" for x in cells) + "</tr>")
    return (f"<p>Published claims about BatchNorm, each judged on its own experiment (<code>bnlab-claims</code>, "
            f"margins in <code>configs/claims/default.yaml</code>). {tally}. n counts independent seeds (copies "
            "and prefixes of one training trajectory count once); per seed one paired effect, bn against its "
            "comparison arm in the same run; the interval is a 95% bootstrap interval of their mean. SUPPORTED "
            "needs the interval wholly beyond the margin in the paper's direction and the seeds to agree (exact "
            "sign test p &lt;= 0.05), NOT SUPPORTED the same on the other side; anything else, or fewer than "
            "the minimum seeds, is INCONCLUSIVE: the records do not decide, which is not a failed claim. "
            "Time-series claims show an early (first third), late (last third) and whole-run verdict. Every "
            "verdict holds only at the scale stated beside it.</p>"
            + table(CLAIM_HEADERS, rows, "claims"))
