"""Read W&B offline runs back with wandb's own reader, ``wandb leet inspect`` (wandb >= 0.31).

``--json`` prints the run's transaction log one record a line; ``--summary
--json`` prints the run's state, summary, config and tags as one object. Both
are what a W&B user sees of an offline run before ``wandb sync``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WANDB = Path(sys.executable).with_name("wandb")  # the CLI of this environment


def _leet(*args: str) -> str:
    res = subprocess.run([str(WANDB), "leet", "inspect", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"wandb leet inspect {' '.join(args)} failed: {res.stderr[-2000:]}"
    return res.stdout


def records(run_dir: Path) -> list[dict]:
    """Every record of the run's ``.wandb`` log, as wandb decodes it."""
    return [json.loads(line) for line in _leet("--json", str(run_dir)).splitlines() if line.strip()]


def summary(run_dir: Path) -> dict:
    """``wandb leet inspect --summary --json``: state, summary, config, tags, project of the run."""
    return json.loads(_leet("--summary", "--json", str(run_dir)))


def read_run(run_dir: Path) -> dict:
    """The run's id, group/job_type, config and history rows (step -> {key: value})."""
    info, config, history = {}, {}, {}
    for rec in records(run_dir):
        kind = rec["type"]
        if kind == "run":
            r = rec["run"]
            info = {"id": r["run_id"], "group": r.get("run_group", ""), "job_type": r.get("job_type", ""),
                    "project": r.get("project", "")}
            config.update(r.get("config", {}).get("update", {}))
        elif kind == "config":
            config.update(rec["config"].get("update", {}))
        elif kind == "history":
            row = rec["history"]["item"]
            history.setdefault(int(row["_step"]), {}).update(row)
    config.pop("_wandb", None)
    return {**info, "config": config, "history": history}


def read_all(wandb_dir: Path) -> dict:
    """job_type (the arm) -> read_run(...) for every offline run under ``<run_dir>/wandb``."""
    runs = [read_run(d) for d in sorted(Path(wandb_dir).glob("offline-run-*"))]
    return {r["job_type"]: r for r in runs}
