"""bnlab-analyze on the checkpoints of a real (short) run, and curvature at a cadence in training."""

import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnlab import analyze, data, losses, train
from bnlab.records.store import read_metrics

FAST = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.steps=10",
        "train.eval_every=5", "train.progress=off"]
SMALL = ["--samples", "64", "--k", "2", "--max-hvps", "15", "--trace-samples", "4", "--slq-runs", "1",
         "--slq-steps", "6", "--points-1d", "5", "--points-2d", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from hydra import compose, initialize_config_module

    out = tmp_path_factory.mktemp("run")
    with initialize_config_module("bnlab.configs", version_base="1.3"):
        cfg = compose("config", overrides=FAST)
    train.run(cfg, out)
    return out


def test_analysis_of_both_arms_in_both_bn_modes(run_dir, capsys):
    assert analyze.main([str(run_dir), *SMALL]) == 0
    res = json.loads((run_dir / "analysis/analysis.json").read_text())
    assert set(res["arms"]) == {"bn", "none"} and res["subset"]["samples"] == 64
    for a in res["arms"].values():
        for mode in ("batch", "running"):
            c = a["curvature"][mode]
            assert len(c["top_eigenvalues"]) == 2 and c["top_eigenvalues"][0] >= c["top_eigenvalues"][1]
            assert c["trace_stderr"] > 0 and len(c["density"]["grid"]) == len(c["density"]["density"])
        assert a["surface_1d"]["alphas"] == pytest.approx([-1, -0.5, 0, 0.5, 1])
        assert len(a["surface_2d"]["loss"]) == 3 and len(a["surface_2d"]["loss"][0]) == 3
        assert a["surface_2d"]["loss"][1][1] == pytest.approx(a["surface_1d"]["loss"][2])  # both at w
    none, bn = res["arms"]["none"]["curvature"], res["arms"]["bn"]["curvature"]
    # without BN the two modes are the same function; with BN they are not (docs/science.md sec. 5)
    assert none["batch"]["top_eigenvalues"] == pytest.approx(none["running"]["top_eigenvalues"], rel=1e-5)
    assert bn["batch"]["top_eigenvalues"][0] != pytest.approx(bn["running"]["top_eigenvalues"][0], rel=1e-3)
    assert "top eigenvalue" in capsys.readouterr().out


def test_surface_center_is_the_checkpoints_loss(run_dir):
    assert analyze.main([str(run_dir), *SMALL]) == 0
    assert_surface_centre_is_the_loss(run_dir, F.cross_entropy)


def assert_surface_centre_is_the_loss(run_dir, loss_fn) -> dict:
    """The 1-D surface at alpha = 0 equals ``loss_fn`` of each arm's checkpoint on the 64 analyzed samples;
    returns analysis.json."""
    res = json.loads((run_dir / "analysis/analysis.json").read_text())
    cfg = OmegaConf.load(run_dir / "config.yaml")
    ds = data.load(cfg.data, torch.device("cpu"))
    batches = analyze.subset_batches(ds, "train", 64, int(cfg.data.batch_size))
    for arm in ("bn", "none"):
        model = analyze.load_arm(run_dir, cfg, arm, ds.num_classes, torch.device("cpu")).eval()
        with torch.no_grad():
            loss = sum(loss_fn(model(x), y).item() * len(y) for x, y in batches) / 64
        assert res["arms"][arm]["surface_1d"]["loss"][2] == pytest.approx(loss, rel=1e-5)
    return res


def test_bad_inputs(run_dir, tmp_path, capsys):
    assert analyze.main([str(tmp_path)]) == 2
    assert "holds no finished run record" in capsys.readouterr().err
    assert analyze.main([str(run_dir), "--samples", "100000"]) == 2
    assert "exceeds the 1024 train images" in capsys.readouterr().err
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    for f in ("config.yaml", "summary.json"):
        (other / f).write_text((run_dir / f).read_text())
    wrong = {"model": {"w": torch.zeros(3)}, "step": 0, "diverged_step": None}
    torch.save(wrong, other / "checkpoints/bn.pt")
    assert analyze.main([str(other), *SMALL]) == 2
    assert "does not fit the run's config" in capsys.readouterr().err


def test_curvature_at_a_cadence_during_training(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "metrics.curvature.every=5", "metrics.curvature.bn_modes=[batch,running]",
                      "metrics.curvature.trace_samples=3", "metrics.curvature.max_hvps=10")
    train.run(cfg, tmp_path)
    rows = [r for r in read_metrics(tmp_path) if r["split"] == "probe" and "curvature/eig1@batch" in r]
    assert [(r["step"], r["arm"]) for r in rows] == [(0, "bn"), (0, "none"), (5, "bn"), (5, "none")]
    for r in rows:
        assert r["curvature/hvps@batch"] <= 10 and r["curvature/trace_stderr@running"] > 0
        if r["arm"] == "none":
            assert r["curvature/eig1@batch"] == pytest.approx(r["curvature/eig1@running"], rel=1e-4)


def test_the_deep_linear_network_is_analyzed_under_its_own_squared_error(tmp_path, compose_cfg):
    """model=dln on data=gaussian trains on the squared error (data.loss): the analysis must use it too."""
    cfg = compose_cfg("model=dln", "data=gaussian", "model.layers=4", "model.hidden=8", "data.num_train=128",
                      "data.num_test=64", "data.batch_size=64",
                      "logger=none", "train.steps=4", "train.progress=off", "optim.lr=0.001",
                      "metrics.landscape.every=null", "metrics.ics.every=null", "metrics.divergence.every=null")
    train.run(cfg, tmp_path)
    assert analyze.main([str(tmp_path), *SMALL]) == 0
    res = assert_surface_centre_is_the_loss(tmp_path, losses.squared_error)
    for arm in ("bn", "none"):
        assert all(v == v for v in res["arms"][arm]["curvature"]["batch"]["top_eigenvalues"])  # finite, not NaN
