"""train.concurrent_arms: on a CPU the arms step at once, one thread each.

What must hold: an arm computes exactly what it computes alone on one thread,
probes included (the arms share nothing but the batch), the records are
deterministic, and an error inside an arm's thread reaches the caller.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from conftest import read_jsonl
from torch.utils.flop_counter import FlopCounterMode

from bnlab import arm_threads, models, norms, train
from bnlab.records.store import read_summary

# every probe, at a cadence that lands on some steps and not others
PROBES = ["metrics.layer_norms.every=4", "metrics.landscape.every=8", "metrics.ics.every=8",
          "metrics.divergence.every=8", "metrics.curvature.every=8", "metrics.curvature.max_hvps=8",
          "metrics.activations.every=8"]
RUN = ["model=simple_cnn", "model.width=0.25", "data.batch_size=32", "data.augment.enabled=true", "logger=none",
       "train.steps=16", "train.log_every=4", "train.eval_every=8", "train.progress=off",
       "train.checkpoint_every=null", "arms=[bn,none,noisy_bn]", *PROBES]


@pytest.fixture
def two_threads():
    """torch on two intra-op threads for the test, whatever the machine has (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def step_log(monkeypatch):
    """Record (step, arm, thread name, intra-op threads) of every train_step call."""
    calls, real = [], train.train_step

    def step(arm, x, y, due, cfg, step=0):
        calls.append((step, arm.name, threading.current_thread().name, torch.get_num_threads()))
        return real(arm, x, y, due, cfg, step)

    monkeypatch.setattr(train, "train_step", step)
    return calls


def final_weights(run_dir):
    return {p.stem: torch.load(p, weights_only=True)["model"] for p in sorted((run_dir / "checkpoints").glob("*.pt"))}


def test_concurrent_arms_compute_what_each_arm_computes_alone(compose_cfg, cifar_dir, monkeypatch, tmp_path,
                                                              two_threads, step_log):
    """Probes included: every step of every arm runs in an arm thread, on one intra-op thread."""
    monkeypatch.setenv("BNLAB_DATA_DIR", str(cifar_dir))
    cfg = compose_cfg(*RUN, "train.concurrent_arms=auto")
    summary = train.run(cfg, tmp_path / "concurrent")
    assert summary["threads"] == {"arm_threads": 2, "intra_op_threads_per_arm": 1}
    assert len(step_log) == 3 * 16
    threads = {name for _, _, name, _ in step_log}
    assert all(name.startswith("bnlab-arm") for name in threads) and len(threads) == 2, threads
    assert {n for *_, n in step_log} == {1}  # 2 cores, 2 arm threads: one intra-op thread each
    assert torch.get_num_threads() == 2  # the main thread keeps its cores
    assert not [t for t in threading.enumerate() if t.name.startswith("bnlab-arm")]  # the pool is shut down

    # the same arms one after the other, on one thread: the same records and weights, bit for bit
    torch.set_num_threads(1)
    train.run(compose_cfg(*RUN, "train.concurrent_arms=false"), tmp_path / "one_thread")
    torch.set_num_threads(2)
    rows = {split: [r for r in read_jsonl(tmp_path / "concurrent/metrics.jsonl") if r["split"] == split]
            for split in ("train", "probe")}
    assert len(rows["train"]) == 3 * 16 and len(rows["probe"]) == 3 * 2  # probe rows at steps 0 and 8
    assert {k.split("/")[0] for r in rows["probe"] for k in r} >= {"landscape", "ics", "divergence", "curvature"}
    for split in ("train", "probe"):
        assert rows[split] == [r for r in read_jsonl(tmp_path / "one_thread/metrics.jsonl") if r["split"] == split]
    a, b = final_weights(tmp_path / "concurrent"), final_weights(tmp_path / "one_thread")
    assert a.keys() == b.keys() == {"bn", "none", "noisy_bn"}
    for arm in a:
        for k in a[arm]:
            assert torch.equal(a[arm][k], b[arm][k]), f"{arm}.{k}"

    # and run again concurrently: the whole record is the same bytes
    train.run(cfg, tmp_path / "again")
    assert (tmp_path / "again/metrics.jsonl").read_bytes() == (tmp_path / "concurrent/metrics.jsonl").read_bytes()


class Boom(Exception):
    pass


def test_an_error_in_an_arm_thread_reaches_the_caller(compose_cfg, cifar_dir, monkeypatch, tmp_path, two_threads):
    monkeypatch.setenv("BNLAB_DATA_DIR", str(cifar_dir))
    real = train.train_step

    def step(arm, x, y, due, cfg, step=0):
        if step == 6 and arm.name == "none":
            raise Boom(threading.current_thread().name)
        return real(arm, x, y, due, cfg, step)

    monkeypatch.setattr(train, "train_step", step)
    with pytest.raises(Boom, match="bnlab-arm"):
        train.run(compose_cfg(*RUN), tmp_path)
    assert not [t for t in threading.enumerate() if t.name.startswith("bnlab-arm")]


SMALL, LARGE = arm_threads.SMALL_MODEL_FLOPS / 2, arm_threads.SMALL_MODEL_FLOPS * 2


@pytest.mark.parametrize("setting, device, arms, compiled, flops, expected", [
    ("auto", "cpu", 2, False, SMALL, 2),
    ("auto", "cpu", 3, False, SMALL, 2),   # two cores: two threads, the third arm waits for one
    ("auto", "cpu", 1, False, SMALL, 0),
    ("auto", "cpu", 2, True, SMALL, 0),    # compiled graphs are stepped from the main thread
    ("auto", "cuda", 2, False, SMALL, 0),  # a GPU runs the arms' kernels on one stream anyway
    ("auto", "cpu", 2, False, LARGE, 0),   # a compute-bound model: two threads per arm, in turn
    (False, "cpu", 2, False, SMALL, 0),
    (True, "cpu", 2, False, LARGE, 2),
    (True, "cuda", 2, False, SMALL, 2),
])
def test_how_many_arm_threads(two_threads, setting, device, arms, compiled, flops, expected):
    counted = []

    def flops_per_image():
        counted.append(flops)
        return flops

    assert arm_threads.workers(setting, torch.device(device), arms, compiled, flops_per_image) == expected
    # the model is measured only when auto is deciding between the two
    assert len(counted) == (setting == "auto" and device == "cpu" and arms > 1 and not compiled)


@pytest.mark.parametrize("arch, width, small", [("vgg11", 0.25, True), ("resnet20", 0.5, True),
                                                ("resnet20", 1.0, False), ("simple_cnn", 0.25, True)])
def test_auto_measures_the_model_and_leaves_it_untouched(compose_cfg, arch, width, small):
    cfg = compose_cfg(f"model={arch}", f"model.width={width}", "arms=[noisy_bn]")
    model = models.build(cfg.model, "noisy_bn", cfg.norm, 10).to(memory_format=torch.channels_last).train()
    norms.seed_noise(model, 0)
    model(torch.randn(4, 3, 32, 32))  # noise generators exist, running stats moved
    before = copy.deepcopy(model.state_dict())
    gens = [m.generator.get_state() for m in model.modules() if isinstance(m, norms.ActivationNoise)]
    rng = torch.get_rng_state()
    flops = arm_threads.forward_flops(model, (3, 32, 32))
    assert (flops < arm_threads.SMALL_MODEL_FLOPS) == small, flops
    # the same count as FlopCounterMode gives for a batch of 8, per image
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        copy.deepcopy(model).eval()(torch.zeros(8, 3, 32, 32))
    assert counter.get_total_flops() == 8 * flops
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    now = [m.generator.get_state() for m in model.modules() if isinstance(m, norms.ActivationNoise)]
    assert len(now) == len(gens) > 0 and all(torch.equal(a, b) for a, b in zip(now, gens))
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_large_model_steps_its_arms_in_turn(compose_cfg, cifar_dir, monkeypatch, tmp_path, two_threads,
                                              step_log):
    monkeypatch.setenv("BNLAB_DATA_DIR", str(cifar_dir))
    cfg = compose_cfg("model=resnet20", "data.batch_size=8", "logger=none", "train.steps=2", "train.eval_every=2",
                      "train.progress=off", "train.checkpoint_every=null", "metrics.layer_norms.every=null")
    summary = train.run(cfg, tmp_path)
    assert {(name, n) for *_, name, n in step_log} == {("MainThread", 2)}
    assert summary["threads"] == {"arm_threads": 0, "intra_op_threads_per_arm": 2}
    assert read_summary(tmp_path)["threads"] == summary["threads"]
