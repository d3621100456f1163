"""Faults that would lose or corrupt a run's records (issue 16): two writers on one run dir, non-finite
numbers, post-hoc files of an earlier run, a resume on other data.

Every test drives the installed console scripts on real files (the CIFAR-10 subset) except the record
round trip, which writes and reads real files in process.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import BNLAB, QUICK, run_bnlab
from test_reliability import RUN, interrupt, last_train_step, start

from bnlab import lock
from bnlab.preemption import INTERRUPTED_EXIT
from bnlab.records import store as results

LONG = [*RUN, "train.steps=100000"]  # runs until the test stops it


def strict_json(text: str):
    """json.loads that refuses the non-standard NaN/Infinity tokens (what a strict reader sees)."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))


def assert_one_line(res: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def assert_rows_unique_and_in_order(run_dir: Path) -> None:
    """What two writers break: every (step, arm, split) once, each arm's train steps 0, 1, 2, ... in order."""
    rows = [strict_json(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dup = [k for k, n in Counter((r["step"], r["arm"], r["split"]) for r in rows).items() if n > 1]
    assert not dup, f"rows written twice: {dup[:5]}"
    for arm in {r["arm"] for r in rows}:
        steps = [r["step"] for r in rows if r["arm"] == arm and r["split"] == "train"]
        assert steps == list(range(len(steps))), arm


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int) -> None:
    deadline = time.monotonic() + 120
    while last_train_step(run_dir) < step and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()[1]}"


def stop(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# ------------------------------------------------------------ one writer ----


def test_a_second_writer_on_a_running_run_dir_is_refused(tmp_path, cifar_dir):
    """The same command twice, and a start-over while it runs: refused in one line naming the holder."""
    run_dir = tmp_path / "run"
    args = [*LONG, f"hydra.run.dir={run_dir}"]
    first = start(args, tmp_path, cifar_dir)
    try:
        wait_for_step(first, run_dir, 3)
        hydra_files = {p: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
        assert_one_line(run_bnlab(args, tmp_path, cifar_dir), f"{run_dir} is being written by another bnlab "
                        f"process (pid {first.pid} on host {socket.gethostname()}", "hydra.run.dir")
        # resume=never would delete the running run's records: refused the same way
        assert_one_line(run_bnlab([*args, "train.resume=never"], tmp_path, cifar_dir), f"pid {first.pid}")
        assert first.poll() is None, "the first run was disturbed"
        # refused before Hydra starts: the holder's .hydra/ (config, overrides) is untouched
        assert {p: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files
    finally:
        res = stop(first)
    assert res.returncode == INTERRUPTED_EXIT, res.stderr  # it checkpointed and stopped as usual
    assert_rows_unique_and_in_order(run_dir)
    assert not (run_dir / lock.NAME).exists()  # released on the signal path too


def test_a_resume_while_the_run_still_writes_is_refused(tmp_path, cifar_dir):
    run_dir = tmp_path / "run"
    args = [*LONG, f"hydra.run.dir={run_dir}"]
    res = interrupt(args, tmp_path, cifar_dir, run_dir, 9, signal.SIGTERM)
    assert res.returncode == INTERRUPTED_EXIT, res.stderr
    stopped = last_train_step(run_dir)
    resumed = start(args, tmp_path, cifar_dir)  # the resume, in the background
    try:
        wait_for_step(resumed, run_dir, stopped + 3)
        assert_one_line(run_bnlab(args, tmp_path, cifar_dir), f"pid {resumed.pid}")
    finally:
        res = stop(resumed)
    assert res.returncode == INTERRUPTED_EXIT, res.stderr
    assert_rows_unique_and_in_order(run_dir)


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_notice(tmp_path, cifar_dir):
    run_dir = tmp_path / "run"
    args = [*RUN, f"hydra.run.dir={run_dir}"]
    killed = start(args, tmp_path, cifar_dir)
    wait_for_step(killed, run_dir, 9)
    killed.kill()  # no chance to release: the lock file stays, naming it
    killed.communicate(timeout=60)
    assert json.loads((run_dir / lock.NAME).read_text())["pid"] == killed.pid
    res = run_bnlab(args, tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    log = (run_dir / "cli.log").read_text()  # the console wraps log lines; the log file keeps them whole
    notices = [ln for ln in log.splitlines() if "took over the lock of" in ln]
    assert len(notices) == 1 and f"pid {killed.pid} on host {socket.gethostname()}" in notices[0], log
    assert results.read_summary(run_dir)["status"] == "completed"
    assert_rows_unique_and_in_order(run_dir)
    assert not (run_dir / lock.NAME).exists()


# ------------------------------------------------------ non-finite numbers ----


def test_non_finite_numbers_round_trip_through_strict_json(tmp_path):
    record = results.RunRecord(tmp_path)
    record.append([{"step": 0, "arm": "bn", "split": "train", "loss": math.nan, "grad_norm": math.inf,
                    "x": -math.inf, "acc": 0.5, "missing": None}])
    record.write_summary({"lr": math.inf, "target_acc": math.nan, "arms": {"bn": {"final_train_loss": -math.inf}}})
    strict_json((tmp_path / "summary.json").read_text())
    row = strict_json((tmp_path / "metrics.jsonl").read_text())
    assert (row["loss"], row["grad_norm"], row["x"]) == ("NaN", "Infinity", "-Infinity")  # the documented spelling
    back = results.read_metrics(tmp_path)[0]
    assert math.isnan(back["loss"]) and back["grad_norm"] == math.inf and back["x"] == -math.inf
    assert back["acc"] == 0.5 and back["missing"] is None and back["arm"] == "bn"
    summary = results.loads((tmp_path / "summary.json").read_text())  # a partial summary: not read_summary
    assert summary["lr"] == math.inf and math.isnan(summary["target_acc"])
    assert summary["arms"]["bn"]["final_train_loss"] == -math.inf


def test_a_run_that_blows_up_is_a_result_every_tool_reads(tmp_path, cifar_dir):
    """optim.lr=1e15: the arms' losses turn NaN/Inf; the run still ends 0 with a strict summary.json."""
    run_dir = tmp_path / "run"
    res = run_bnlab([*QUICK, "optim.lr=1e15", "logger=none", "train.progress=off", f"hydra.run.dir={run_dir}"],
                    tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    summary = strict_json((run_dir / "summary.json").read_text())
    assert any(a["diverged"] for a in summary["arms"].values())
    text = (run_dir / "summary.json").read_text() + (run_dir / "metrics.jsonl").read_text()
    assert '"NaN"' in text or "Infinity" in text  # the blow-up is recorded, not dropped
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        strict_json(line)
    for tool in ("bnlab-plot", "bnlab-report", "bnlab-claims"):
        res = subprocess.run([str(BNLAB.with_name(tool)), str(run_dir)], capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, f"{tool}: {res.stderr}"
    assert (run_dir / "figures/curves.png").stat().st_size > 0 and (run_dir / "report.html").stat().st_size > 0
    strict_json((run_dir / "claims.json").read_text())


# ------------------------------------------------- post-hoc files of the run ----


ANALYZE = ["--samples", "32", "--k", "1", "--max-hvps", "4", "--trace-samples", "2", "--slq-runs", "1",
           "--slq-steps", "4", "--points-1d", "3", "--points-2d", "2", "--device", "cpu"]


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BNLAB.with_name(name)), *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{name}: {res.stderr}"
    return res


def test_starting_over_drops_the_earlier_runs_derived_files(tmp_path, cifar_dir):
    run_dir = tmp_path / "run"
    base = [*QUICK, "logger=none", "train.progress=off", f"hydra.run.dir={run_dir}"]
    assert run_bnlab(base, tmp_path, cifar_dir).returncode == 0
    tool("bnlab-analyze", str(run_dir), *ANALYZE)
    tool("bnlab-claims", str(run_dir))
    tool("bnlab-report", str(run_dir), "--no-figures")
    tool("bnlab-plot", str(run_dir))
    assert (run_dir / "figures/surface_1d.png").exists()
    old_analysis = (run_dir / "analysis/analysis.json").read_text()

    res = run_bnlab([*base, "optim.lr=0.05", "train.resume=never"], tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    for name in results.DERIVED:
        assert not (run_dir / name).exists(), f"{name} of the earlier run survived train.resume=never"
    assert "removed the earlier run's analysis/, figures/, report.html, claims.json, claims.md" in \
        (run_dir / "cli.log").read_text()

    # an earlier run's analysis.json put back (a copy, a sync): bnlab-plot says so and does not draw it
    (run_dir / "analysis").mkdir()
    (run_dir / "analysis/analysis.json").write_text(old_analysis)
    out = tool("bnlab-plot", str(run_dir)).stdout
    stale = [ln for ln in out.splitlines() if "analysis/analysis.json belongs to an earlier run" in ln]
    assert {ln.split(":")[0] for ln in stale} == {"skipped spectral_density", "skipped surface_1d",
                                                  "skipped surface_2d"}, out
    assert not (run_dir / "figures/surface_1d.png").exists()
    # (an analysis of the run itself is drawn: tests/test_plots.py draws single_run's surfaces)


# ------------------------------------------------------------ other data ----


def copy_subset(src: Path, dst: Path, relabel: bool = False) -> Path:
    """A copy of the subset at another path; ``relabel``: data_batch_2's labels shifted by one class."""
    shutil.copytree(src / "cifar-10-batches-py", dst / "cifar-10-batches-py")
    if relabel:
        f = dst / "cifar-10-batches-py/data_batch_2"
        with open(f, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        entry["labels"] = [(y + 1) % 10 for y in entry["labels"]]  # still valid labels, just other ones
        f.write_bytes(pickle.dumps(entry))
    return dst


def records(run_dir: Path) -> dict[Path, bytes]:
    """Every file of the run dir but Hydra's and the log (a refused attempt logs what data it read)."""
    return {p: p.read_bytes() for p in run_dir.rglob("*")
            if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"}


def test_a_resume_on_other_data_is_refused_and_on_moved_data_continues(tmp_path, cifar_dir):
    run_dir = tmp_path / "run"
    args = [*RUN, f"hydra.run.dir={run_dir}"]
    res = interrupt(args, tmp_path, cifar_dir, run_dir, 9, signal.SIGTERM)
    assert res.returncode == INTERRUPTED_EXIT, res.stderr
    stopped = int(res.stderr.strip().splitlines()[-1].split("after step ")[1].split(";")[0])
    before = records(run_dir)

    other = copy_subset(cifar_dir, tmp_path / "other", relabel=True)
    assert_one_line(run_bnlab(args, tmp_path, other), "last.pt was trained on other data",
                    "point BNLAB_DATA_DIR or data.root at the data it trained on", "train.resume=never")
    assert records(run_dir) == before  # refused before writing anything

    moved = copy_subset(cifar_dir, tmp_path / "moved")  # the same data elsewhere (another machine)
    res = run_bnlab(args, tmp_path, moved)
    assert res.returncode == 0, res.stderr
    summary = results.read_summary(run_dir)
    assert summary["resumed_at_steps"] == [stopped]
    assert summary["data"]["source"].startswith(str(moved))
