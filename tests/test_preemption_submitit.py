"""Preemption under ``hydra/launcher=submitit_local``: checkpoint, requeue, resume in the same job dir.

What happens (submitit 1.5, hydra-submitit-launcher 1.2, all local processes):

1. ``bnlab -m ... hydra/launcher=submitit_local`` pickles Hydra's launcher (the
   master config, whose ``${now:...}`` values are already resolved and cached,
   travels with it) into ``<sweep dir>/.submitit/<job id>/<job id>_submitted.pkl``
   and starts a controller (``python -m submitit.local._local``) that runs the
   job as ``python -u -m submitit.core._submit <sweep dir>/.submitit/%j``.
2. submitit installs its preemption handler for SIGUSR2; bnlab's StopSignals
   wraps it. On SIGUSR2 bnlab finishes the step, flushes the records, writes
   ``checkpoints/last.pt``, then calls submitit's handler: it calls the
   launcher's ``checkpoint()`` (a DelayedSubmission of itself, same overrides),
   re-dumps the pickle and exits with code 144 (LOCAL_REQUEUE_RETURN_CODE).
3. The controller sees 144 and starts the same command again: the same job id,
   the same pickle, the same overrides, the same ``${now:...}`` (the resolver
   cache came through both pickles), so the same ``<sweep dir>/<job num>``;
   bnlab resumes from ``last.pt`` and completes. The records are bitwise those
   of an uninterrupted run (rows are written step by step, so a stop that
   flushes off the ``train.log_every`` cadence changes nothing).

Two ways to get the signal: the test sends SIGUSR2 to the job process itself
(found in /proc by its command line) once its records show a few steps, with an
explicit ``hydra.sweep.dir`` and with the default ``multirun/${now:...}``
pattern (~20 s each on 2 busy cores); and (slow) the controller's own timeout
signal. ``hydra.launcher.signal_delay_s`` is not a key of submitit_local's
config (and ``+hydra.launcher.signal_delay_s`` is refused by submitit's local
executor), so with ``timeout_min=1`` the controller signals 60 - 30 = 30 s
after the job starts; submitit counts that as a timeout (LocalExecutor requeues
3 times by default; ``+hydra.launcher.max_num_timeout=N`` changes it; the
submitit_slurm default is 0: a time-limit signal is then not requeued, the job
fails with UncompletedJobError, and its checkpoint stays for a rerun).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import BNLAB, run_bnlab

# log_every=1: every step is flushed on its own, so a stop at any step leaves the same bytes.
RUN = ["model=simple_cnn", "model.width=0.25", "data.batch_size=32", "train.steps=80", "train.log_every=1",
       "train.eval_every=20", "train.checkpoint_every=null", "metrics.layer_norms.every=10", "logger=none",
       "train.progress=off"]
SUBMITIT = ["hydra/launcher=submitit_local"]
THREADS = {"OMP_NUM_THREADS": "1"}  # the numbers depend on the thread count: the same for every run here


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true", **THREADS})
    return env


def _train_step(metrics: Path) -> int:
    """The last train step in a metrics.jsonl being written (-1 when none)."""
    if not metrics.is_file():
        return -1
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()
             if line.endswith("}") and '"split": "train"' in line]
    return max(steps, default=-1)


def _job_processes(marker: Path) -> list[int]:
    """Pids of submitit job processes (``-m submitit.core._submit <folder>``) whose folder is under ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "submitit.core._submit" in argv and any(a.startswith(str(marker)) for a in argv):
            pids.append(int(proc.name))
    return pids


