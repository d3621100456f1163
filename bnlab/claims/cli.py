"""``bnlab-claims DIR``: verdicts on published claims about BatchNorm, from run records only.

Judges every claim on the runs under DIR, prints the table, writes claims.json and claims.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnlab import posthoc
from bnlab.claims.config import load_config
from bnlab.claims.judge import evaluate
from bnlab.errors import BnlabError
from bnlab.records.store import dumps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnlab-claims", description=__doc__.split("\n")[0])
    ap.add_argument("path", type=Path, help="a run or multirun directory (or a folder of them)")
    ap.add_argument("--config", type=Path, help="claim thresholds (default: configs/claims/default.yaml)")
    ap.add_argument("--out", type=Path, help="where claims.json and claims.md go (default: PATH)")
    args = ap.parse_args(argv)
    return posthoc.main("bnlab-claims", lambda: run_cli(args))


def run_cli(args) -> None:
    """Check the config and the output folder, then read the runs, judge, print and write."""
    from bnlab.claims.text import print_table, to_markdown

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
