"""Which runs are evidence for a claim (docs/science.md sec. 9): the experiment, trajectories, seeds.

- A run's experiment is ``experiment_name`` in its config.yaml (the CLI records the
  ``experiment=`` choice there). Older records lack it: their experiment is the folder
  right under a ``results/`` folder when that folder names a known experiment and no
  other part of the path does; otherwise it is unknown, and such a run is read only by
  the claims its config names in ``claims_tested``.
- A trajectory is the config without train length, probe, evaluation and logging
  cadences, logger, progress and paths (``NOT_IN_TRAJECTORY``), plus its seed: training
  is deterministic and probes leave the model untouched, so two runs with the same key
  are copies or prefixes of one another, and count once (the longest is kept).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from bnlab.records.store import Run, flatten

# Keys (and key prefixes) that do not change the weights a run goes through
NOT_IN_TRAJECTORY = ("train.steps", "train.epochs", "train.log_every", "train.eval_every", "train.target_acc",
                     "train.progress", "train.save_checkpoint", "train.checkpoint_every", "train.resume",
                     "metrics", "logger", "data.root", "data.download", "experiment_name", "claims_tested",
                     "arms", "hydra")
LENGTH = ("train.steps", "train.epochs")
UNKNOWN = "(unknown)"
OTHER_EXPERIMENT = "another experiment:"  # why a claim ignores a run of an experiment it does not read


@cache
def known_experiments() -> frozenset[str]:
    """The experiment files shipped in configs/experiment/."""
    folder = resources.files("bnlab.configs") / "experiment"
    return frozenset(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def experiment_of(run: Run) -> tuple[str | None, str]:
    """(experiment name or None, how it was found)."""
    name = run.get("experiment_name")
    if name:
        return str(name), "experiment_name in config.yaml"
    parts = Path(run.dir).resolve().parts
    named = [i for i, p in enumerate(parts) if p in known_experiments()]
    if len(named) == 1 and named[0] > 0 and parts[named[0] - 1] == "results":
        return parts[named[0]], "its folder under results/ (config.yaml has no experiment_name)"
    return None, ("no experiment_name in config.yaml and no single experiment folder under results/ "
                  "in its path")


def claims_tested(run: Run) -> list[str]:
    """Claim ids the run's config names in ``claims_tested`` (its experiment file says what it tests)."""
    value = run.get("claims_tested")
    return [str(v) for v in value] if isinstance(value, list) else []


def trajectory_key(run: Run, also_drop: tuple[str, ...] = ()) -> str:
    """The run's config without ``NOT_IN_TRAJECTORY`` (and ``also_drop``), seed included, as a string.

    With a learning-rate schedule other than constant, the length shapes the trajectory and stays in.
    """
    flat = flatten(run.config) if run.config else {"pair_id": run.summary["pair_id"]}
    drop = NOT_IN_TRAJECTORY + also_drop
    if flat.get("optim.schedule", "constant") != "constant":
        drop = tuple(k for k in drop if k not in LENGTH)
    kept = {k: v for k, v in flat.items() if not any(k == d or k.startswith(d + ".") for d in drop)}
    kept["seed"] = run.summary["seed"]
    return json.dumps(kept, sort_keys=True, default=str)


def label(run: Run, root: Path) -> str:
    """The run's folder relative to ``root`` (``.`` for root itself), else its full path."""
    try:
        return str(Path(run.dir).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(run.dir)


def one_per_trajectory(runs: list[Run], root: Path) -> tuple[list[Run], dict[str, str]]:
    """The longest run of each trajectory, and {label: why left out} for the copies and prefixes."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(trajectory_key(r), []).append(r)
    kept, dropped = [], {}
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: (-r.summary["steps"], label(r, root)))
        kept.append(rs[0])
        for r in rs[1:]:
            what = "a copy" if r.summary["steps"] == rs[0].summary["steps"] else "a prefix"
            dropped[label(r, root)] = (f"{what} of {label(rs[0], root)} ({r.summary['steps']} of "
                                       f"{rs[0].summary['steps']} steps of the same trajectory): counted once")
    return sorted(kept, key=lambda r: label(r, root)), dropped
