"""The installed `bnlab` console script, end to end, on the real CIFAR-10 subset."""

import subprocess
import sys
from pathlib import Path

import pytest
import wandb_records
from conftest import QUICK, REPO, read_jsonl, run_bnlab


def check_run_dir(run_dir: Path, steps=12, arms=("bn", "none")):
    summary = __import__("json").loads((run_dir / "summary.json").read_text())
    assert summary["schema"] == 1 and summary["status"] == "completed"
    assert set(summary["arms"]) == set(arms) and summary["steps"] == steps
    assert summary["data"]["train_size"] == 5085 and summary["data"]["test_size"] == 1017
    rows = read_jsonl(run_dir / "metrics.jsonl")
    for arm in arms:
        steps_seen = [r["step"] for r in rows if r["arm"] == arm and r["split"] == "train"]
        assert steps_seen == list(range(steps))
    assert (run_dir / "config.yaml").exists() and (run_dir / ".hydra/config.yaml").exists()
    return summary, rows


def test_single_run_writes_records_and_one_wandb_run_per_arm(tmp_path, cifar_dir):
    out = tmp_path / "run"
    res = run_bnlab([*QUICK, "logger.mode=offline", "metrics.activations.every=6",
                     "metrics.activations.histogram_every=6", f"hydra.run.dir={out}"], tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    summary, rows = check_run_dir(out)
    # the rich summary table names both arms and their final test accuracy
    for arm in ("bn", "none"):
        acc = summary["arms"][arm]["final_test_acc"]
        assert f"{acc:.4f}" in res.stdout
    assert f"records: {out}" in res.stdout.replace("\n", "")
    # W&B offline runs, read back from the .wandb files: one per arm, grouped by pair id
    runs = wandb_records.read_all(out / "wandb")
    assert set(runs) == {"bn", "none"}
    for arm, run in runs.items():
        assert run["group"] == summary["pair_id"]
        assert run["config"]["arm"] == arm and run["config"]["optim"]["lr"] == 0.1
        assert run["config"]["model"]["arch"] == "simple_cnn"
        hist = run["history"]
        assert sorted(hist) == list(range(13))  # training steps 0..11 and the final eval at 12
        mine = {r["step"]: r for r in rows if r["arm"] == arm and r["split"] == "train"}
        for step, r in mine.items():
            assert hist[step]["train/loss"] == pytest.approx(r["loss"])
            assert hist[step]["train/grad_norm"] == pytest.approx(r["grad_norm"])
        assert "train/grad_norm/features.conv1.weight" in hist[6]
        assert hist[6]["hist/features.conv3/c0._type"] == "histogram"  # activations, W&B only (leet flattens)
        assert len(hist[6]["hist/features.conv3/c0.values"]) > 1
        assert "train/act/features.conv3/c0/p50" in hist[6]
        assert hist[12]["test/acc"] == pytest.approx(summary["arms"][arm]["final_test_acc"])
        assert summary["wandb"][arm]["id"] == run["id"]


def test_multirun_sweeps_lr_on_the_real_subset(tmp_path, cifar_dir):
    out = tmp_path / "sweep"
    res = run_bnlab(["-m", *QUICK, "logger=none", "optim.lr=0.01,0.1", f"hydra.sweep.dir={out}"],
                    tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    lrs = {}
    for job in ("0", "1"):
        summary, _ = check_run_dir(out / job)
        lrs[summary["lr"]] = summary["pair_id"]
    assert set(lrs) == {0.01, 0.1} and len(set(lrs.values())) == 2  # distinct pairs
    assert (out / "multirun.yaml").exists()


def test_same_command_twice_gives_identical_metrics(tmp_path, cifar_dir):
    for name in ("a", "b"):
        res = run_bnlab([*QUICK, "logger=none", f"hydra.run.dir={tmp_path / name}"], tmp_path, cifar_dir)
        assert res.returncode == 0, res.stderr
    a = (tmp_path / "a/metrics.jsonl").read_text()
    assert a == (tmp_path / "b/metrics.jsonl").read_text()


# submitit_local polls its jobs (~70 s here); tests/test_preemption_submitit.py runs it in the default suite
@pytest.mark.parametrize("launcher", ["joblib", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_launchers_run_a_two_job_sweep(tmp_path, cifar_dir, launcher):
    out = tmp_path / launcher
    res = run_bnlab(["-m", *QUICK, "logger.mode=offline", "seed=0,1", f"hydra/launcher={launcher}",
                     f"hydra.sweep.dir={out}"], tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    seeds = set()
    for job in ("0", "1"):
        summary, _ = check_run_dir(out / job)
        seeds.add(summary["seed"])
        assert set(wandb_records.read_all(out / job / "wandb")) == {"bn", "none"}
    assert seeds == {0, 1}


def test_help_and_cfg_job_from_any_directory(tmp_path):
    res = run_bnlab(["--help"], tmp_path)
    listing = res.stdout.split("== Config groups", 1)[1].split("== Config ==", 1)[0]
    groups = dict(line.split(": ", 1) for line in listing.splitlines() if ": " in line)
    assert res.returncode == 0 and "bnlab -m" in res.stdout
    assert "santurkar_fig4" in groups["experiment"].split(", ") and "resnet56" in groups["model"].split(", ")
    res = run_bnlab(["--cfg", "job", "model=resnet20", "optim.lr=0.3"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "arch: resnet20" in res.stdout and "lr: 0.3" in res.stdout
    assert not (tmp_path / "outputs").exists()


def test_packaged_configs_are_found_outside_the_source_tree(tmp_path):
    """Build and install the wheel into a bare folder; run it from elsewhere."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    assert (site / "bnlab/configs/config.yaml").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys, bnlab; assert bnlab.__file__.startswith(sys.argv[1]), bnlab.__file__; "
            "sys.argv = ['bnlab', '--cfg', 'job', 'experiment=demo']; "
            "from bnlab.cli import main; main()")
    res = subprocess.run([sys.executable, "-c", code, str(site)], cwd=elsewhere, capture_output=True,
                         text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert "width: 0.25" in res.stdout and "steps: 300" in res.stdout


BAD = [
    (["model=foo"], "model=foo is not a known option; choose from"),
    (["init=foo"], "init=foo is not a known option"),
    (["optim=foo"], "optim=foo is not a known option"),
    (["arms=[bn,foo]"], "unknown norm 'foo'"),
    (["optim.lr=0"], "optim.lr=0 must be > 0"),
    (["optim.lr=-0.5"], "optim.lr=-0.5 must be > 0"),
    (["data.batch_size=0"], "data.batch_size=0 must be an integer > 0"),
    (["data.batch_size=6000"], "data.batch_size=6000 exceeds the 5085 training images"),
    (["optim.lrr=0.1"], "Key 'lrr' is not in struct"),
    (["-m", "optim.lr=0.1,-1"], "optim.lr=-1 must be > 0"),
    (["optim.lr=abc"], "optim.lr=abc must be > 0"),  # wrong types
    (["train.steps=ten"], "train.steps=ten must be an integer > 0"),
    (["data.batch_size=1.5"], "data.batch_size=1.5 must be an integer > 0"),
    (["train.precision=fp16"], "train.precision=fp16 is not known; choose from fp32, tf32, bf16"),
    (["train.resume=yes"], "train.resume=yes is not known; choose from auto, never"),
    (["train.concurrent_arms=sometimes"], "train.concurrent_arms=sometimes is not known; use auto, true or false"),
    (["train.checkpoint_every=0"], "train.checkpoint_every=0 must be an integer > 0"),
    (["logger=wandb", "logger.init_timeout=0"], "logger.init_timeout=0 must be > 0"),
    (["logger=wandb", "logger.finish_timeout=-1"], "logger.finish_timeout=-1 must be >= 0"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, cifar_dir, args, message):
    out = tmp_path / "out"
    logger = [] if any(a.startswith("logger=") for a in args) else ["logger=none"]
    res = run_bnlab([*QUICK, *logger, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}", *args],
                    tmp_path, cifar_dir)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnlab: error: ") and message in lines[0], res.stderr
    assert not out.exists()


def test_missing_and_corrupt_data_and_unwritable_dir(tmp_path, corrupt_cifar):
    cases = [
        ({"BNLAB_DATA_DIR": str(tmp_path / "nowhere")}, [], "no 'cifar-10-batches-py' folder found"),
        ({"BNLAB_DATA_DIR": str(corrupt_cifar)}, [], "data_batch_3 is corrupt or truncated"),
    ]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    cases.append(({}, [f"hydra.run.dir={blocker}/run"], "is a file, not a directory"))
    for i, (env, extra, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        res = run_bnlab([*QUICK, "logger=none", f"hydra.run.dir={out}", *extra], tmp_path,
                        env_extra=env or {"BNLAB_DATA_DIR": str(corrupt_cifar.parent)})
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr
        assert not out.exists()
