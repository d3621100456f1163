"""Bad input that used to be accepted silently or end in a traceback (issue 16), end to end.

Each case: the installed console script in a subprocess, one line on stderr naming the problem
and the fix, exit code 2, and no run directory or record left behind. Plus the other side of
each check (valid values near the limits still run), and a broken stdout (closed, full), which
costs the console output only: the records are complete and the exit code is 0.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BNLAB, QUICK, read_jsonl, run_bnlab

from bnlab import cli, config

BENCH = Path(sys.executable).with_name("bnlab-bench")
ANALYZE = Path(sys.executable).with_name("bnlab-analyze")
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # the same answer on a machine with a GPU

BAD = [
    # silently accepted before
    (["data.train_size=-1"], "data.train_size=-1 must be an integer > 0"),
    (["data.train_size=0"], "data.train_size=0 must be an integer > 0"),
    (["seed=4294967296"], "seed=4294967296 must be an integer in [0, 2^32)"),
    (["seed=18446744073709551616"], "seed=18446744073709551616 must be an integer in [0, 2^32)"),
    (["seed=1.5"], "seed=1.5 must be an integer in [0, 2^32)"),
    (["seed=-1"], "seed=-1 must be an integer in [0, 2^32)"),
    (["metrics.ics.every=6", "metrics.ics.layers=[features.conv9.weight]"],
     "metrics.ics.layers: features.conv9.weight is not a parameter of simple_cnn; choose from its conv/linear "
     "weights features.conv1.weight, features.conv2.weight"),
    (["metrics.divergence.eta_min=100"], "metrics.divergence.eta_min=100 is above eta_max=10.0"),
    # tracebacks before
    (["device=cuda"], "device=cuda: no CUDA device is available here; use device=cpu or device=auto"),
    (["device=cuda:7"], "device=cuda:7: no CUDA device is available here; use device=cpu or device=auto"),
    (["device=mps"], "device=mps: no MPS device is available here; use device=cpu or device=auto"),
    (["model.width=inf"], "model.width=inf is not a finite number"),
    (["optim.momentum=-1"], "optim.momentum=-1 must be in [0, 1)"),
    (["optim.nesterov=true"], "optim.nesterov=true needs a momentum; pass e.g. optim.momentum=0.9"),
    (["optim=adam", "optim.betas=[0.9,1.0]"], "optim.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
    (["optim=adam", "optim.betas=[-0.1,0.999]"], "optim.betas=[-0.1, 0.999] must be two numbers in [0, 1)"),
    (["norm.bn.eps=0"], "norm.bn.eps=0 must be > 0"),
    (["norm.bn.eps=-1e-5"], "norm.bn.eps=-1e-05 must be > 0"),
    (["norm.bn.momentum=2"], "norm.bn.momentum=2 must be in [0, 1]"),
    (["arms=[noisy_bn]", "norm.noise.std_high=0.5"], "norm.noise.std_high=0.5 must be >= norm.noise.std_low"),
    (["optim.lr=1e308"], "optim.lr=1e+308: metrics.landscape.hi x optim.lr (the landscape probe's largest step) "
                         "is inf, beyond float32's range"),
    (["optim=adam", "optim.lr=1e38", "metrics.landscape.every=null"],
     "optim.lr=1e+38: optim.lr / (1 - optim.betas[0]) (Adam's first step) is 1e+39, beyond float32's range"),
    (["optim.lr=inf"], "optim.lr=inf is not a finite number"),
    (["optim.lr=nan"], "optim.lr=nan is not a finite number"),
    (["train.target_acc=nan"], "train.target_acc=nan is not a finite number"),
    (["train.target_acc=1.5"], "train.target_acc=1.5 must be a test accuracy in [0, 1]"),
    (["norm.batch_renorm.r_max=inf"], "norm.batch_renorm.r_max=inf is not a finite number"),  # the generic check
    (["metrics.activations.percentiles=[15,nan]"], "metrics.activations.percentiles[1]=nan is not a finite number"),
    (["data=synthetic", "data.num_test=0"], "data.num_test=0 must be an integer > 0"),
    (["metrics.activations.every=6", "metrics.activations.layers=[features.conv9]"],
     "metrics.activations.layers: features.conv9 is not a conv layer of simple_cnn; choose from features.conv1, "
     "features.conv2, features.conv3"),
    (["metrics.activations.every=6", "metrics.activations.channels=[0,9999]"],
     "metrics.activations.channels: 9999 is not a channel of features.conv3"),
    (["optim.lr=0.1,0.2"], "optim.lr=0.1,0.2 lists several values; add -m to run one job per value"),
]


def assert_refused(res, message: str, *paths: Path) -> None:
    """Exit 2, exactly one line on stderr holding ``message``, and none of ``paths`` exists."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert lines[0].startswith(("bnlab: error: ", "bnlab-bench: error: ", "bnlab-analyze: error: "))
    for p in paths:
        assert not p.exists(), f"{p} was left behind"


