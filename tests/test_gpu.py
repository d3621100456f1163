"""The CUDA path (issue 23): what only a machine with a GPU can check.

Every test here is marked ``gpu`` and SKIPS, with its reason, where CUDA is not
available; ``make gpu-check`` (scripts/gpu_check.sh) runs them on a GPU machine.
They compare the CUDA path with the CPU path that the rest of the suite tests:

- the first step's loss and gradients on CUDA equal the CPU's in fp32 with tf32 off;
- two identical CUDA runs with ``train.deterministic=true`` write the same records;
- probes leave the trajectory unchanged on CUDA (as tests/test_train.py checks on a CPU);
- a run checkpointed on CUDA resumes on the CPU (and the reverse), equal up to float rounding.
"""

from __future__ import annotations

import json
import signal

import pytest
import torch
from conftest import QUICK, read_jsonl, run_bnlab
from test_reliability import RUN, interrupt

from bnlab import data, init, models

CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA device on this machine (make gpu-check runs these on a GPU)"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason=NO_CUDA)]

# fp32 probes and training on both devices: what may differ is float rounding of
# different kernels, not the math (tf32 off, no autocast).
FP32 = ["train.precision=fp32", "train.deterministic=true"]


def train_losses(run_dir) -> dict[str, list[float]]:
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("split") == "train" and "loss" in r]
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r["arm"], []).append(r["loss"])
    return out


def first_step(cfg, device: torch.device, norm: str):
    """Loss and gradients of one forward/backward of the initial weights on the first batch."""
    ds = data.load(cfg.data, device)
    batches = data.Batches(ds, int(cfg.data.batch_size), int(cfg.seed))
    x, y = next(batches)
    model = models.build(cfg.model, norm, cfg.norm, ds.num_classes)
    init.initialize(model, cfg.init, int(cfg.seed))
    model = model.to(device).train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}


def test_first_step_matches_cpu_in_fp32(compose_cfg, cifar_dir):
    cfg = compose_cfg(*QUICK, f"data.root={cifar_dir}")
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for norm in ("bn", "none"):
            loss_cpu, g_cpu = first_step(cfg, torch.device("cpu"), norm)
            loss_gpu, g_gpu = first_step(cfg, torch.device("cuda"), norm)
            assert loss_gpu == pytest.approx(loss_cpu, rel=1e-5)
            assert g_cpu.keys() == g_gpu.keys()
            for name in g_cpu:
                torch.testing.assert_close(g_gpu[name], g_cpu[name], rtol=1e-4, atol=1e-6, msg=f"{norm} {name}")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_two_identical_cuda_runs_write_the_same_records(tmp_path, cifar_dir):
    for name in ("a", "b"):
        r = run_bnlab([*QUICK, *FP32, "device=cuda", "logger=none", f"hydra.run.dir={tmp_path / name}"],
                      tmp_path, cifar_dir)
        assert r.returncode == 0, r.stderr
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")


def test_probes_leave_the_trajectory_unchanged_on_cuda(tmp_path, cifar_dir):
    probes = ["metrics.landscape.every=4", "metrics.ics.every=4", "metrics.divergence.every=4",
              "metrics.curvature.every=6", "metrics.curvature.max_hvps=4"]
    off = ["metrics.landscape.every=null", "metrics.ics.every=null", "metrics.divergence.every=null",
           "metrics.layer_norms.every=null"]
    for name, extra in (("probes", probes), ("plain", off)):
        r = run_bnlab([*QUICK, *FP32, *extra, "device=cuda", "logger=none", f"hydra.run.dir={tmp_path / name}"],
                      tmp_path, cifar_dir)
        assert r.returncode == 0, r.stderr
    assert train_losses(tmp_path / "probes") == train_losses(tmp_path / "plain")


@pytest.mark.parametrize("first,then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_across_devices(tmp_path, cifar_dir, first, then):
    """SIGTERM on one device (checkpoint, exit 3), continued on the other: equal up to float rounding."""
    common = [*RUN, *FP32]
    straight = run_bnlab([*common, f"device={then}", f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path, cifar_dir)
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "moved"
    stopped = interrupt([*common, f"device={first}", f"hydra.run.dir={run_dir}"], tmp_path, cifar_dir, run_dir,
                        20, signal.SIGTERM)
    assert stopped.returncode == 3, stopped.stderr
    resumed = run_bnlab([*common, f"device={then}", f"hydra.run.dir={run_dir}"], tmp_path, cifar_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["resumed_at_steps"]
    a, b = train_losses(tmp_path / "straight"), train_losses(run_dir)
    assert a.keys() == b.keys()
    for arm in a:
        assert b[arm] == pytest.approx(a[arm], rel=1e-3), arm
