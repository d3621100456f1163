"""Which runs a sweep figure compares: sweeps, seed groups, facets and ResNet depths, by config."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bnlab.plots.style import _num
from bnlab.records.store import Run, flatten

# config keys that do not make two runs different experiments (seed: the replicate axis)

IGNORED_CONFIG = ("seed", "logger", "train.progress", "data.root", "data.download")



def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED_CONFIG)


def _config(run: Run) -> dict:
    # lists (and empty dicts) as JSON text: hashable, so runs can be grouped by value
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
            for k, v in flatten(run.config).items() if not _ignored(k)}


def varying_keys(runs: list[Run]) -> list[str]:
    """Config keys (dotted, seed and logging left out) whose value is not the same in every run."""
    flats = [_config(r) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]


def _label(run: Run, keys: list[str], runs: list[Run]) -> str:
    """``key=value`` of the given keys, leaving out keys some runs lack (implied by e.g. init.scheme)."""
    shown = [k for k in keys if all(k in _config(r) for r in runs)]
    cfg = _config(run)
    return ", ".join(f"{k}={cfg.get(k)}" for k in shown)


def _facets(runs: list[Run], exclude: tuple[str, ...]) -> list[tuple[str, list[Run]]]:
    """Runs split by every varying key not starting with one of ``exclude``: [(label, runs)]."""
    keys = [k for k in varying_keys(runs) if not any(k == e or k.startswith(e + ".") for e in exclude)]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        cfg = _config(r)
        key = json.dumps([cfg.get(k) for k in keys], default=str)
        groups.setdefault(key, []).append(r)
    return [(_label(g[0], keys, runs), g) for g in groups.values()]


def seed_groups(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped by config with ``seed`` (and logging) removed; the pair id cannot do it, seeds change it."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(json.dumps(_config(r), sort_keys=True, default=str), []).append(r)
    return list(groups.values())


def _all_arms(runs: list[Run]) -> list[str]:
    arms: list[str] = []
    for r in runs:
        arms += [a for a in r.arms if a not in arms]
    return arms


def _final(run: Run, arm: str) -> tuple[float, bool] | None:
    a = run.summary["arms"].get(arm)
    if a is None:
        return None
    return _num(a.get("final_test_acc")), bool(a.get("diverged"))


def _lr(run: Run) -> float:
    return float(run.summary["lr"])


def _bs(run: Run) -> int:
    return int(run.summary["batch_size"])

def _job_order(runs: list[Run]) -> list[Run]:
    """Runs in sweep order: numbered job dirs (Hydra's 0, 1, ..., 10) numerically, others by path."""
    return sorted(runs, key=lambda r: (str(r.dir.parent), int(r.dir.name) if r.dir.name.isdigit() else -1,
                                       r.dir.name))


def sweep_groups(path: Path, runs: list[Run]) -> dict[Path, list[Run]]:
    """The sweeps among ``runs``: {multirun dir: its runs}, for sweep figures that compare like with like.

    A sweep is the runs that share a parent directory (Hydra's multirun dir holds one dir per job), so
    ``results/`` with several experiments gives one group per experiment's sweep instead of one
    meaningless sweep over all of them; a lone run dir is no sweep. ``path`` itself is a group when
    it is a multirun dir, even of one job, so its figure section says why nothing was compared.
    """
    path = Path(path)
    if (path / "summary.json").exists():
        return {}
    groups: dict[Path, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.dir.parent, []).append(r)
    return {d: rs for d, rs in groups.items() if len(rs) >= 2 or d.resolve() == path.resolve()}



# ----------------------------------------------------------------------------- sweeps: paper scale (issue 18)

_DEPTH = re.compile(r"^resnet(?P<depth>\d+)$")


def depth_groups(runs: list[Run]) -> dict[int, list[Run]]:
    """The ResNet runs by depth (resnet<depth>), shallowest first."""
    out: dict[int, list[Run]] = {}
    for r in runs:
        m = _DEPTH.match(str(r.summary.get("model")))
        if m:
            out.setdefault(int(m["depth"]), []).append(r)
    return dict(sorted(out.items()))

