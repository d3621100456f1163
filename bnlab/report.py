"""``bnlab-report DIR [--out FILE]``: one self-contained HTML page of a run or a sweep, from run records only.

The page (default ``DIR/report.html``) holds, in order:

1. a title and the scale statement: how many runs, data set and its train/test
   size, models and widths, steps, seeds, arms, learning rates, batch sizes
   (``claims.scale`` plus the swept values), so a CPU-scale result is never
   read as the paper's;
2. a table of contents;
3. the config: for a single run its resolved ``config.yaml`` flattened to
   dotted keys; for a sweep one row per run with the keys whose values differ
   between runs as columns (the shared keys in a collapsed table below);
4. the summary: one row per run and arm with final and best test accuracy,
   steps to the target accuracy, divergence (and its step), steps trained,
   train time and probe time;
5. the claim verdicts of ``bnlab.claims.evaluate`` (verdict colored, the
   numbers behind it, the scale it was measured at, the rule);
6. the figures: ``plots.make_figures(DIR)`` draws (or refreshes) them, and
   every PNG is embedded as a 64-colour, 100-dpi palette copy (``embedded_png``), a
   base64 ``data:image/png`` URI with alt text and a caption, grouped per
   sweep and per run, followed by the notes of figures skipped for lack of data.

The file needs nothing outside itself: no scripts, no web fonts, no external
CSS or images, so it opens offline, mails as one attachment and prints
cleanly. All text from records is HTML-escaped. It is written atomically
(temp file + rename). No run records under DIR: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import io
import json
import math
import sys
from pathlib import Path

from bnlab import __version__, claims, posthoc
from bnlab.errors import BnlabError
from bnlab.results import Run, flatten, load_runs

MISSING = object()
DASH = "\u2014"


def esc(value) -> str:
    return html.escape(str(value), quote=True)


# ------------------------------------------------------------------ values ----


def fmt_value(v) -> str:
    """A config value as text, YAML-like: null, true/false, lists in brackets."""
    if v is MISSING:
        return "\u2014"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def config_diff(flats: list[dict]) -> tuple[list[str], list[str]]:
    """(keys whose values differ between runs, keys shared by all), in config order."""
    keys: list[str] = []
    seen = set()
    for f in flats:
        for k in f:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    differ, same = [], []
    for k in keys:
        vals = {fmt_value(f.get(k, MISSING)) for f in flats}
        (differ if len(vals) > 1 else same).append(k)
    return differ, same


def fmt_acc(v) -> str:
    return "\u2014" if v is None else f"{v:.4f}"


def fmt_time(v) -> str:
    return "\u2014" if v is None else f"{v:.2f}"


# ------------------------------------------------------------------- runs ----


def run_label(run: Run, root: Path, differ: list[str]) -> str:
    """The run's path below DIR, plus its values of the swept keys (``0 (seed=0, optim.lr=0.05)``)."""
    try:
        rel = run.dir.resolve().relative_to(root.resolve())
        name = str(rel) if str(rel) != "." else run.dir.resolve().name
    except ValueError:
        name = str(run.dir)
    flat = flatten(run.config)
    parts = [f"{k}={fmt_value(flat.get(k, MISSING))}" for k in differ]
    return name + (f" ({', '.join(parts)})" if parts else "")


def group_differs(runs: list[Run]) -> dict[Path, list[str]]:
    """{multirun dir: the keys that vary among its runs}: what names a run within its sweep.

    A folder of several experiments (results/) differs in dozens of keys across experiments; the
    path already names the experiment, the swept keys name the run within it. A dir of one run
    names it by path alone. One diff per dir, so labelling N runs costs O(N), not O(N^2).
    """
    groups: dict[Path, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.dir.parent, []).append(r)
    return {d: config_diff([flatten(r.config) for r in g])[0] if len(g) >= 2 else [] for d, g in groups.items()}


def scale_statement(runs: list[Run]) -> str:
    s = [r.summary for r in runs]

    def values(key):
        return sorted({x.get(key) for x in s if x.get(key) is not None}, key=str)

    arms = []
    for x in s:
        for a in x["arms"]:
            if a not in arms:
                arms.append(a)
    parts = [claims.scale(runs), f"arms {', '.join(arms)}"]
    for key, what in (("lr", "lr"), ("batch_size", "batch"), ("init", "init"), ("optimizer", "optimizer")):
        vals = values(key)
        if vals:
            parts.append(f"{what} {', '.join(fmt_value(v) for v in vals)}")
    statuses = sorted({x.get("status", "?") for x in s})
    if statuses != ["completed"]:
        parts.append(f"status {', '.join(statuses)}")
    return "; ".join(parts)


