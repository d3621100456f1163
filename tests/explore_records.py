"""Records and pages for the explorer tests: a real paired run with every probe the page draws (the
trainer's own ``bn_stats`` records included), its page, and readers of both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CIFAR_MINI, QUICK, run_bnlab

EXPLORE = Path(sys.executable).with_name("bnlab-explore")  # the console script, once pyproject names it
PROBES = ["metrics.activations.every=4", "metrics.activations.channels=[0,1]", "metrics.landscape.every=4",
          "metrics.bn_stats.every=4", "metrics.bn_stats.hist_every=4", "metrics.bn_stats.batch_every=8",
          "metrics.bn_stats.bins=24", "metrics.bn_stats.batch_values=64",
          "metrics.ics.every=4", "metrics.curvature.every=6", "metrics.curvature.max_hvps=6",
          "metrics.layer_norms.every=4", "logger=none"]


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def run_explore(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """bnlab-explore in a subprocess (the console script if installed, else ``python -m bnlab.explore``)."""
    cmd = [str(EXPLORE)] if EXPLORE.exists() else [sys.executable, "-m", "bnlab.explore"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def page_data(html: Path) -> dict:
    """The JSON the page draws from."""
    m = re.search(r'<script type="application/json" id="bnlab-data">(.*?)</script>', Path(html).read_text(), re.S)
    return json.loads(m[1].replace("<\\/", "</"))


@pytest.fixture(scope="session")
def explore_run(tmp_path_factory):
    """A real paired run with every probe the page draws, bn_stats records included (from the trainer)."""
    if CIFAR_MINI is None:
        pytest.skip("needs the CIFAR-10 subset: set BNLAB_DATA_DIR (CI has ../shared/data/cifar10-mini)")
    base = tmp_path_factory.mktemp("explore")
    out = base / "run"
    res = run_bnlab([*QUICK, *PROBES, f"hydra.run.dir={out}"], base, CIFAR_MINI)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="session")
def explore_page(explore_run):
    """``bnlab-explore RUN`` -> RUN/explore.html."""
    res = run_explore([str(explore_run)], explore_run.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(explore_run / "explore.html")
    return explore_run / "explore.html"
