"""bnlab-bench: the speed benchmark runs end to end, and its baseline trains on bnlab's data.

Timings are never asserted (they depend on the machine and its load); only
that every number printed is a positive finite number.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bnlab import bench, data, train
from bnlab.records.store import read_metrics

BENCH = Path(sys.executable).with_name("bnlab-bench")  # the console script of this environment
NUM = r"([-+0-9.eE]+|nan|inf)"


def _bench(args: list[str], cwd: Path, data_dir: Path, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"BNLAB_DATA_DIR": str(data_dir), "WANDB_SILENT": "true"})
    return subprocess.run([str(BENCH), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text, re.M)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    value = float(m.group(1))
    assert math.isfinite(value) and value > 0, m.group(0)
    return value


def test_quick_bench_prints_speeds_ratio_and_machine(tmp_path, cifar_dir):
    out = tmp_path / "bench" / "speed.txt"
    proc = _bench(["--quick", "--out", str(out)], tmp_path, cifar_dir)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    # the machine and the settings
    assert re.search(r"^cpu: .+; os\.cpu_count\(\) = \d+, torch\.get_num_threads\(\) = \d+", text, re.M)
    assert re.search(rf"^torch {re.escape(torch.__version__)}; device: \S+", text, re.M)
    assert re.search(r"^date: \d{4}-\d\d-\d\d", text, re.M)
    assert re.search(r"^settings: models vgg11 x0\.125; batch 32; 2 timed steps", text, re.M)
    # both sides, the ratio, the probe cadence
    _number(text, rf"^standard loop: {NUM} images/s")
    _number(text, rf"^paired fp32 \+ channels_last, arms at once \(train.concurrent_arms=true\): {NUM} images/s")
    _number(text, rf"^paired fp32 \+ channels_last, arms one after the other \(train.concurrent_arms=false\): "
                  rf"{NUM} images/s")
    # the default named by bnlab's own rule: a narrow VGG-11 on a CPU steps its arms at once
    assert re.search(r"^bnlab default for this model: .*arms at once .*: the 'fp32 \+ channels_last, arms at "
                     r"once \(train.concurrent_arms=true\)' line above$", text, re.M)
    _number(text, rf"^ratio paired/standard, bnlab default: {NUM}$")
    _number(text, rf"^ratio default probe cadence / no probes: {NUM}$")
    for line in text.splitlines():  # every variant that ran: positive finite numbers
        if "images/s" in line and not line.startswith("images/s"):
            _number(line, rf"{NUM} images/s")
        if line.startswith("ratio "):
            _number(line, rf": {NUM}$")
        for mfu in re.findall(rf"MFU {NUM}%", line):
            assert math.isfinite(float(mfu)) and float(mfu) > 0, line
    # the closing summary repeats the default's ratio and names the fastest variant that ran
    summary = re.search(rf"^summary vgg11 x0\.125: bnlab default {NUM}x \((.+?)\); fastest {NUM}x \((.+)\)$",
                        text, re.M)
    assert summary, text
    assert float(summary.group(1)) == _number(text, rf"^ratio paired/standard, bnlab default: {NUM}$")
    assert summary.group(2) == "fp32 + channels_last, arms at once (train.concurrent_arms=true)"
    ratios = {m.group(1): float(m.group(2)) for m in re.finditer(rf"^ratio paired/standard, (.+): {NUM}$", text, re.M)}
    assert float(summary.group(3)) == max(v for k, v in ratios.items() if k != "bnlab default")
    assert ratios[summary.group(4)] == float(summary.group(3))
    assert "failed" not in text
    assert out.read_text() == text  # --out holds exactly what was printed


def test_bad_settings_are_one_line_exit_2(capsys):
    assert bench.main(["--quick", "--variants", "fp64"]) == 2
    assert bench.main(["--quick", "--steps", "0"]) == 2
    assert "fp64" in capsys.readouterr().err
    assert bench.main(["--quick", "--steps", "-3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps=-3 must be > 0" in err and "variants" not in err
    # an unknown model: Hydra's multi-line message folded into one line that names the choices
    assert bench.main(["--quick", "--models", "nosuchnet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model=nosuchnet is not a known option; choose from" in err and "vgg11" in err


def test_quick_keeps_the_models_it_is_given():
    assert bench.parse_args(["--quick"]).models == "vgg11"
    assert bench.parse_args(["--quick", "--models", "resnet20:0.5"]).models == "resnet20:0.5"
    assert bench.parse_args([]).models == "vgg11,resnet20:0.5"


def test_standard_dataset_gives_bnlab_normalized_pixels(compose_cfg, cifar_dir, monkeypatch):
    """Augmentation off: the PIL + ToTensor + Normalize path equals bnlab's batched normalization."""
    monkeypatch.setenv("BNLAB_DATA_DIR", str(cifar_dir))
    cfg = compose_cfg()
    ds = data.load(cfg.data, torch.device("cpu"))
    batches = data.Batches(ds, 8, seed=0)
    std = bench.StandardCifar(ds.train_x, ds.train_y, ds.mean, ds.std, augment=False)
    assert len(std) == ds.train_size
    for i in (0, 1, 1234, ds.train_size - 1):
        x, y = std[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
        assert y == int(ds.train_y[i])
        torch.testing.assert_close(x, batches.normalize(ds.train_x[i : i + 1])[0], atol=1e-6, rtol=0)
    # with augmentation: same shapes and labels, pixels from the same image
    aug = bench.StandardCifar(ds.train_x, ds.train_y, ds.mean, ds.std, augment=True)
    x, y = aug[5]
    assert x.shape == (3, 32, 32) and y == int(ds.train_y[5])


def test_standard_models_start_from_bnlab_weights(compose_cfg):
    """The standard loop's models are bnlab's arms at initialization, bitwise."""
    cfg = compose_cfg("model=simple_cnn", "model.width=0.25", "data=synthetic")
    cpu = torch.device("cpu")
    for kind in cfg.arms:
        ours = bench.build_model(cfg, kind, 10, cpu).state_dict()
        theirs = train.build_arm(kind, cfg, 10, cpu, 10).model.state_dict()
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), k


