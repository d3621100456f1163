"""Records from real short `bnlab` runs on the CIFAR-10 subset, shared by plot, report and claims tests.

- ``single_run``: one paired run with every probe on (landscape, ICS, divergence,
  curvature, activations), then ``bnlab-analyze`` on its checkpoints.
- ``sweep_run``: a multirun over 2 seeds x 2 learning rates; at lr 1.0 the
  unnormalized arm diverges (its loss blows up within a few steps), so sweep
  figures and claims meet a diverged cell.
Both are built once per test session (about 40 s on 2 CPU cores).
"""

from __future__ import annotations

import pytest
from conftest import CIFAR_MINI, QUICK, run_bnlab

PROBES = ["metrics.landscape.every=4", "metrics.ics.every=4", "metrics.divergence.every=6",
          "metrics.curvature.every=6", "metrics.curvature.max_hvps=8", "metrics.curvature.slq_runs=1",
          "metrics.curvature.slq_steps=4", "metrics.activations.every=4",
          "metrics.layer_norms.every=4", "logger=none"]
# claims_tested: the sweep is a user's own experiment that names the claims it tests (bnlab-claims reads it for them)
SWEEP = ["-m", *QUICK, "logger=none", "seed=0,1", "optim.lr=0.05,1.0",
         "claims_tested=[bn_higher_lr,bn_higher_accuracy,bn_faster_to_target]"]


def _need_data():
    if CIFAR_MINI is None:
        pytest.skip("needs the CIFAR-10 subset: set BNLAB_DATA_DIR (CI has ../shared/data/cifar10-mini)")


@pytest.fixture(scope="session")
def single_run(tmp_path_factory):
    _need_data()
    base = tmp_path_factory.mktemp("single")
    out = base / "run"
    res = run_bnlab([*QUICK, *PROBES, f"hydra.run.dir={out}"], base, CIFAR_MINI)
    assert res.returncode == 0, res.stderr
    from bnlab import analyze

    assert analyze.main([str(out), "--samples", "64", "--k", "2", "--max-hvps", "10", "--trace-samples", "3",
                         "--slq-runs", "1", "--slq-steps", "5", "--points-1d", "5", "--points-2d", "3",
                         "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="session")
def sweep_run(tmp_path_factory):
    _need_data()
    base = tmp_path_factory.mktemp("sweep")
    out = base / "sweep"
    res = run_bnlab([*SWEEP, f"hydra.sweep.dir={out}"], base, CIFAR_MINI)
    assert res.returncode == 0, res.stderr
    return out
