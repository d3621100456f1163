"""Print (and optionally write as Markdown) the landscape medians of a run.

    python scripts/landscape_medians.py results/santurkar_fig4/run --out results/santurkar_fig4/medians.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bnlab.claims.medians import LANDSCAPE_MEDIANS, landscape_medians
from bnlab.records.store import read_summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    s = read_summary(args.run_dir)
    d = s["data"]
    lines = [
        f"Landscape medians of run `{args.run_dir}` (pair {s['pair_id']})",
        "",
        f"Scale: {s['model']} width {s['width']} on {d['name']} ({d['train_size']} train / {d['test_size']} test "
        f"images), {s['steps']} steps of batch {s['batch_size']}, lr {s['lr']}, {s['init']} init, seed {s['seed']}, "
        "one seed.",
    ]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    windows = [("whole run", None), (f"first third (steps <= {s['steps'] // 3})", s["steps"] // 3)]
    for title, max_step in windows:
        med = landscape_medians(args.run_dir, max_step)
        lines += [
            "", f"### {title}", "",
            "| arm | probes (steps) | median loss band | median grad. predictiveness (max) | median beta_eff |",
            "|---|---|---|---|---|",
        ]
        for arm, m in med.items():
            lines.append(f"| {arm} | {m['probes']} ({m['first_step']}..{m['last_step']}) | {fmt(m['loss_band'])} | "
                         f"{fmt(m['grad_pred_max'])} | {fmt(m['beta_eff'])} |")
        if {"bn", "none"} <= med.keys():
            lines.append("")
            for key, what in LANDSCAPE_MEDIANS.items():
                bn, none = med["bn"][key], med["none"][key]
                if bn is not None and none is not None:
                    verdict = "lower with BN" if bn < none else "NOT lower with BN"
                    lines.append(f"- {key}: none / bn = {none / bn:.3g} ({verdict}); {what}")
    lines += ["", "Final test accuracy: " + ", ".join(
        f"{arm} {fmt(a['final_test_acc'])}" for arm, a in s["arms"].items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