# one case of each check in a subprocess of the console script (about 4 s each); all of them in process below
END_TO_END = ("data.train_size=-1", "seed=4294967296", "metrics.ics.layers=[features.conv9.weight]",
              "metrics.divergence.eta_min=100", "device=cuda", "device=cuda:7", "device=mps", "model.width=inf",
              "optim.momentum=-1", "optim.betas=[0.9,1.0]", "norm.bn.eps=0", "optim.lr=1e308",
              "train.target_acc=nan", "metrics.activations.channels=[0,9999]", "optim.lr=0.1,0.2")


def _cases(keep) -> list:
    return [pytest.param(args, message, id=" ".join(args)) for args, message in BAD if keep(args)]


@pytest.mark.parametrize("args, message", _cases(lambda args: args[-1] in END_TO_END))
def test_bad_config_is_one_line_exit_2_nothing_written(tmp_path, cifar_dir, args, message):
    out = tmp_path / "out"
    res = run_bnlab([*QUICK, "logger=none", f"hydra.run.dir={out}", f"hydra.sweep.dir={out}", *args],
                    tmp_path, cifar_dir, env_extra=NO_GPU)
    assert_refused(res, message, out)


@pytest.mark.parametrize("args, message", _cases(lambda args: not args[0].startswith("device=")))
def test_the_preflight_refuses_every_case(tmp_path, monkeypatch, capsys, args, message):
    """The same code path as the console script's first step, in process (the devices: above, with no GPU)."""
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the preflight guards stdout; give the test's back after
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.preflight([*QUICK, "logger=none", f"hydra.run.dir={out}", f"hydra.sweep.dir={out}", *args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnlab: error: ") and message in lines[0], lines
    assert not out.exists()


def test_values_at_the_limits_pass(compose_cfg):
    """The other side of each check: the largest seed, equal grid ends, zero momentum, the lr bound..."""
    cases = [["seed=4294967295"], ["metrics.divergence.eta_min=0.5", "metrics.divergence.eta_max=0.5"],
             ["optim.momentum=0"], ["optim=adam", "optim.betas=[0,0.999]"], ["norm.bn.momentum=1"],
             ["norm.bn.momentum=0"], ["train.target_acc=0"], ["train.target_acc=1"], ["data.train_size=null"],
             [f"optim.lr={config.FLOAT32_MAX / 4.0 * 0.999!r}"], ["device=cpu"], ["device=auto"],
             ["model=simple_cnn", "metrics.ics.layers=[features.norm2.weight]"]]  # a parameter of the bn arm only
    for overrides in cases:
        config.validate(compose_cfg(*overrides))


@pytest.fixture
def cifar_copy(tmp_path, cifar_dir):
    """cifar_copy(file, rewrite) -> a writable copy of the subset whose ``file`` entry is rewrite(entry)."""

    def make(name: str, rewrite) -> Path:
        dst = tmp_path / "data" / "cifar-10-batches-py"
        shutil.copytree(cifar_dir / "cifar-10-batches-py", dst, copy_function=shutil.copyfile)
        dst.chmod(dst.stat().st_mode | stat.S_IWUSR)
        f = dst / name
        entry = pickle.loads(f.read_bytes(), encoding="latin1")
        f.unlink()
        f.write_bytes(pickle.dumps(rewrite(entry), protocol=2))
        return dst.parent

    return make


LABELS = [
    ("data_batch_2", lambda e: {**e, "labels": [bool(v % 2) for v in e["labels"]]},
     "data_batch_2: 'labels' must be integers, found bool values such as"),
    ("data_batch_2", lambda e: {**e, "labels": [v + 0.5 for v in e["labels"]]},
     "data_batch_2: 'labels' must be integers, found float values such as"),
    ("data_batch_4", lambda e: {**e, "labels": np.asarray(e["labels"], dtype=np.float32)},
     "data_batch_4: 'labels' must be integers, found float32 values"),
    ("test_batch", lambda e: {**e, "data": e["data"][:0], "labels": []},
     "test_batch holds no images, so there is no test set to evaluate on"),
]


@pytest.mark.parametrize("name, rewrite, message", LABELS, ids=["bool", "float", "float-array", "empty-test"])
def test_bad_labels_and_an_empty_test_set_are_refused(tmp_path, cifar_copy, name, rewrite, message):
    root = cifar_copy(name, rewrite)
    out = tmp_path / "out"
    res = run_bnlab([*QUICK, "logger=none", f"hydra.run.dir={out}"], tmp_path, root)
    assert_refused(res, message, out)


@pytest.fixture
def probe_run(tmp_path, cifar_dir) -> Path:
    """A short run that names its ICS and activation layers and channels explicitly."""
    out = tmp_path / "run"
    res = run_bnlab([*QUICK, "logger=none", "metrics.ics.every=6",
                     "metrics.ics.layers=[features.conv2.weight,features.norm2.weight]",
                     "metrics.activations.every=6", "metrics.activations.layers=[features.conv2]",
                     "metrics.activations.channels=[0,3]", f"hydra.run.dir={out}"], tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    return out


def test_named_probe_layers_are_measured_and_analyze_refuses_a_bad_span(probe_run, tmp_path):
    rows = read_jsonl(probe_run / "metrics.jsonl")
    probes = {arm: {k for r in rows if r["arm"] == arm and r["split"] == "probe" for k in r} for arm in ("bn", "none")}
    for arm in ("bn", "none"):
        assert "ics/features.conv2.weight/l2" in probes[arm]
    assert "ics/features.norm2.weight/l2" in probes["bn"]  # a layer of the bn arm only: measured where it exists
    train = {k for r in rows if r["split"] == "train" for k in r}
    assert {"act/features.conv2/c0/p50", "act/features.conv2/c3/p50"} <= train
    # bnlab-analyze: a NaN or infinite span would put NaN surfaces into analysis.json
    for span in ("nan", "inf", "0"):
        res = subprocess.run([str(ANALYZE), str(probe_run), "--span", span, "--device", "cpu"],
                             capture_output=True, text=True, timeout=120)
        assert_refused(res, f"--span {float(span)} must be a finite number > 0", probe_run / "analysis")
    res = subprocess.run([str(ANALYZE), str(probe_run), "--tol", "nan"], capture_output=True, text=True, timeout=120)
    assert_refused(res, "--tol nan must be a finite number > 0", probe_run / "analysis")


@pytest.mark.parametrize("extra", [[], ["--quick"]], ids=["plain", "quick"])
def test_bench_refuses_a_batch_larger_than_the_training_set(tmp_path, cifar_dir, extra):
    out = tmp_path / "speed.txt"
    env = {**os.environ, "BNLAB_DATA_DIR": str(cifar_dir)}
    res = subprocess.run([str(BENCH), *extra, "--batch-size", "6000", "--models", "simple_cnn", "--no-mfu",
                          "--probe-steps", "0", "--rounds", "1", "--steps", "1", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert_refused(res, "data.batch_size=6000 exceeds the 5085 training images; lower data.batch_size", out)
    assert res.stdout == ""  # refused before the header


def _run_with_stdout(tmp_path: Path, cifar_dir: Path, stdout) -> tuple[subprocess.CompletedProcess, Path]:
    """QUICK run of the real console script with ``stdout``: a file object, or "closed" for ``>&-``."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"BNLAB_DATA_DIR": str(cifar_dir), "PYTHONUNBUFFERED": "1"})
    closed = stdout == "closed"
    res = subprocess.run([str(BNLAB), *QUICK, "logger=none", f"hydra.run.dir={out}"], cwd=tmp_path, env=env,
                         stdout=None if closed else stdout, stderr=subprocess.PIPE, text=True, timeout=300,
                         preexec_fn=(lambda: os.close(1)) if closed else None)
    return res, out


def _assert_complete(out: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    rows = read_jsonl(out / "metrics.jsonl")
    for arm in ("bn", "none"):
        assert [r["step"] for r in rows if r["arm"] == arm and r["split"] == "train"] == list(range(12))
        assert summary["arms"][arm]["final_test_acc"] is not None
    assert (out / "checkpoints" / "bn.pt").is_file()


def test_a_full_stdout_costs_the_console_only(tmp_path, cifar_dir):
    with open("/dev/full", "w") as full:
        res, out = _run_with_stdout(tmp_path, cifar_dir, full)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines() == [
        "bnlab: console output lost (stdout: No space left on device); a run goes on and writes its records in full"]
    _assert_complete(out)


def test_a_pipe_whose_reader_stopped_costs_the_console_only(tmp_path, cifar_dir):
    """``bnlab ... | head -1``: the reader is gone before the first line; no notice for that (a choice)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([str(BNLAB), *QUICK, "logger=none", f"hydra.run.dir={out}"], cwd=tmp_path,
                            env={**os.environ, "BNLAB_DATA_DIR": str(cifar_dir)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    proc.stdout = None
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and err == "", err
    _assert_complete(out)


def test_bad_input_keeps_exit_2_when_no_stream_works(tmp_path, cifar_dir):
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        res = subprocess.run([str(BNLAB), *QUICK, "logger=none", "seed=1.5", f"hydra.run.dir={out}"],
                             cwd=tmp_path, env={**os.environ, "BNLAB_DATA_DIR": str(cifar_dir)},
                             stdout=full, stderr=full, timeout=120)
    assert res.returncode == 2 and not out.exists()


def test_a_closed_stdout_costs_the_console_only(tmp_path, cifar_dir):
    res, out = _run_with_stdout(tmp_path, cifar_dir, "closed")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines() == [
        "bnlab: stdout is closed: console output is lost; a run goes on and writes its records in full"]
    _assert_complete(out)
    # nothing meant for the console landed in a file that took over fd 1
    assert "bnlab pair" not in (out / "cli.log").read_text()
    assert all(line.startswith("{") for line in (out / "metrics.jsonl").read_text().splitlines())