def _start(args: list[str], cwd: Path, data_dir: Path) -> subprocess.Popen:
    env = {**_env(), "BNLAB_DATA_DIR": str(data_dir)}
    # its own session: the controller and the job are in its process group, killed with it on failure
    return subprocess.Popen([str(BNLAB), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # a hang or a failed assertion: end the sweep, its controller and its job
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _submitit_log(sweep_dir: Path) -> tuple[str, str]:
    """(job id, the text of its task-0 stdout log) of the one submitit job of this sweep."""
    jobs = [p for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(jobs) == 1, f"expected one submitit job, got {jobs}"
    job = jobs[0].name
    return job, (jobs[0] / f"{job}_0_log.out").read_text()


def _count(log: str, text: str) -> int:
    """Lines of submitit's own logger holding ``text`` (Hydra's console handler repeats them unprefixed)."""
    return sum(text in line for line in log.splitlines() if line.startswith("submitit "))


def _starts(log: str) -> list[datetime]:
    """When each attempt of the job started (submitit's 'Starting with JobEnvironment' lines)."""
    return [datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f")
            for m in re.findall(r"^submitit INFO \(([^)]+)\) - Starting with JobEnvironment", log, re.M)]


def assert_requeued_and_resumed(sweep_dir: Path, straight: Path, steps: int = 80, signals: int | None = 1) -> str:
    """One submitit job, requeued after each SIGUSR2 (``signals`` of them; None: one or more, sent by the
    controller), resumed from bnlab's checkpoint in ``<sweep_dir>/0``, completed with ``straight``'s
    metrics.jsonl bitwise. Returns the job's submitit log."""
    job_dir = sweep_dir / "0"
    assert sorted(p.name for p in sweep_dir.iterdir() if not p.name.startswith(".")) == ["0", "multirun.yaml"]
    job, log = _submitit_log(sweep_dir)
    caught = _count(log, "Caught signal SIGUSR2")
    assert caught >= 1 and (signals is None or caught == signals), log
    assert _count(log, "Calling checkpoint method.") == caught, log
    requeued = re.findall(rf"^submitit INFO .* - Requeued job {job} \(\d+ remaining timeouts\)$", log, re.M)
    assert len(requeued) == caught, log
    # the controller reruns a job only when it exited with 144 (LOCAL_REQUEUE_RETURN_CODE): it did, each time
    assert len(_starts(log)) == caught + 1, log
    assert _count(log, "Job completed successfully") == 1, log

    summary = json.loads((job_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == steps
    resumed = summary["resumed_at_steps"]
    assert resumed == sorted(resumed) and all(0 < s < steps for s in resumed), (resumed, log)
    job_log = (job_dir / "cli.log").read_text()  # Hydra's job log: appended to by every attempt
    if signals is not None:  # sent mid-run: each one is a bnlab checkpoint and a resume
        assert len(resumed) == caught and len(set(resumed)) == caught, (resumed, log)
        assert job_log.count("SIGUSR2 received: finishing this step") == caught, job_log
    else:  # the controller's clock: a signal may also land before or after bnlab's loop (then submitit
        # requeues alone and the rerun resumes from the previous checkpoint, or finds the run complete)
        assert 1 <= len(resumed) <= caught, (resumed, log)
    for step in resumed:
        assert f"resumed at step {step}" in job_log, job_log
    assert not (job_dir / "checkpoints" / "last.pt").exists()  # a completed run keeps only the final weights
    assert (job_dir / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    return log


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """RUN uninterrupted, plain bnlab, the same thread count (the same numbers as submitit_local: checked)."""
    from conftest import CIFAR_MINI

    if CIFAR_MINI is None:
        pytest.skip("needs the CIFAR-10 subset: set BNLAB_DATA_DIR (CI has it at ../shared/data/cifar10-mini)")
    base = tmp_path_factory.mktemp("straight")
    res = run_bnlab([*RUN, f"hydra.run.dir={base / 'run'}"], base, CIFAR_MINI, env_extra=THREADS)
    assert res.returncode == 0, res.stderr
    return base / "run"


# the default ${now:...} dir variant is slow-marked: the explicit one covers the same path in the quick suite
@pytest.mark.parametrize("pattern", ["explicit", pytest.param("default", marks=pytest.mark.slow)],
                         ids=["explicit-sweep-dir", "default-sweep-dir"])
def test_submitit_preemption_signal_requeues_and_the_job_resumes_in_its_dir(straight, tmp_path, cifar_dir,
                                                                             pattern):
    """SIGUSR2 to the running job: checkpoint, requeue (exit 144), the rerun resumes, same bytes.

    ``default``: no ``hydra.sweep.dir``, so the sweep dir is ``multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}``;
    the requeued job starts seconds later, yet writes into the same dir (the resolved ``now`` values are
    cached in the pickled master config) and no second timestamped dir appears.
    """
    args = ["-m", *RUN, *SUBMITIT]
    if pattern == "explicit":
        args.append(f"hydra.sweep.dir={tmp_path / 'sweep'}")
    proc = _start(args, tmp_path, cifar_dir)
    try:
        deadline, job_dir = time.monotonic() + 240, None
        while proc.poll() is None and time.monotonic() < deadline:
            found = sorted(tmp_path.glob("**/0/metrics.jsonl"))
            if found and _train_step(found[0]) >= 5:
                job_dir = found[0].parent
                break
            time.sleep(0.01)
        assert job_dir is not None, f"the job ended or stalled before step 5: {proc.poll()} {_finish(proc, 60)}"
        sweep_dir = job_dir.parent
        pids = _job_processes(sweep_dir / ".submitit")
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGUSR2)  # what submitit's controller sends signal_delay_s before the timeout
        out, err = _finish(proc, 240)
    finally:
        if proc.poll() is None:
            _finish(proc, 0.1)
    assert proc.returncode == 0, out + err
    if pattern == "explicit":
        assert sweep_dir == tmp_path / "sweep"
    else:
        assert [p.relative_to(tmp_path) for p in tmp_path.glob("multirun/*/*")] == \
            [sweep_dir.relative_to(tmp_path)], "the requeued job made a sweep dir of its own"
        _, log = _submitit_log(sweep_dir)
        first, requeued = _starts(log)
        # a re-resolved ${now:%H-%M-%S} would have named another dir: the rerun started seconds later
        assert requeued.strftime("%H-%M-%S") != sweep_dir.name and requeued > first
    log = assert_requeued_and_resumed(sweep_dir, straight)
    assert _count(log, "this job is preempted") == 1, log  # not a timeout: no requeue used up
    assert _count(log, "Requeued job") == 1 and "(3 remaining timeouts)" in log, log


# The controller's own signal comes 30 s into each attempt: the job must train longer than that, and end
# within the controller's 6 attempts (~25 s of training each). A fixed step count cannot do both on every
# machine (2000 steps took ~57 s on one CPU and under 30 s on another), so the length comes from a short
# calibration run: about 60 s of training here and now, which leaves a factor ~2 of drift either way.
LONG = [a for a in RUN if not a.startswith(("train.steps=", "train.eval_every="))]


def _steps_for(seconds: float, tmp_path: Path, cifar_dir: Path) -> int:
    """Steps of LONG that train for about ``seconds`` on this machine (from a 300-step run's wall time)."""
    calib = tmp_path / "calibration"
    res = run_bnlab([*LONG, "train.steps=300", "train.eval_every=300", f"hydra.run.dir={calib}"], tmp_path,
                    cifar_dir, env_extra=THREADS)
    assert res.returncode == 0, res.stderr
    wall = json.loads((calib / "summary.json").read_text())["wall_time_s"]
    return max(1000, int(round(300 * seconds / wall, -2)))


@pytest.mark.slow
def test_submitit_timeout_signal_from_the_controller_requeues_and_resumes(tmp_path, cifar_dir):
    """slow: ~2 min on 2 busy cores (a ~60 s job the controller signals at 30 s, and its reference).

    ``hydra.launcher.timeout_min=1``: submitit's local controller sends SIGUSR2 30 s into each attempt
    (signal_delay_s is fixed at 30 for submitit_local) and kills at 60 s. Each signal is a timeout for
    submitit: LocalExecutor requeues 3 times by default, the test allows 5 (the controller runs a job at
    most 6 times), so the job may take 1 to 6 attempts: about 3 for ~60 s of training. The job is
    requeued and resumes each time; the records are bitwise those of the uninterrupted run.
    The reference runs at the same time (one thread each; the numbers do not depend on concurrency).
    """
    steps = _steps_for(60, tmp_path, cifar_dir)
    long = [*LONG, f"train.steps={steps}", f"train.eval_every={steps // 4}"]
    sweep_dir = tmp_path / "sweep"
    ref = _start([*long, f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path, cifar_dir)
    proc = _start(["-m", *long, *SUBMITIT, "hydra.launcher.timeout_min=1", "+hydra.launcher.max_num_timeout=5",
                   f"hydra.sweep.dir={sweep_dir}"], tmp_path, cifar_dir)
    try:
        out, err = _finish(proc, 400)
        ref_out, ref_err = _finish(ref, 300)
    finally:
        for p in (proc, ref):
            if p.poll() is None:
                _finish(p, 0.1)
    assert ref.returncode == 0, ref_err
    assert proc.returncode == 0, out + err
    _, log = _submitit_log(sweep_dir)
    assert "Caught signal SIGUSR2" in log, f"the {steps}-step job ended before the controller's signal at 30 s:\n{log}"
    log = assert_requeued_and_resumed(sweep_dir, tmp_path / "straight", steps=steps, signals=None)
    caught = _count(log, "Caught signal SIGUSR2")
    assert _count(log, "this job is timed-out") == caught, log
    assert f"Requeued job {_submitit_log(sweep_dir)[0]} ({5 - caught} remaining timeouts)" in log, log
