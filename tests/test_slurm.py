"""Sweeps on a real SLURM cluster through ``hydra/launcher=slurm_local`` (submitit_slurm).

They need a cluster that answers: ``bash scripts/slurm_cluster.sh up`` starts a single-node one
(munge, MariaDB + slurmdbd accounting, slurmctld, slurmd); CI does so before ``make test``. Without
one they skip, with that reason. Every job is a real SLURM job (sbatch array, srun step); submitit
polls its state with sacct and requeues it with ``scontrol requeue``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import BNLAB, run_bnlab
from test_preemption_submitit import RUN, THREADS, _env, _finish, _train_step

pytestmark = pytest.mark.slurm


def _cluster_answers() -> str | None:
    """Why no SLURM cluster can take jobs here, or None when one can."""
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "no SLURM commands here (sinfo, sbatch); run `bash scripts/slurm_cluster.sh up` first"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s; run `bash scripts/slurm_cluster.sh up`"
    states = res.stdout.split()
    if res.returncode != 0 or "up" not in states or not ({"idle", "mix", "alloc"} & set(states)):
        return f"no SLURM partition up with a usable node ({(res.stderr or res.stdout).strip()[:120]}); " \
               f"run `bash scripts/slurm_cluster.sh up`"
    return None


WHY_NOT = _cluster_answers()
if WHY_NOT:
    pytestmark = [pytest.mark.slurm, pytest.mark.skip(reason=WHY_NOT)]


@pytest.fixture
def job_name():
    """A unique SLURM job name for the test; its jobs are cancelled at the end, whatever happened."""
    name = f"bnlab-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30)


def slurm(job_name: str, sweep_dir: Path) -> list[str]:
    return ["hydra/launcher=slurm_local", f"hydra.launcher.name={job_name}", f"hydra.sweep.dir={sweep_dir}"]


FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def sacct_states(job_id: str, wait: float = 60) -> list[str]:
    """Every state SLURM's accounting recorded for the job (``--duplicates``: requeued runs too), once the
    last one is final: slurmdbd records a job's end a moment after submitit has read its result."""
    deadline = time.monotonic() + wait
    while True:
        res = subprocess.run(["sacct", "-n", "-X", "-P", "--duplicates", "-o", "State", "-j", job_id],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        states = [s.split()[0] for s in res.stdout.split()]
        if (states and states[-1] in FINAL) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM job ids of the sweep's jobs: submitit's folders holding a job's log (``<id>`` for one job,
    ``<array id>_<task>`` for several; an array's own folder holds only its pickles)."""
    return sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and any(p.glob("*_log.*")))


def test_a_sweep_runs_as_slurm_jobs_with_accounting_and_no_warnings(tmp_path, cifar_dir, job_name):
    sweep = tmp_path / "sweep"
    res = run_bnlab(["-m", *RUN, "train.steps=12", "train.eval_every=6", "optim.lr=0.01,0.05",
                     *slurm(job_name, sweep)], tmp_path, cifar_dir, env_extra=THREADS)
    assert res.returncode == 0, res.stderr
    assert "sacct" not in res.stdout + res.stderr  # accounting answers: no warning per poll
    for job, lr in (("0", 0.01), ("1", 0.05)):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["lr"] == lr and summary["steps"] == 12
    ids = job_ids(sweep)
    assert len(ids) == 2 and all(sacct_states(i) == ["COMPLETED"] for i in ids), [sacct_states(i) for i in ids]


def test_one_failing_job_fails_alone(tmp_path, cifar_dir, corrupt_cifar, job_name):
    sweep = tmp_path / "sweep"
    res = run_bnlab(["-m", *RUN, "train.steps=12", "train.eval_every=6", f"data.root={cifar_dir},{corrupt_cifar}",
                     *slurm(job_name, sweep)], tmp_path, cifar_dir, env_extra=THREADS)
    assert res.returncode == 1, res.stderr
    assert "data_batch_3 is corrupt or truncated" in res.stderr
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "completed"
    assert not (sweep / "1" / "summary.json").exists()