def test_probe_period_and_switches(compose_cfg):
    cfg = compose_cfg()
    assert bench.cadence_period(cfg) == 200  # layer norms 50, landscape/ICS 100, divergence 200
    off = compose_cfg(*bench.probes_off(cfg))
    assert all(off.metrics[n].get("every") is None for n in off.metrics)


@pytest.mark.slow
def test_sweep_jobs_per_minute(tmp_path, cifar_dir):
    proc = _bench(["--quick", "--variants", "fp32", "--probe-steps", "0", "--no-mfu", "--sweep-jobs", "2",
                   "--sweep-n-jobs", "2"], tmp_path, cifar_dir, timeout=600)
    assert proc.returncode == 0, proc.stderr
    _number(proc.stdout, rf"^sweep sequential .*: {NUM} jobs/min")
    _number(proc.stdout, rf"^sweep concurrent .*: {NUM} jobs/min")
    _number(proc.stdout, rf"^sweep ratio concurrent/sequential \(jobs/min\): {NUM}$")


def test_mfu_peak_matches_the_run_math():
    """bf16 runs are measured against a bf16 matmul peak where one exists, else against fp32."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert bench.peak_for("bf16", cpu, {"fp32": 1.0}) == "fp32"  # emulated bf16: no bf16 peak
    assert bench.peak_for("bf16", cpu, {"fp32": 1.0, "bf16": 4.0}) == "bf16"  # AMX / AVX512-BF16
    assert bench.peak_for("tf32", cpu, {"fp32": 1.0, "bf16": 4.0}) == "fp32"  # no TF32 on a CPU
    assert bench.peak_for("tf32", gpu, {"fp32": 1.0, "tf32": 2.0, "bf16": 4.0}) == "tf32"
    peaks = bench.matmul_peaks(cpu, 64)
    assert ("bf16" in peaks) == bench.native_bf16(cpu) and all(v > 0 for v in peaks.values())


def test_paired_runs_are_timed_through_the_trainer_hooks(compose_cfg, tmp_path):
    """The bench's clock reads through train.Hooks (nothing patched): the window holds the timed steps,
    evaluation is skipped, and the records hold every train step but no test row."""
    cpu = torch.device("cpu")
    quick = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.progress=off",
             "train.checkpoint_every=null"]
    quick += bench.probes_off(compose_cfg(*quick))
    batch = int(compose_cfg(*quick).data.batch_size)
    res = bench.paired_run(quick, steps=3, warmup=2, device=cpu, workdir=tmp_path / "bench")
    assert res["clock"] == "perf_counter window" and res["seconds"] > 0 and res["images"] == 3 * batch * 2
    seen = []
    hooks = train.Hooks(before_step=seen.append, before_eval=lambda step: seen.append(("eval", step)),
                        evaluate=False)
    train.run(compose_cfg(*quick, "train.steps=4", "train.eval_every=2"), tmp_path / "run", hooks)
    assert seen == [("eval", 0), 0, 1, ("eval", 2), 2, 3, ("eval", 4)]  # due, though skipped
    rows = read_metrics(tmp_path / "run")
    assert {r["split"] for r in rows} == {"train"} and len(rows) == 8
