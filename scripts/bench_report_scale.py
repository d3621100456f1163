"""Benchmark: bnlab-report's run labels, one config diff per sweep dir (now) vs one per run (before).

From one real run directory (RUN, e.g. a job of a ``bnlab -m`` sweep), builds synthetic sweeps of
N copies whose config.yaml differ in seed and optim.lr, then times, in the same process:

- reading the records (``load_runs(root, damaged=[])``: every summary, config and metrics file);
- the labels the old way: for every run, ``config_diff`` over the runs sharing its sweep dir
  (O(N^2) flattened configs), and the new way: ``report.group_differs`` once (O(N));
- the whole page without figures from the records read (``report.build(..., make_figures=False,
  runs=runs)``: config, summary, claims).

Both label lists are compared (they must be equal). The report ends with the machine and the load
average, since other processes on a small machine skew the seconds.

    .venv/bin/python scripts/bench_report_scale.py RUN --out results/bench/report_scale.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from bnlab import report
from bnlab.bench.machine import cpu_model  # one machine description for every benchmark
from bnlab.records.store import flatten, load_runs


def make_sweep(run: Path, root: Path, n: int) -> Path:
    """``n`` copies of ``run``'s records under ``root/sweep/<i>``, with seed i and one of 4 learning rates."""
    sweep = root / "sweep"
    base = yaml.safe_load((run / "config.yaml").read_text())
    for i in range(n):
        d = sweep / str(i)
        d.mkdir(parents=True)
        for name in ("summary.json", "metrics.jsonl"):
            shutil.copy(run / name, d / name)
        base["seed"] = i
        base["optim"]["lr"] = [0.01, 0.05, 0.1, 1.0][i % 4]
        (d / "config.yaml").write_text(yaml.safe_dump(base))
    return sweep


def old_labels(runs, root):
    """The labels as before: a config diff over its sweep dir for every run."""
    out = []
    for run in runs:
        group = [r for r in runs if r.dir.parent == run.dir.parent]
        differ = report.config_diff([flatten(r.config) for r in group])[0] if len(group) >= 2 else []
        out.append(report.run_label(run, root, differ))
    return out


def new_labels(runs, root):
    differs = report.group_differs(runs)
    return [report.run_label(r, root, differs[r.dir.parent]) for r in runs]


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run directory to copy")
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--old-up-to", type=int, default=500, help="time the old labels only up to this many runs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    load = os.getloadavg()
    lines = ["# bnlab-report labels: one config diff per sweep dir (new) vs per run (old)",
             (f"# machine: {cpu_model()}, {os.cpu_count()} CPUs, "
              f"{platform.system()} {platform.release()}, Python {platform.python_version()}"),
             f"# load average before: {load[0]:.2f}",
             "runs  read_s  labels_new_s  labels_old_s  old/new  page_no_figures_s"]
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = make_sweep(args.run, Path(tmp), n)
            runs, t_read = timed(load_runs, root, [])
            new, t_new = timed(new_labels, runs, root)
            if n <= args.old_up_to:
                old, t_old = timed(old_labels, runs, root)
                assert old == new, "the labels differ"
                old_txt, ratio = f"{t_old:12.3f}", f"{t_old / t_new:7.0f}x"
            else:
                old_txt, ratio = f"{'-':>12}", f"{'-':>8}"
            _, t_page = timed(report.build, root, False, runs)
            lines.append(f"{n:4d}  {t_read:6.2f}  {t_new:12.3f}  {old_txt}  {ratio}  {t_page:17.2f}")
            print(lines[-1], flush=True)
    lines.append(f"# load average after: {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
