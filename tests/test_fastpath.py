"""The fast path computes the step a plain loop computes.

Reference: torchvision's ToTensor + Normalize on PIL images of the very indices
bnlab's generator picks, a copy of the model in NCHW fp32, cross-entropy, backward.
bnlab's step: uint8 tensors normalized in one multiply-add, optionally
channels_last and bf16 autocast. Augmentation is off, so both see the same pixels.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from bnlab import data, train
from bnlab.train import arm_names, build_arm

BASE = ["model=simple_cnn", "model.width=0.5", "logger=none", "data.batch_size=64", "data.augment.enabled=false",
        "train.steps=1"]


def reference_batch(ds, batch_size: int, seed: int):
    """The first batch the way a torchvision loop builds it, from bnlab's index order."""
    idx = torch.randperm(ds.train_size, generator=torch.Generator().manual_seed(seed))[:batch_size]
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(ds.mean, ds.std)])
    imgs = [Image.fromarray(ds.train_x[i].permute(1, 2, 0).numpy()) for i in idx.tolist()]
    return torch.stack([tf(im) for im in imgs]), ds.train_y[idx]


def reference_step(model, x, y):
    model.train()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def bnlab_step(cfg, arm_name: str):
    ds = data.load(cfg.data, torch.device("cpu"))
    batches = data.Batches(ds, int(cfg.data.batch_size), seed=cfg.seed, channels_last=bool(cfg.train.channels_last))
    arm = build_arm(arm_name, cfg, ds.num_classes, torch.device("cpu"), steps=1)
    plain = copy.deepcopy(arm.model).to(memory_format=torch.contiguous_format)  # w_0, NCHW
    x, y = next(batches)
    metrics, _ = train.train_step(arm, x, y, set(), cfg)
    grads = {n: p.grad for n, p in arm.model.named_parameters()}
    return ds, plain, metrics["loss"], grads, x


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("arm_name", ["bn", "none"])
@pytest.mark.parametrize("extra", [["train.channels_last=false"], ["train.channels_last=true"]],
                         ids=["nchw", "channels_last"])
def test_fast_step_equals_the_plain_reference_step(compose_cfg, cifar_dir, arm_name, extra):
    """Exact value: the plain step in float64. bnlab's step must be as close to it as the plain fp32 loop.

    (fp32 rounding differs between memory formats and kernels: on this CPU the plain NCHW loop's
    BN-arm gradients are ~2e-3 off float64 while channels_last is ~5e-6, so a fixed tolerance
    against the fp32 loop would test the kernels, not bnlab.)
    """
    cfg = compose_cfg(*BASE, *extra, f"data.root={cifar_dir}")
    assert arm_name in arm_names(cfg)
    ds, plain, loss, grads, x = bnlab_step(cfg, arm_name)
    assert x.is_contiguous(memory_format=torch.channels_last) == bool(cfg.train.channels_last)
    xr, yr = reference_batch(ds, int(cfg.data.batch_size), cfg.seed)
    torch.testing.assert_close(x.float(), xr, rtol=0, atol=2e-6)  # the same normalized pixels
    exact_loss, exact = reference_step(copy.deepcopy(plain).double(), xr.double(), yr)
    plain_loss, plain32 = reference_step(plain, xr, yr)
    assert grads.keys() == exact.keys()
    assert rel(loss, exact_loss) <= max(2 * rel(plain_loss, exact_loss), 1e-6)
    for n in grads:
        assert rel(grads[n], exact[n]) <= max(2 * rel(plain32[n], exact[n]), 1e-4), n


def test_bf16_step_is_close_to_the_fp32_reference(compose_cfg, cifar_dir):
    """bf16 keeps 8 bits of mantissa: the loss agrees to ~1e-2, gradients point the same way."""
    cfg = compose_cfg(*BASE, "train.precision=bf16", "train.channels_last=true", f"data.root={cifar_dir}")
    ds, plain, loss, grads, _ = bnlab_step(cfg, "bn")
    xr, yr = reference_batch(ds, int(cfg.data.batch_size), cfg.seed)
    ref_loss, ref_grads = reference_step(plain, xr, yr)
    assert rel(loss, ref_loss) < 2e-2
    for n, g in grads.items():
        assert g.dtype == torch.float32  # parameters and their gradients stay fp32
        cos = F.cosine_similarity(g.flatten().float(), ref_grads[n].flatten(), dim=0).item()
        assert cos > 0.98, (n, cos)
    assert rel(loss, ref_loss) > 0  # it did run in bf16 (an fp32 step would agree to ~1e-7)


def test_probes_stay_fp32_under_bf16(compose_cfg, tmp_path):
    """Probes at w_t do not depend on the training precision (step 0: same weights in both runs).

    ICS is off here: it measures the shift caused by the update actually taken, which is bf16's.
    """
    common = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.steps=1",
              "train.progress=off", "metrics.landscape.every=1", "metrics.divergence.every=1",
              "metrics.ics.every=null"]
    rows = {}
    for prec in ("fp32", "bf16"):
        train.run(compose_cfg(*common, f"train.precision={prec}"), tmp_path / prec)
        rows[prec] = [r for r in (tmp_path / prec / "metrics.jsonl").read_text().splitlines() if '"probe"' in r]
    assert rows["fp32"] and rows["fp32"] == rows["bf16"]


@pytest.mark.slow
def test_compiled_step_equals_the_plain_reference_step(compose_cfg, cifar_dir):
    """slow: torch.compile on CPU builds C++ kernels (~30 s). Same float64 reference as above."""
    cfg = compose_cfg(*BASE, "train.compile=true", f"data.root={cifar_dir}")
    ds, plain, loss, grads, _ = bnlab_step(cfg, "bn")
    xr, yr = reference_batch(ds, int(cfg.data.batch_size), cfg.seed)
    exact_loss, exact = reference_step(copy.deepcopy(plain).double(), xr.double(), yr)
    plain_loss, plain32 = reference_step(plain, xr, yr)
    assert rel(loss, exact_loss) <= max(2 * rel(plain_loss, exact_loss), 1e-6)
    for n in grads:
        assert rel(grads[n], exact[n]) <= max(2 * rel(plain32[n], exact[n]), 1e-4), n
