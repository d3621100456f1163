"""``bnlab-plot PATH``: every registered figure of a run dir, a sweep dir or a folder of sweeps."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from bnlab import posthoc
from bnlab.plots import generic
from bnlab.plots.grouping import _job_order, sweep_groups
from bnlab.plots.registry import FIGURES, SWEEP_FIGURES
from bnlab.plots.style import Skip, _as_run
from bnlab.records.store import Run, load_runs


def run_figures(run) -> tuple[list[Path], list[str]]:
    """Every per-run figure of one run: (paths written, skip notes)."""
    run = _as_run(run)
    drawers = [(f.name, f.draw) for f in FIGURES.values() if f.scope == "run"]
    drawers += [(m.name, partial(generic.plot_measurement, m=m)) for m in generic.undrawn()]
    paths, notes = [], []
    for name, fn in drawers:
        try:
            paths += fn(run)
        except Skip as why:
            notes.append(f"skipped {name}: {why} ({run.dir})")
    return paths, notes


def caption(stem: str) -> str:
    """What a figure file shows, for its caption: its drawing function's first docstring line, else its stem."""
    captions = {n: f.caption for n, f in FIGURES.items()}
    captions.update({m.name: f"{m.title} ({m.paper}): its record keys vs step, every arm" for m in generic.undrawn()})
    for key in sorted(captions, key=len, reverse=True):
        if stem == key or stem.startswith(key + "_"):
            extra = stem[len(key) + 1:] if stem != key else ""
            return captions[key] + (f" [{extra}]" if extra else "") if captions[key] else stem
    return stem


def sweep_figures(path: Path, runs: list[Run] | None = None) -> tuple[list[Path], list[str]]:
    """The sweep-level figures of the runs under ``path`` (into ``path/figures``): (paths, skip notes)."""
    path = Path(path)
    runs = _job_order(load_runs(path) if runs is None else runs)
    if len(runs) < 2:
        why = f"a sweep figure needs >= 2 runs, {path} holds {len(runs)}"
        return [], [f"skipped {name}: {why}" for name in SWEEP_FIGURES]
    paths, notes = [], []
    for name in SWEEP_FIGURES:
        try:
            paths += FIGURES[name].draw(runs, path / "figures")
        except Skip as why:
            notes.append(f"skipped {name}: {why} ({path})")
    return paths, notes


def make_figures(path: Path, runs: list[Run] | None = None) -> tuple[list[Path], list[str]]:
    """Every figure for a run dir, or for a sweep dir (the sweep figures, then every run's figures).

    A folder of several experiments (e.g. ``results/``) gets the sweep figures of each sweep in it
    (see ``sweep_groups``), then every run's figures.
    ``runs``: the runs under ``path`` already read (default: read them, damage raising DamagedRecord).
    Returns (PNG/PDF paths written, one-line notes for figures skipped because their data is absent).
    """
    path = Path(path)
    if runs is None:
        runs = load_runs(path) if path.is_dir() else []
    runs = _job_order(runs)
    if not runs:
        return [], [f"skipped all figures: {path} holds no run records (summary.json)"]
    paths, notes = [], []
    for sweep_dir, group in sweep_groups(path, runs).items():
        p, n = sweep_figures(sweep_dir, group)
        paths += p
        notes += n
    for run in runs:
        p, n = run_figures(run)
        paths += p
        notes += n
    return paths, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bnlab-plot", description="Draw figures from bnlab run records (a run or sweep dir)."
    )
    parser.add_argument("path", type=Path, help="a run directory or a multirun directory")
    args = parser.parse_args(argv)

    def body():
        paths, notes = make_figures(args.path, posthoc.usable_runs(args.path, "bnlab-plot"))
        for p in paths:
            print(p)
        for n in notes:
            print(n)

    return posthoc.main("bnlab-plot", body)


if __name__ == "__main__":
    sys.exit(main())
