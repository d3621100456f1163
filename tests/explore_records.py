"""Records and pages for the explorer tests, with a stand-in for the trainer's ``bn_stats`` wiring.

Until the lead wires ``bn_stats.BNRecorder`` into bnlab/train.py, ``add_bn_records(run_dir, every)``
retrains each arm of a real run the way the trainer would (the run's own config: model, init, seed, lr,
batch size; real CIFAR batches) with the recorder armed every ``every`` steps, and merges what it records
into the run's metrics.jsonl: ``bn_stats/`` and ``act_hist/`` keys into the train row of that step,
``bn_batch/`` keys into a probe row at the last armed step. Real networks, activations, running statistics.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CIFAR_MINI, QUICK, run_bnlab
from omegaconf import OmegaConf

from bnlab import data, init, models
from bnlab.metrics import bn_stats
from bnlab.metrics.activations import conv_layers
from bnlab.results import dumps, loads

EXPLORE = Path(sys.executable).with_name("bnlab-explore")  # the console script, once pyproject names it
PROBES = ["metrics.activations.every=4", "metrics.activations.channels=[0,1]", "metrics.landscape.every=4",
          "metrics.ics.every=4", "metrics.curvature.every=6", "metrics.curvature.max_hvps=6",
          "metrics.layer_norms.every=4", "logger=none"]


def arm_records(cfg, kind: str, ds, every: int) -> tuple[dict[int, dict], dict[int, dict]]:
    """(train keys per step, probe keys per step) of one arm trained with the recorder armed at the cadence."""
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, kind, cfg.norm, ds.num_classes)
    init.initialize(model, cfg.init, seed=cfg.seed)
    rec = bn_stats.BNRecorder(model, conv_layers(model)[-1:], [0, 1], bins=24, values=64)
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg.optim.lr))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (ds.mean, ds.std))
    n, bs, steps = ds.train_size, int(cfg.data.batch_size), int(cfg.train.steps)
    train, probe = {}, {}
    for step in range(steps):
        idx = torch.arange(step * bs, (step + 1) * bs) % n
        x, y = (ds.train_x[idx].float() / 255 - mean) / std, ds.train_y[idx]
        due = step % every == 0
        rec.armed = {"bn_stats", "act_hist"} | ({"bn_batch"} if step + every >= steps else set()) if due else set()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if due:
            t, p = rec.collect()
            train[step] = {k: float(v) for k, v in t.items()}
            if p:
                probe[step] = p
    return train, probe


def add_bn_records(run_dir: Path, every: int = 4) -> None:
    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    ds = data.load(cfg.data, torch.device("cpu"))
    rows = [loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for arm in cfg.arms:
        train, probe = arm_records(cfg, arm, ds, every)
        for row in rows:
            if row["arm"] == arm and row["split"] == "train":
                row.update(train.pop(row["step"], {}))
        rows += [{"step": s, "arm": arm, "split": "train", **v} for s, v in train.items()]  # steps not logged
        rows += [{"step": s, "arm": arm, "split": "probe", **v} for s, v in probe.items()]
    rows.sort(key=lambda r: r["step"])
    (run_dir / "metrics.jsonl").write_text("".join(dumps(r) + "\n" for r in rows))


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
    """A real paired run (every probe the curves view draws) plus bn_stats records (``add_bn_records``)."""
    if CIFAR_MINI is None:
        pytest.skip("needs the CIFAR-10 subset: set BNLAB_DATA_DIR (CI has ../shared/data/cifar10-mini)")
    base = tmp_path_factory.mktemp("explore")
    out = base / "run"
    res = run_bnlab([*QUICK, *PROBES, f"hydra.run.dir={out}"], base, CIFAR_MINI)
    assert res.returncode == 0, res.stderr
    add_bn_records(out, every=4)
    return out


@pytest.fixture(scope="session")
def explore_page(explore_run):
    """``bnlab-explore RUN`` -> RUN/explore.html."""
    res = run_explore([str(explore_run)], explore_run.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(explore_run / "explore.html")
    return explore_run / "explore.html"