# ---------------------------------------------------------------- sections ----


def table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th scope=\"col\">{esc(h)}</th>" for h in headers)
    return (f"<div class=\"scroll\"><table class=\"{esc(cls)}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")


def config_grid(flat: dict) -> str:
    """Flattened config keys as one small key/value table per top-level group, laid out in columns."""
    groups: dict[str, list[str]] = {}
    for k in flat:
        groups.setdefault(k.split(".")[0] if "." in k else "(top level)", []).append(k)
    out = []
    for g, keys in groups.items():
        rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{esc(fmt_value(flat[k]))}</td></tr>" for k in keys)
        out.append(f"<div class=\"cfg-group\"><table class=\"config\"><caption>{esc(g)}</caption>"
                   f"<tbody>{rows}</tbody></table></div>")
    return "<div class=\"cfg-grid\">" + "\n".join(out) + "</div>"


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
    from bnlab import claims_text as ct

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


def _caption(name: str) -> str:
    """What the figure file stem ``name`` shows (its registered figure's caption), else the stem."""
    from bnlab import plots

    return plots.caption(name)


def _rel(d: Path, root: Path) -> str:
    """``d`` relative to the report root (the root's own name when it is the root)."""
    try:
        rel = d.relative_to(root)
    except ValueError:
        return str(d)
    return str(rel) if str(rel) != "." else root.name


EMBED_COLORS = 64  # palette size of the embedded copies
EMBED_SCALE = 2 / 3  # 150 dpi figures embedded at 100 dpi, about screen resolution


def embedded_png(path: Path) -> bytes:
    """The PNG at ``path`` as the report embeds it: a palette PNG of EMBED_COLORS colours at EMBED_SCALE.

    Figures are flat colours plus anti-aliasing, so a median-cut palette of 64
    colours without dithering keeps lines, text and colour maps legible;
    scaling the palette image (nearest neighbour, so no new colours) to 100 dpi
    keeps 9-pt text readable on screen. Measured on results/: 67 figures 22.9 MB
    as 24-bit 150-dpi PNGs, 6.7 MB as palette PNGs, and 104 figures 10.8 MB as
    palette PNGs, 6.3 MB at 100 dpi. The full-size PNG and the PDF beside the
    records stay untouched for papers.
    """
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=EMBED_COLORS, method=Image.Quantize.MEDIANCUT,
                                           dither=Image.Dither.NONE)
    small = small.resize((max(1, round(small.width * EMBED_SCALE)), max(1, round(small.height * EMBED_SCALE))),
                         Image.Resampling.NEAREST)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def figures_section(root: Path, runs: list[Run], labels: list[str], paths: list[Path], notes: list[str],
                    group_ids: dict, sweeps: list[Path] = ()) -> tuple[str, list[tuple[str, str]]]:
    """(html, [(anchor, title)] for the table of contents) of the figures, grouped per sweep / run dir."""
    root_r = root.resolve()
    run_label = {r.dir.resolve(): lbl for r, lbl in zip(runs, labels)}
    groups: dict[Path, list[Path]] = {}
    for p in paths:
        if p.suffix.lower() == ".png":
            groups.setdefault(Path(p).resolve().parent.parent, []).append(Path(p))
    # the note's trailing "(<where>)" names the dir it belongs to
    group_notes: dict[Path | None, list[str]] = {}
    for n in notes:
        owner = None
        if n.endswith(")") and "(" in n:
            where = Path(n[n.rfind("(") + 1:-1])
            for cand in (where, root / where):
                try:
                    if cand.resolve() in group_ids:
                        owner = cand.resolve()
                        break
                except OSError:
                    pass
        group_notes.setdefault(owner, []).append(n)
    order = [d.resolve() for d in sweeps]  # the sweeps' own figures first
    order += [r.dir.resolve() for r in runs]
    out, toc = [], []
    for g in order:
        pngs, gnotes = groups.get(g, []), group_notes.get(g, [])
        if not pngs and not gnotes:
            continue
        title = (f"Run {run_label[g]}" if g in run_label else f"Sweep {_rel(g, root_r)} (all its runs)")
        anchor = group_ids[g]
        toc.append((anchor, title))
        out.append(f"<section class=\"figgroup\" id=\"{esc(anchor)}\"><h3>{esc(title)}</h3>")
        for p in pngs:
            data = base64.b64encode(embedded_png(p)).decode("ascii")
            cap = _caption(p.stem)
            try:
                rel = p.resolve().relative_to(root_r)
            except ValueError:
                rel = p
            alt = f"{p.stem} figure of {title}: {cap}"
            out.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{esc(alt)}\" "
                       f"data-file=\"{esc(rel)}\">"
                       f"<figcaption><strong>{esc(p.stem)}</strong>: {esc(cap)} "
                       f"<span class=\"path\">({esc(rel)}, PDF beside it)</span></figcaption></figure>")
        if gnotes:
            out.append(f"<details class=\"skips\"><summary>{len(gnotes)} figure(s) skipped for lack of data"
                       "</summary><ul>" + "".join(f"<li>{esc(n)}</li>" for n in gnotes) + "</ul></details>")
        out.append("</section>")
    if group_notes.get(None):
        out.append("<section class=\"figgroup\"><h3>Other notes</h3><ul>"
                   + "".join(f"<li>{esc(n)}</li>" for n in group_notes[None]) + "</ul></section>")
    if not paths:
        out.insert(0, "<p class=\"note\">No figures were drawn.</p>")
    return "\n".join(out), toc


