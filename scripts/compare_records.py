"""Compare two run dirs' records, ignoring times: exit 0 when metrics.jsonl and summary.json agree.

    python scripts/compare_records.py RUN_A RUN_B

Times (``wall_time_s``, ``train_time_s``, ``probe_time_s``) differ from run to run; every other
byte of metrics.jsonl and every other summary field must be the same (issue 20: a refactor
changes no record).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TIME_KEYS = {"wall_time_s", "train_time_s", "probe_time_s"}


def _timeless(node):
    if isinstance(node, dict):
        return {k: _timeless(v) for k, v in node.items() if k not in TIME_KEYS}
    if isinstance(node, list):
        return [_timeless(v) for v in node]
    return node


def differences(a: Path, b: Path) -> list[str]:
    """What differs between run dirs ``a`` and ``b``, times aside (empty: the same records)."""
    out = []
    if (a / "metrics.jsonl").read_bytes() != (b / "metrics.jsonl").read_bytes():
        la, lb = (p.read_text().splitlines() for p in (a / "metrics.jsonl", b / "metrics.jsonl"))
        first = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
        out.append(f"metrics.jsonl differs from line {first + 1} ({len(la)} vs {len(lb)} lines)")
    sa, sb = (_timeless(json.loads((p / "summary.json").read_text())) for p in (a, b))
    if sa != sb:
        keys = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        out.append(f"summary.json differs in {', '.join(keys)}")
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: compare_records.py RUN_A RUN_B", file=sys.stderr)
        return 2
    diffs = differences(Path(args[0]), Path(args[1]))
    for d in diffs:
        print(d)
    print("records identical (times aside)" if not diffs else "records DIFFER")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