def test_without_accounting_one_line_instead_of_a_warning_per_poll(tmp_path, cifar_dir, job_name):
    """A cluster whose sacct fails (accounting off): a fake sacct first on PATH says what such clusters say."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    (fake / "sacct").chmod(0o755)
    sweep = tmp_path / "sweep"
    res = run_bnlab(["-m", *RUN, "train.steps=12", "train.eval_every=6", "optim.lr=0.01,0.05",
                     *slurm(job_name, sweep)], tmp_path, cifar_dir,
                    env_extra={**THREADS, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if "sacct" in ln]
    assert len(lines) == 1 and lines[0].startswith("bnlab: warning: sacct does not answer on this SLURM cluster ("
                                                   "sacct: error: Slurm accounting storage is disabled)"), lines
    assert all((sweep / j / "summary.json").is_file() for j in ("0", "1"))


def test_no_controller_is_one_line_and_exit_2(tmp_path, cifar_dir):
    """The cluster forgotten or down (a fake sinfo that cannot reach it): one line before any submission."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sinfo").write_text("#!/bin/sh\n"
                                "echo 'sinfo: error: Unable to contact slurm controller (connect failure)' >&2\n"
                                "exit 1\n")
    (fake / "sinfo").chmod(0o755)
    sweep = tmp_path / "sweep"
    res = run_bnlab(["-m", *RUN, "train.steps=4", *slurm("unused", sweep)], tmp_path, cifar_dir,
                    env_extra={**THREADS, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnlab: error: hydra/launcher=slurm*: no SLURM controller "
                                                   "answers here (sinfo: error: Unable to contact"), lines
    assert "scripts/slurm_cluster.sh up" in lines[0] and not sweep.exists()


def _start_sweep(args: list[str], cwd: Path, data_dir: Path) -> subprocess.Popen:
    env = {**_env(), "BNLAB_DATA_DIR": str(data_dir)}
    return subprocess.Popen([str(BNLAB), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_step(proc: subprocess.Popen, metrics: Path, step: int, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while _train_step(metrics) < step:
        assert proc.poll() is None and time.monotonic() < deadline, \
            f"the job ended or stalled before step {step}: {proc.poll()} {_finish(proc, 30)}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """RUN uninterrupted, plain bnlab, one thread: the reference the SLURM jobs must equal bitwise."""
    from conftest import CIFAR_MINI

    base = tmp_path_factory.mktemp("straight")
    res = run_bnlab([*RUN, f"hydra.run.dir={base / 'run'}"], base, CIFAR_MINI, env_extra=THREADS)
    assert res.returncode == 0, res.stderr
    return base / "run"


def test_preemption_requeues_through_slurm_and_the_job_resumes_bitwise(straight, tmp_path, cifar_dir, job_name):
    """``scancel --signal=USR2`` (what SLURM sends before preempting): bnlab checkpoints, submitit asks SLURM
    to requeue (``scontrol requeue``), SLURM runs the job again, it resumes in the same job dir."""
    sweep = tmp_path / "sweep"
    proc = _start_sweep(["-m", *RUN, *slurm(job_name, sweep)], tmp_path, cifar_dir)
    try:
        _wait_for_step(proc, sweep / "0" / "metrics.jsonl", 10)
        (job,) = job_ids(sweep)
        res = subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        out, err = _finish(proc, 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out + err
    assert sacct_states(job) == ["REQUEUED", "COMPLETED"], sacct_states(job)
    log = (sweep / ".submitit" / job / f"{job}_0_log.out").read_text()
    assert "Caught signal SIGUSR2" in log and f"Requeued job {job}" in log, log
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["resumed_at_steps"]) == 1, summary
    assert (sweep / "0" / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()


@pytest.mark.slow
def test_a_time_limit_requeues_through_slurm_and_the_job_resumes_bitwise(tmp_path, cifar_dir, job_name):
    """slow: ~4 min. ``timeout_min=2``, ``signal_delay_s=30``: SLURM signals USR2 30 to 90 s before the limit
    (its timer's resolution); bnlab checkpoints, submitit requeues (a timeout: ``max_num_timeout``), the
    job resumes. Its length (~150 s of training) comes from a calibration run on this machine."""
    from test_preemption_submitit import LONG, _steps_for

    steps = _steps_for(150, tmp_path, cifar_dir)
    long = [*LONG, f"train.steps={steps}", f"train.eval_every={steps // 4}"]
    ref = run_bnlab([*long, f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path, cifar_dir, env_extra=THREADS)
    assert ref.returncode == 0, ref.stderr
    sweep = tmp_path / "sweep"
    proc = _start_sweep(["-m", *long, *slurm(job_name, sweep), "hydra.launcher.timeout_min=2"], tmp_path, cifar_dir)
    try:
        out, err = _finish(proc, 900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out + err
    (job,) = job_ids(sweep)
    states = sacct_states(job)
    assert states[-1] == "COMPLETED" and states.count("REQUEUED") >= 1, states
    log = (sweep / ".submitit" / job / f"{job}_0_log.out").read_text()
    assert "this job is timed-out" in log and f"Requeued job {job}" in log, log
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_at_steps"], summary
    assert (sweep / "0" / "metrics.jsonl").read_bytes() == (tmp_path / "straight" / "metrics.jsonl").read_bytes()
