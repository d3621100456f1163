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

Modules: ``html`` (escaping, value formats, tables, CSS), ``sections`` (config,
summary, claim verdicts), ``figures`` (the embedded figures); this one labels the
runs, builds the page and is ``bnlab-report``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from bnlab import __version__, claims, posthoc
from bnlab.errors import BnlabError
from bnlab.records.store import Run, flatten, load_runs
from bnlab.report.figures import EMBED_SCALE, embedded_png, figures_section
from bnlab.report.html import CSS, DASH, MISSING, esc, fmt_value
from bnlab.report.sections import CLAIM_HEADERS, claims_section, config_section, summary_section

__all__ = [
    "CLAIM_HEADERS", "CSS", "DASH", "EMBED_SCALE", "MISSING", "build", "claims_section", "config_diff",
    "config_section", "embedded_png", "esc", "figures_section", "fmt_value", "group_differs", "main", "run_cli",
    "run_label", "scale_statement", "summary_section",
]


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


def build(root: Path, make_figures: bool = True, runs: list[Run] | None = None, explorer: str | None = None) -> str:
    """The report page of ``runs`` (default: those at or below ``root``) as HTML (draws the figures first);
    ``explorer``: the href of the bnlab-explore page beside it, linked near the top."""
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
        (f"<p class=\"explore\"><a href=\"{esc(explorer)}\">Interactive explorer</a>: activations over training, "
         "batch vs running statistics, a BatchNorm playground on this run's activations, every curve "
         "(one self-contained page, works offline).</p>" if explorer else ""),
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
    explorer = out.with_name("explore.html")  # written by bnlab-explore (make demo does): linked when there
    page = build(args.path, make_figures=not args.no_figures, runs=runs,
                 explorer=explorer.name if explorer.is_file() else None)
    print(posthoc.write_text(out, page, fix))


if __name__ == "__main__":
    sys.exit(main())
