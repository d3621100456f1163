"""The report's figure section: every PNG embedded as a small palette copy, with its caption and skip notes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from bnlab.records.store import Run
from bnlab.report.html import esc


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