CSS = """
:root { --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --head: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, "DejaVu Sans", "Liberation Sans", sans-serif;
       color: var(--fg); background: #fff; margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1200px;
       font-size: 15px; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .5rem; }
p { margin: .4rem 0 .8rem; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .86em; background: #f3f4f6;
       padding: 0 .25em; border-radius: 3px; }
.meta { color: var(--muted); font-size: .9rem; }
.scale { background: #fff8e6; border-left: 4px solid #d4a72c; padding: .6rem .9rem; margin: .8rem 0 1rem; }
nav.toc { background: var(--head); border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem;
          display: inline-block; min-width: 18rem; }
nav.toc ol { margin: .2rem 0; padding-left: 1.3rem; }
nav.toc ol ol { font-size: .92em; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.arm { font-weight: 600; }
tr.diverged td { background: #fff1f0; }
.cfg-grid { columns: 3 330px; column-gap: 1.2rem; margin: .5rem 0 1rem; }
.cfg-group { break-inside: avoid; margin-bottom: .9rem; }
table.config { width: 100%; }
table.config caption { text-align: left; font-weight: 700; padding: .15rem 0; }
table.config td:first-child { white-space: nowrap; width: 1%; }
table.config td:last-child { overflow-wrap: anywhere; }
table.config code { font-size: .82em; }
table.claims td { min-width: 6rem; }
table.claims td:nth-child(n+10) { min-width: 16rem; font-size: .92em; color: var(--muted); }
td.numbers { font-size: .92em; white-space: nowrap; }
.verdict { display: inline-block; padding: .1rem .45rem; border-radius: 4px; font-weight: 700; font-size: .82rem;
           white-space: nowrap; border: 1px solid transparent; }
.verdict.supported { background: #dafbe1; color: #116329; border-color: #4ac26b; }
.verdict.not-supported { background: #ffebe9; color: #a40e26; border-color: #ff8182; }
.verdict.inconclusive { background: #fff8c5; color: #7d4e00; border-color: #d4a72c; }
figure { margin: 1rem 0 1.6rem; padding: .5rem; border: 1px solid var(--line); border-radius: 6px;
         break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: .88rem; color: var(--muted); margin-top: .4rem; }
figcaption strong { color: var(--fg); }
.path { font-size: .85em; }
details { margin: .4rem 0 1rem; }
details summary { cursor: pointer; color: var(--muted); }
details.skips li { font-size: .85rem; color: var(--muted); }
.note { color: var(--muted); font-style: italic; }
footer { margin-top: 3rem; color: var(--muted); font-size: .82rem; border-top: 1px solid var(--line);
         padding-top: .6rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav.toc { display: none; }
  a { color: inherit; }
  .scroll { overflow: visible; }
  thead th { position: static; }
  thead { display: table-header-group; }
  tr, figure, .scale { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h2.figures { break-before: page; page-break-before: always; }
  details > *:not(summary) { display: block; }
  .verdict { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def build(root: Path, make_figures: bool = True, runs: list[Run] | None = None) -> str:
    """The report page of ``runs`` (default: those at or below ``root``) as HTML (draws the figures first)."""
    root = Path(root)
    runs = load_runs(root) if runs is None else runs
    if not runs:
        raise ValueError(f"{root} holds no run records (summary.json)")
    flats = [flatten(r.config) for r in runs]
    differ, same = config_diff(flats) if len(runs) > 1 else ([], list(flats[0]))
    differs = group_differs(runs)
    labels = [run_label(r, root, differs[r.dir.parent]) for r in runs]
    results = claims.evaluate(root, runs=runs)
    from bnlab import plots

    if make_figures:
        try:
            paths, notes = plots.make_figures(root, runs)
        except BnlabError as exc:
            raise BnlabError(f"{exc}, or pass --no-figures") from None
    else:
        paths, notes = [], ["figures not drawn (--no-figures)"]
    sweeps = list(plots.sweep_groups(root, runs)) if make_figures else []
    group_ids = {d.resolve(): f"fig-sweep-{i}" for i, d in enumerate(sweeps)}
    for i, r in enumerate(runs):
        group_ids[r.dir.resolve()] = f"fig-run-{i}"
    figs_html, fig_toc = figures_section(root, runs, labels, paths, notes, group_ids, sweeps)

    kind = "run" if len(runs) == 1 and (root / "summary.json").exists() else "sweep"
    title = f"bnlab report: {kind} {root.resolve().name}"
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = [("scale", "Scale"), ("config", "Config"), ("summary", "Summary"), ("claims", "Claim verdicts"),
                ("figures", "Figures")]
    toc_items = []
    for anchor, name in sections:
        sub = ""
        if anchor == "figures" and fig_toc:
            sub = "<ol>" + "".join(f"<li><a href=\"#{esc(a)}\">{esc(t)}</a></li>" for a, t in fig_toc) + "</ol>"
        toc_items.append(f"<li><a href=\"#{anchor}\">{esc(name)}</a>{sub}</li>")

    pair_ids = sorted({r.summary.get("pair_id", "?") for r in runs})
    body = [
        f"<header><h1>{esc(title)}</h1>",
        f"<p class=\"meta\">{esc(root.resolve())} &middot; {len(runs)} run(s) &middot; generated {esc(now)} "
        f"by bnlab {esc(__version__)} from run records only</p></header>",
        "<section id=\"scale\"><h2>Scale</h2>",
        f"<p class=\"scale\"><strong>Measured at:</strong> {esc(scale_statement(runs))}.</p>",
        f"<p class=\"meta\">Pair id(s): {esc(', '.join(pair_ids))}. The papers' figures use full CIFAR-10 "
        "(50,000 train / 10,000 test), full-width models and thousands of steps; read every number here at "
        "the scale above.</p></section>",
        "<nav class=\"toc\" aria-label=\"Contents\"><strong>Contents</strong><ol>" + "".join(toc_items) + "</ol></nav>",
        "<section id=\"config\"><h2>Config</h2>", config_section(runs, labels, differ, same), "</section>",
        "<section id=\"summary\"><h2>Summary</h2>", summary_section(runs, labels), "</section>",
        "<section id=\"claims\"><h2>Claim verdicts</h2>", claims_section(results), "</section>",
        "<section id=\"figures\"><h2 class=\"figures\">Figures</h2>",
        "<p>Drawn by <code>bnlab-plot</code> from the run records (PNG embedded here; the PNG and PDF files are "
        "in each <code>figures/</code> folder).</p>", figs_html, "</section>",
        f"<footer>bnlab {esc(__version__)} &middot; {esc(root.resolve())} &middot; {esc(now)}</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnlab-report", description=__doc__.split("\n")[0].strip("`"))
    ap.add_argument("path", type=Path, help="a run directory or a multirun directory")
    ap.add_argument("--out", type=Path, help="the HTML file to write (default: PATH/report.html)")
    ap.add_argument("--no-figures", action="store_true", help="do not draw or embed figures (faster)")
    args = ap.parse_args(argv)
    return posthoc.main("bnlab-report", lambda: run_cli(args))


def run_cli(args) -> None:
    """Read the runs, check the output path can be written, then draw, build and write the page."""
    runs = posthoc.usable_runs(args.path, "bnlab-report")
    out = args.out or args.path / "report.html"
    if out.is_dir():
        raise BnlabError(f"--out {out} is a directory; pass a file name, e.g. --out {out / 'report.html'}")
    fix = "free space, or pass --out FILE to write the report elsewhere"
    posthoc.check_writable(out.parent, fix)
    page = build(args.path, make_figures=not args.no_figures, runs=runs)
    print(posthoc.write_text(out, page, fix))


if __name__ == "__main__":
    sys.exit(main())
