"""Sweeps with several jobs at once (joblib launcher), and a sweep in which one job fails.

- Concurrent jobs change nothing in the numbers: a 4-job sweep run 2 at a time
  by the joblib launcher (each job in its own loky worker process) writes the
  same records as the same sweep run one job after the other by the basic
  launcher, bitwise, as long as every job uses the same number of torch
  threads (on CPU the thread count changes float rounding; loky gives each
  worker ``cores // n_jobs`` threads unless OMP_NUM_THREADS is set).
- A job that meets bad input at run time (here: a truncated data file, which
  the preflight does not read) prints one line and leaves no record; the jobs
  running beside it and the ones queued after it run to the end with complete
  records; ``bnlab -m`` exits 1 once all jobs are done.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import QUICK, read_jsonl, run_bnlab
from run_fixtures import SWEEP

STEPS = 12  # QUICK: train.steps=12, train.eval_every=6


def assert_complete(run_dir: Path, arms=("bn", "none")) -> dict:
    """A finished run record: summary completed, every step of every arm, test rows at 0, 6, 12."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS, summary
    assert set(summary["arms"]) == set(arms)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    for arm in arms:
        train = [r["step"] for r in rows if r["arm"] == arm and r["split"] == "train"]
        test = [r["step"] for r in rows if r["arm"] == arm and r["split"] == "test"]
        if summary["arms"][arm]["diverged"]:  # a diverged arm stops at its divergence step
            last = summary["arms"][arm]["diverged_step"]
            assert train == list(range(last + 1)), (arm, train)
        else:
            assert train == list(range(STEPS)) and test == [0, 6, 12], (arm, train, test)
    assert (run_dir / "config.yaml").exists()
    return summary


def _without_clock(summary: dict) -> dict:
    """The summary without wall-clock fields (train_time_s, probe_time_s, wall_time_s, ...)."""
    if isinstance(summary, dict):
        return {k: _without_clock(v) for k, v in summary.items() if not k.endswith("time_s")}
    return summary


def _records(sweep_dir: Path) -> dict:
    """(seed, lr) -> (metrics.jsonl bytes, summary without clock fields, config.yaml text)."""
    out = {}
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        run_dir = summary_path.parent
        summary = assert_complete(run_dir)
        key = (summary["seed"], summary["lr"])
        assert key not in out, f"two jobs with seed, lr = {key}"
        out[key] = ((run_dir / "metrics.jsonl").read_bytes(), _without_clock(summary),
                    (run_dir / "config.yaml").read_text())
    return out


@pytest.mark.slow
def test_concurrent_joblib_jobs_write_the_records_of_a_sequential_sweep(tmp_path, cifar_dir):
    """slow: a 4-job basic sweep, then the same with joblib 2 at a time (~25 s + ~25 s on 2 cores).

    SWEEP (2 seeds x 2 lrs, QUICK; at lr 1.0 the no-BN arm diverges). Both sweeps run
    with one torch thread per job, so the only difference left is concurrency. (With 2
    threads per job, i.e. 4 threads on these 2 cores, one run's records differed from
    the sequential ones in the last float digits: keep threads x n_jobs <= cores.)
    """
    out, sweep_run = tmp_path / "joblib", tmp_path / "basic"
    one = {"OMP_NUM_THREADS": "1"}
    res = run_bnlab([*SWEEP, f"hydra.sweep.dir={sweep_run}"], tmp_path, cifar_dir, env_extra=one)
    assert res.returncode == 0, res.stderr
    res = run_bnlab([*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={out}"],
                    tmp_path, cifar_dir, env_extra=one)
    assert res.returncode == 0, res.stderr
    launcher = (out / "multirun.yaml").read_text()
    assert "hydra_joblib_launcher" in launcher and "n_jobs: 2" in launcher  # really joblib, 2 at a time
    concurrent, sequential = _records(out), _records(sweep_run)
    assert sorted(concurrent) == sorted(sequential) == [(0, 0.05), (0, 1.0), (1, 0.05), (1, 1.0)]
    for key, (metrics, summary, config) in sequential.items():
        assert concurrent[key][0] == metrics, f"metrics.jsonl of seed, lr = {key} differ"
        assert concurrent[key][1] == summary, f"summary.json of seed, lr = {key} differs"
        assert concurrent[key][2] == config, f"config.yaml of seed, lr = {key} differs"
    diverged = [s["arms"]["none"]["diverged"] for _, s, _ in concurrent.values()]
    assert sorted(diverged) == [False, False, True, True]  # the diverged cells came through too


def test_one_failing_job_leaves_the_other_jobs_complete(tmp_path, cifar_dir, corrupt_cifar):
    """4 jobs, 2 at a time; job 1 reads a truncated data_batch_3 and fails while job 0 runs.

    The preflight composes and validates every swept value but reads no data, so the
    sweep starts; job 1 fails a second in, beside job 0, before jobs 2 and 3 start.
    """
    roots = []
    for i in range(4):  # four spellings of data.root: three good copies and the corrupt one
        link = tmp_path / "roots" / f"r{i}"
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(corrupt_cifar if i == 1 else cifar_dir, target_is_directory=True)
        roots.append(link)
    bad_file = roots[1] / "cifar-10-batches-py" / "data_batch_3"
    out = tmp_path / "sweep"
    res = run_bnlab(["-m", *QUICK, "logger=none", f"data.root={','.join(map(str, roots))}",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={out}"],
                    tmp_path, cifar_dir)
    # bnlab -m returns non-zero once every job is done: Hydra reports the failed job (exit 1)
    assert res.returncode == 1, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("bnlab: error: ")]
    assert f"bnlab: error: {bad_file} is corrupt or truncated (UnpicklingError); replace it" in errors[0], errors
    assert all(str(bad_file) in ln for ln in errors), errors  # every error line names the bad file
    assert "Traceback" not in res.stderr, res.stderr
    for job in ("0", "2", "3"):  # beside the failed job (0) and queued after it (2, 3)
        summary = assert_complete(out / job)
        assert summary["data"]["train_size"] == 5085
        assert Path(summary["data"]["source"]).parent == roots[int(job)]
    failed = out / "1"
    assert not (failed / "summary.json").exists() and not (failed / "metrics.jsonl").exists()
    assert not (failed / "config.yaml").exists()
    assert not failed.exists()  # bnlab removes the directory of a job that wrote no record
