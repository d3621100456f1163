"""HTML building blocks of the report: escaping, value formats, tables and the page's CSS."""

from __future__ import annotations

import html
import json
import math

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


def fmt_acc(v) -> str:
    return "\u2014" if v is None else f"{v:.4f}"


def fmt_time(v) -> str:
    return "\u2014" if v is None else f"{v:.2f}"


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
