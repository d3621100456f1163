"""Synthetic run records (config.yaml, summary.json, metrics.jsonl) with effects chosen by the test.

The same files ``bnlab`` writes (bnlab/records/store.py), filled with numbers whose truth is known, so a
verdict test knows what bnlab-claims must conclude. ``noise(seed)`` is reproducible per seed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
TEST_SIZE = 1017


def noise(seed: int, scale: float, salt: int = 0) -> float:
    return random.Random(seed * 1000 + salt).gauss(0.0, scale)


def arm(acc: float | None, steps_to_target: int | None = None, diverged: bool = False) -> dict:
    return {"diverged": diverged, "final_test_acc": acc, "best_test_acc": acc, "steps_to_target": steps_to_target,
            "diverged_step": None}


def write_run(path: Path, *, arms: dict, seed: int = 0, experiment: str | None = "santurkar_fig1", steps: int = 1500,
              lr: float = 0.1, batch: int = 128, rows: list[dict] | None = None, claims_tested=None,
              probe_every: int = 100, extra: dict | None = None) -> Path:
    """One run directory; ``arms``: {arm: arm(...)}; ``rows``: metrics rows; ``extra``: config keys merged in."""
    path.mkdir(parents=True, exist_ok=True)
    config = {"arms": list(arms), "seed": seed, "experiment_name": experiment, "claims_tested": claims_tested,
              "model": {"arch": "vgg11", "width": 0.25}, "data": {"name": "cifar10", "batch_size": batch},
              "optim": {"name": "sgd", "lr": lr, "schedule": "constant"},
              "train": {"steps": steps, "eval_every": 100, "log_every": 10, "target_acc": 0.4},
              "metrics": {"landscape": {"every": probe_every}, "ics": {"every": probe_every}}}
    for key, value in (extra or {}).items():
        node, leaf = config, key.split(".")
        for part in leaf[:-1]:
            node = node.setdefault(part, {})
        node[leaf[-1]] = value
    if experiment is None:
        del config["experiment_name"]  # an older record: no experiment_name key at all
    summary = {"schema": 1, "pair_id": f"p{seed}{lr}{steps}", "model": "vgg11", "width": 0.25, "lr": lr,
               "batch_size": batch, "seed": seed, "steps": steps, "target_acc": 0.4,
               "data": {"name": "cifar10", "train_size": 5085, "test_size": TEST_SIZE, "num_classes": 10},
               "arms": arms}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows or []))
    return path


def landscape_rows(steps: int, every: int, band: dict, loss: float = 2.0) -> list[dict]:
    """Probe rows per arm with loss_band_rel = band[arm](step) (absolute band = that times ``loss``)."""
    rows = []
    for step in range(0, steps + 1, every):
        for name, fn in band.items():
            rel = fn(step)
            rows.append({"step": step, "arm": name, "split": "probe", "landscape/loss": loss,
                         "landscape/loss_min": loss, "landscape/loss_max": loss + rel * loss,
                         "landscape/loss_band_rel": rel, "landscape/beta_eff": 1.0})
    return rows


def claims_cli(root: Path, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """``bnlab-claims ROOT`` in a subprocess; the result and claims.json by claim id."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}  # wide: a table cell is not folded
    res = subprocess.run([str(BIN / "bnlab-claims"), str(root), *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    out = root / "claims.json"
    return res, ({c["id"]: c for c in json.loads(out.read_text())} if out.exists() else {})
