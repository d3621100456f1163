"""``bnlab-explore RUN_OR_SWEEP_DIR [--out FILE]``: write the explorer page (default DIR/explore.html)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnlab import posthoc
from bnlab.errors import BnlabError
from bnlab.explore import data, page
from bnlab.records.store import Run

PROG = "bnlab-explore"


def run_name(root: Path, run_dir: Path) -> str:
    """A run's name in the page's run picker: its path below the sweep dir (the dir's name for one run)."""
    rel = run_dir.relative_to(root)
    return str(rel) if rel.parts else root.resolve().name


def write_page(root: Path, out: Path | None = None, runs: list[Run] | None = None) -> Path:
    """Write the page of ``runs`` (default: every usable run under ``root``) atomically to ``out``
    (default ROOT/explore.html); its path. bnlab-report and the W&B upload call it too."""
    root = Path(root)
    runs = posthoc.usable_runs(root, PROG) if runs is None else runs
    out = out if out is not None else root / "explore.html"
    if out.is_dir():
        raise BnlabError(f"--out {out} is a directory; pass a file name such as --out {out / 'explore.html'}")
    text = page.build([data.run_data(r, run_name(root, r.dir)) for r in runs], f"bnlab explorer: {root.name}")
    return posthoc.write_text(out, text, "pass another --out")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Write an interactive, self-contained HTML page "
                                     "(works offline) of a bnlab run or multirun directory.")
    parser.add_argument("path", type=Path, help="a run directory or a multirun (sweep) directory")
    parser.add_argument("--out", type=Path, default=None, help="the HTML file to write (default PATH/explore.html)")
    args = parser.parse_args(argv)

    def body():
        print(write_page(args.path, args.out))

    return posthoc.main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
