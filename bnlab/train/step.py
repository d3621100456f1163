"""One optimizer step of one arm, with the measurements due at it.

Fast path (``train.precision``, ``train.channels_last``, ``train.compile``)
changes how the training step computes, never what the probes measure: they
run in fp32 on the eager module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

import torch

from bnlab import clipping, losses
from bnlab.metrics import gradnorms, registry
from bnlab.train import probes
from bnlab.train.arm import Arm


@contextlib.contextmanager
def tf32(enabled: bool):
    """CUDA matmuls and convolutions in TF32 inside the block only (probes outside it stay fp32)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast(precision: str, device: torch.device):
    """bf16 autocast for the training forward (backward follows its dtypes); a no-op otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _forward_backward(arm: Arm, x, y, due: set[str]):
    """The step's forward and backward pass (activation hooks armed when due); returns (logits, loss)."""
    arm.model.train()
    forward = arm.forward
    if arm.recorder is not None:  # activation hooks read this forward pass, no extra one
        arm.recorder.armed = "activations" in due or "histograms" in due
        if arm.recorder.armed:
            forward = arm.model  # hooks fire in eager mode only
    if arm.bn_recorder is not None:  # bnlab-explore's records, read from this forward pass too
        arm.bn_recorder.armed = due & {"bn_stats", "act_hist", "bn_batch"}
        if arm.bn_recorder.armed:
            forward = arm.model
    with tf32(arm.precision == "tf32"):
        with autocast(arm.precision, x.device):
            logits = forward(x)
        loss = arm.loss_fn(logits.float(), y)
        arm.opt.zero_grad(set_to_none=True)
        loss.backward()
    return logits, loss


def train_step(arm: Arm, x, y, due: set[str], blocks: Mapping, step: int = 0) -> tuple[dict, dict]:
    """One optimizer step of one arm on batch (x, y).

    ``blocks``: the measurements' config blocks (``probes.probe_blocks``; a DictConfig is converted).
    Returns (per-step metrics as device tensors, never synced here; probe
    results as host floats). Probes that are due run on this very batch and
    leave the trajectory untouched.
    """
    blocks = probes.probe_blocks(blocks)
    logits, loss = _forward_backward(arm, x, y, due)
    out = {"loss": loss.detach(), "grad_norm": gradnorms.global_grad_norm(arm.model)}
    hits = losses.correct(arm.loss, logits.detach(), y)
    if hits is not None:  # a regression has no accuracy
        out["acc"] = hits / len(y)
    if arm.recorder is not None and arm.recorder.armed:
        stats, samples = arm.recorder.collect()
        if "activations" in due:
            out.update(stats)
        if "histograms" in due:
            arm.tally.histograms.append((step, samples))
    bn_probe = {}
    if arm.bn_recorder is not None and arm.bn_recorder.armed:
        bn_train, bn_probe = arm.bn_recorder.collect()
        out.update(bn_train)
    # at w_t; an fp32 step's own loss and gradient serve the probes, others are recomputed in fp32
    fp32_step = arm.precision == "fp32"
    context = registry.Probe(
        model=arm.model, loss_fn=arm.loss_fn, x=x, y=y, lr=arm.sched.get_last_lr()[0], step=step,
        grads=[p.grad for p in arm.model.parameters() if p.requires_grad] if fp32_step else None,
        loss=loss.detach() if fp32_step else None, due=frozenset(due), block={})
    # Probes measure in fp32 whatever the step's precision: TF32 off (on CUDA, cuDNN convolutions
    # default to TF32), autocast off (they run outside the step's autocast block).
    with tf32(False):
        out.update(probes.at_w(context, due, blocks, "train")[0])
    t0 = time.perf_counter()
    with tf32(False):
        probe, later = probes.at_w(context, due, blocks, "probe")
    probe.update(bn_probe)
    arm.tally.probe_time_s += time.perf_counter() - t0
    # after grad_norm and every probe (they measure the true gradient), before the update
    clipping.clip_gradients(arm.model, arm.grad_clip)
    arm.opt.step()
    arm.sched.step()
    if later:  # measurements of the update itself (ICS)
        t0 = time.perf_counter()
        with tf32(False):
            probe.update(probes.after_step(later))
        arm.tally.probe_time_s += time.perf_counter() - t0
    return out, probe


def step_arm(arm: Arm, x, y, due: set[str], step: int, blocks: Mapping, step_fn=train_step) -> None:
    """``step_fn`` (``train_step`` or a caller's wrapper of it) of one arm, timed; its metrics and probe
    results queued in the arm's tally for the next flush."""
    tally = arm.tally
    t0, probe_t0 = time.perf_counter(), tally.probe_time_s
    metrics, probe = step_fn(arm, x, y, due, blocks, step)
    tally.pending.append((step, metrics))
    if probe:
        tally.probes.append((step, probe))
    tally.train_time_s += time.perf_counter() - t0 - (tally.probe_time_s - probe_t0)
    tally.steps_trained += 1
