"""The CUDA audit's fixes (issue 23) that a CPU can check; tests/test_gpu.py checks the rest on a GPU.

- probes measure with TF32 off, whatever the global setting (on CUDA, cuDNN convolutions default to TF32);
- deterministic runs fix cuBLAS's workspace before CUDA starts, keep a value the user set, switch the
  cuDNN autotuner off, and record the autotuner's setting in summary.json;
- evaluation sums on the device (one host sync) and gives exactly the per-batch host sum;
- the data order lives on the data's device, and the checkpoint keeps it on the CPU (resume anywhere).
"""

from __future__ import annotations

import os

import torch
from omegaconf import open_dict

from bnlab import data, losses, train
from bnlab.metrics import landscape
from bnlab.records.store import read_summary

RUN = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.steps=6",
       "train.log_every=3", "train.eval_every=3", "train.progress=off", "arms=[bn,none]",
       "metrics.landscape.every=2", "metrics.ics.every=null", "metrics.divergence.every=null"]


def test_probes_run_with_tf32_off(compose_cfg, tmp_path, monkeypatch):
    seen = []
    real = landscape.probe

    def spy(*args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return real(*args, **kwargs)

    monkeypatch.setattr(landscape, "probe", spy)
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # CUDA's cuDNN default
    try:
        train.run(compose_cfg(*RUN, "train.precision=tf32"), tmp_path / "run")
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)  # restored
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
    assert seen and set(seen) == {(False, False)}


def test_deterministic_fixes_cublas_workspace_and_the_autotuner(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    train.run(compose_cfg(*RUN, "train.deterministic=true"), tmp_path / "det")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.benchmark is False
    assert read_summary(tmp_path / "det")["cudnn_benchmark"] is False

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's choice stays
    train.run(compose_cfg(*RUN, "train.deterministic=true"), tmp_path / "mine")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # not deterministic: left as set, recorded
    train.run(compose_cfg(*RUN, "train.deterministic=false"), tmp_path / "free")
    assert read_summary(tmp_path / "free")["cudnn_benchmark"] is True


def test_evaluation_on_the_device_equals_the_per_batch_host_sum(compose_cfg):
    cfg = compose_cfg(*RUN)
    ds = data.load(cfg.data, torch.device("cpu"))
    batches = data.Batches(ds, 32, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(ds.test_x[0].numel(), ds.num_classes))
    got = train.evaluate(model, batches)
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches.test_batches(500):
            logits = model(x)
            loss_sum += losses.LOSSES["cross_entropy"](logits, y, reduction="sum").item()
            correct += losses.correct("cross_entropy", logits, y).item()
            n += len(y)
    assert got == {"loss": loss_sum / n, "acc": correct / n}


def test_the_data_order_is_on_the_device_and_checkpointed_on_the_cpu(compose_cfg):
    cfg = compose_cfg(*RUN)
    with open_dict(cfg):
        cfg.data.augment.enabled = False
    ds = data.load(cfg.data, torch.device("cpu"))
    b = data.Batches(ds, 32, seed=3)
    first = [next(b)[1] for _ in range(3)]
    state = b.state_dict()
    assert state["order"].device.type == "cpu"
    again = data.Batches(ds, 32, seed=99)
    again.load_state_dict(state)
    assert torch.equal(next(again)[1], next(b)[1])
    assert all(len(y) == 32 for y in first)
