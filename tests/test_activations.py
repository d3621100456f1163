"""Activation statistics (Ioffe Fig. 1) and train- vs eval-statistics test accuracy."""

import pytest
import torch
from omegaconf import OmegaConf

from bnlab import data, models, train
from bnlab.metrics import activations
from bnlab.records.store import read_metrics

FAST = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.steps=10",
        "train.eval_every=5", "train.progress=off"]


def test_recorder_reads_the_pre_norm_conv_output():
    model = models.build(OmegaConf.create({"arch": "simple_cnn", "width": 0.5}), "bn",
                         OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}}), 10)
    convs = activations.conv_layers(model)
    assert convs == ["features.conv1", "features.conv2", "features.conv3"]
    seen = {}
    model.features.conv3.register_forward_hook(lambda m, i, out: seen.__setitem__("out", out.detach()))
    rec = activations.ActivationRecorder(model, ["features.conv3"], [0, 2], [15, 50, 85])
    x = torch.randn(8, 3, 32, 32)
    model(x)
    assert rec.collect() == ({}, {})  # not armed: nothing recorded
    rec.armed = True
    model(x)
    stats, samples = rec.collect()
    out = seen["out"]
    for c in (0, 2):
        expected = torch.quantile(out[:, c].flatten(), torch.tensor([0.15, 0.5, 0.85]))
        got = torch.stack([stats[f"act/features.conv3/c{c}/p{p}"] for p in (15, 50, 85)])
        torch.testing.assert_close(got, expected)
        assert torch.equal(samples[f"features.conv3/c{c}"], out[:, c].flatten())
    assert stats["act/features.conv3/std"] == pytest.approx(out.std().item())
    assert {k for k in stats if k.endswith("/mean")} == {f"act/{c}/mean" for c in convs}
    assert not rec.armed
    with pytest.raises(KeyError, match="not conv layers"):
        activations.ActivationRecorder(model, ["features.norm1"], [0], [50])


@pytest.mark.parametrize("arch, conv", [("simple_cnn", "features.conv3"), ("resnet20", "stages.stage3.2.conv2"),
                                        ("resnet20", "stem.conv")])
@pytest.mark.parametrize("norm", ["bn", "none", "noisy_bn"])
def test_recorder_reads_the_nonlinearitys_input(arch, conv, norm):
    """Ioffe & Szegedy's Fig. 1 variable: the norm's output after the tracked conv (the ReLU's input;
    in the plain arm the conv output itself, in a noisy arm after the noise)."""
    model = models.build(OmegaConf.create({"arch": arch, "width": 0.25}), norm, OmegaConf.load(
        "configs/norm/default.yaml"), 10).train()
    norm_module = dict(model.named_modules())[activations.norm_after(conv)]
    seen = {}
    # a copy: the in-place ReLU overwrites the norm's output after the hook
    norm_module.register_forward_hook(lambda m, i, out: seen.__setitem__("out", out.detach().clone()))
    rec = activations.ActivationRecorder(model, [conv], [0, 1], [15, 50, 85])
    rec.armed = True
    model(torch.randn(8, 3, 32, 32))
    stats, _ = rec.collect()
    for c in (0, 1):
        expected = torch.quantile(seen["out"][:, c].flatten(), torch.tensor([0.15, 0.5, 0.85]))
        got = torch.stack([stats[f"nl_in/{conv}/c{c}/p{p}"] for p in (15, 50, 85)])
        torch.testing.assert_close(got, expected)
        pre = torch.stack([stats[f"act/{conv}/c{c}/p{p}"] for p in (15, 50, 85)])
        assert torch.equal(pre, got) == (norm == "none")  # only an identity norm passes the conv output on


def test_percentiles_in_the_records(compose_cfg, tmp_path):
    train.run(compose_cfg(*FAST, "metrics.activations.every=5", "metrics.activations.channels=[0,1]"), tmp_path)
    rows = [r for r in read_metrics(tmp_path) if r["split"] == "train" and "act/features.conv3/c0/p50" in r]
    assert [(r["step"], r["arm"]) for r in rows] == [(0, "bn"), (0, "none"), (5, "bn"), (5, "none")]
    for r in rows:
        for c in (0, 1):
            p = {q: r[f"act/features.conv3/c{c}/p{q}"] for q in (15, 50, 85)}
            assert p[15] <= p[50] <= p[85]
            assert r[f"nl_in/features.conv3/c{c}/p15"] <= r[f"nl_in/features.conv3/c{c}/p85"]
        assert r["act/features.conv1/std"] > 0
    # same weights and batch at step 0: the pre-norm conv1 output is identical in both arms
    assert rows[0]["act/features.conv1/mean"] == rows[1]["act/features.conv1/mean"]


def test_batch_statistics_accuracy_next_to_running_statistics(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST)
    train.run(cfg, tmp_path)
    tests = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
    assert all(("acc_batch_stats" in r) == (r["arm"] == "bn") for r in tests)
    # recompute the last one: BN layers in train mode on test chunks of the training batch size
    model = models.build(cfg.model, "bn", cfg.norm, 10)
    model.load_state_dict(torch.load(tmp_path / "checkpoints/bn.pt", weights_only=True)["model"])
    ds = data.load(cfg.data, torch.device("cpu"))
    batches = data.Batches(ds, int(cfg.data.batch_size), seed=0)
    model.train()
    with torch.no_grad():
        hits = sum((model(x).argmax(1) == y).sum().item() for x, y in batches.test_batches(batches.batch_size))
    last = [r for r in tests if r["arm"] == "bn"][-1]
    assert last["acc_batch_stats"] == pytest.approx(hits / ds.test_size)
    assert last["acc"] == pytest.approx(train.evaluate(model, batches)["acc"])
