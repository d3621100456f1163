"""Paper-scale reproductions (issue 18): ResNet-32/110, Santurkar's deep linear network on Gaussian data,
the bjorck_depth / ghorbani_spectrum / santurkar_dln experiments end to end at tiny settings, their
figures, and their claims on synthetic records whose truth is known.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
from conftest import BNLAB, CIFAR_MINI, read_jsonl, run_bnlab
from omegaconf import OmegaConf
from torch import nn
from verdict_records import arm, claims_cli, noise, write_run

from bnlab import claims, data, models
from bnlab.metrics import curvature

NORM = OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}})
SEEDS = range(5)


def _model(arch: str, norm: str = "none", **kw) -> nn.Module:
    return models.build(OmegaConf.create({"arch": arch, "width": kw.pop("width", 0.0625), **kw}), norm, NORM, 10)


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("arch,blocks,layers", [("resnet32", 5, 32), ("resnet110", 18, 110)])
def test_resnet_depth_is_6n_plus_2(arch, blocks, layers):
    net = _model(arch, "bn")
    assert [len(stage) for stage in net.stages] == [blocks] * 3
    weighted = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == layers  # stem conv + 2 convs per block + the classifier
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_deep_linear_network_is_25_linear_layers_without_nonlinearity():
    cfg = {"hidden": 16, "layers": 25, "in_dim": 10, "width": 1.0}
    plain, bn = _model("dln", "none", **cfg), _model("dln", "bn", **cfg)
    for net in (plain, bn):
        assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 25
        assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Linear))
    assert sum(isinstance(m, nn.BatchNorm1d) for m in bn.modules()) == 24  # between the linear layers
    leaves = {type(m) for m in plain.modules() if not list(m.children())}
    assert leaves <= {nn.Linear, nn.Identity}  # no ReLU, tanh or any other nonlinearity
    # linear: f(a x + b z) = a f(x) + b f(z)
    plain.double()
    x, z = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    assert torch.allclose(plain(2 * x - 3 * z), 2 * plain(x) - 3 * plain(z), atol=1e-9)


# ----------------------------------------------------------------------------- data


def _gaussian(seed: int, **kw):
    cfg = OmegaConf.create({"name": "gaussian", "dim": 10, "num_train": 64, "num_test": 32, "seed": seed,
                            "loss": "squared_error", **kw})
    return data.load(cfg, torch.device("cpu"))


def test_gaussian_data_is_deterministic_per_seed_and_linear_in_its_inputs():
    a, b, c = _gaussian(3), _gaussian(3), _gaussian(4)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, key), getattr(b, key))
        assert not torch.equal(getattr(a, key), getattr(c, key))
    assert a.train_x.dtype == torch.float32 and a.train_y.shape == (64, 10) and a.num_classes == 10
    # y = A x with one A for train and test: least squares on the training set predicts the test set
    sol = torch.linalg.lstsq(a.train_x.double(), a.train_y.double()).solution
    assert torch.allclose(a.test_x.double() @ sol, a.test_y.double(), atol=1e-4)
    batches = data.Batches(a, 64, seed=0, channels_last=True)  # vectors pass through unnormalized
    x, y = next(batches)
    assert x.shape == (64, 10) and torch.equal(torch.sort(x, 0).values, torch.sort(a.train_x, 0).values)


def test_outlier_criterion_is_largest_magnitude_over_the_bulk_edge():
    # one run: a bulk at |lambda| <= 2 holding all but 1e-4 of the mass, one outlier at 50
    res = curvature.outliers([[0.5, 1.0, 2.0, 50.0]], [[0.5, 0.3, 0.1999, 1e-4]], mass=0.99)
    assert res == {"lambda_max": 50.0, "bulk_edge": 2.0, "ratio": 25.0}


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,says", [
    (["model=dln", "data=synthetic"], "model=dln takes vectors"),
    (["data=gaussian", "model=dln", "data.loss=hinge"], "data.loss=hinge is not a known loss"),
])
def test_bad_dln_input_is_one_line_and_writes_nothing(tmp_path, args, says):
    out = tmp_path / "run"
    res = run_bnlab([*args, "logger=none", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert res.returncode == 2
    line = [x for x in res.stderr.splitlines() if x.startswith("bnlab: error:")]
    assert len(line) == 1 and says in line[0] and ";" in line[0]
    assert not (out / "summary.json").exists() and not (out / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------- the experiments, tiny


TINY = {
    "bjorck_depth": ["model.width=0.125", "train.steps=2", "data.batch_size=16", "seed=0",
                     "model=resnet20,resnet32"],
    "ghorbani_spectrum": ["model.width=0.125", "train.steps=3", "metrics.curvature.every=2", "data.batch_size=32",
                          "metrics.curvature.slq_steps=4", "metrics.curvature.max_hvps=4", "train.eval_every=3",
                          "seed=0"],
    "santurkar_dln": ["model.hidden=16", "train.steps=30", "metrics.landscape.every=5", "train.eval_every=15",
                      "train.log_every=5", "metrics.layer_norms.every=10", "data.num_train=200",
                      "data.batch_size=200", "data.num_test=100", "seed=0"],
}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Each new experiment from the CLI at tiny settings: {name: sweep dir}."""
    if CIFAR_MINI is None:
        pytest.skip("needs the CIFAR-10 subset (BNLAB_DATA_DIR or ../shared/data/cifar10-mini)")
    root, out = tmp_path_factory.mktemp("paper_scale"), {}
    for name, args in TINY.items():
        res = run_bnlab(["-m", f"experiment={name}", "logger=none", f"hydra.sweep.dir={root / name}", *args],
                        cwd=root, data_dir=CIFAR_MINI)
        assert res.returncode == 0, res.stderr[-3000:]
        out[name] = root / name
    return out


def _runs(sweep):
    return sorted(p.parent for p in sweep.rglob("summary.json"))


def test_bjorck_depth_records_the_probe_on_every_minibatch_and_the_scales_at_step_0(tiny_runs):
    runs = _runs(tiny_runs["bjorck_depth"])
    assert len(runs) == 2
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["model"] in ("resnet20", "resnet32")
        probes = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "probe"]
        for a in ("bn", "none"):
            mine = [r for r in probes if r["arm"] == a]
            assert [r["step"] for r in mine] == [0, 1]  # one probe per minibatch
            assert all(len([k for k in r if k.startswith("divergence/ratio@")]) == 13 for r in mine)
            layers = 6 * models.RESNET_DEPTHS[summary["model"]] + 2
            assert len([k for k in mine[0] if k.startswith("init/act_std/")]) == layers
            assert len([k for k in mine[0] if k.startswith("init/grad_norm/")]) == layers


def test_ghorbani_spectrum_records_outliers_in_both_bn_modes_at_init_and_later(tiny_runs):
    run, = _runs(tiny_runs["ghorbani_spectrum"])
    probes = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "probe"]
    for a in ("bn", "none"):
        for step in (0, 2):
            r, = [p for p in probes if p["arm"] == a and p["step"] == step]
            for mode in ("batch", "running"):
                assert r[f"curvature/ratio@{mode}"] >= 1.0
                assert r[f"curvature/ratio@{mode}"] == pytest.approx(
                    abs(r[f"curvature/lambda_max@{mode}"]) / r[f"curvature/bulk_edge@{mode}"], rel=1e-6)
                assert len([k for k in r if k.startswith("curvature/slq0_node") and k.endswith(mode)]) == 4
                assert f"curvature/eig3@{mode}" in r


def test_santurkar_dln_is_a_regression_with_landscape_probes(tiny_runs):
    run, = _runs(tiny_runs["santurkar_dln"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "dln" and summary["data"]["name"] == "gaussian" and summary["batch_size"] == 200
    rows = read_jsonl(run / "metrics.jsonl")
    train = [r for r in rows if r["split"] == "train"]
    assert train and all("acc" not in r and math.isfinite(r["loss"]) for r in train)  # a regression: no accuracy
    test = [r for r in rows if r["split"] == "test"]
    assert {r["step"] for r in test} == {0, 15, 30} and all("acc" not in r for r in test)
    # the loss is the squared error: at step 0 near E||A x||^2 = dim^2 = 100 (the net's output starts small)
    assert 10 < [r for r in train if r["step"] == 0][0]["loss"] < 1000
    for a in ("bn", "none"):
        probes = [r for r in rows if r["split"] == "probe" and r["arm"] == a]
        assert len(probes) == 6 and all(r["landscape/loss_band_rel"] >= 0 for r in probes)
        assert summary["arms"][a]["final_test_acc"] is None and summary["arms"][a]["final_test_loss"] > 0


def test_the_new_figures_draw_from_tiny_records(tiny_runs, tmp_path):
    from bnlab import plots

    expected = {"bjorck_depth": ["init_scales_depth", "divergence_depth"],
                "ghorbani_spectrum": ["slq_density"]}
    for name, figs in expected.items():
        proc = subprocess.run([str(BNLAB.with_name("bnlab-plot")), str(tiny_runs[name])], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        for fig in figs:
            found = list(tiny_runs[name].rglob(f"{fig}.png"))
            assert found and all(p.stat().st_size > 10_000 for p in found), (name, fig)
    # landscape_seeds needs seeds: two DLN runs of the same config as a sweep
    res = run_bnlab(["-m", "experiment=santurkar_dln", "logger=none", f"hydra.sweep.dir={tmp_path / 'dln'}",
                     *[a for a in TINY["santurkar_dln"] if not a.startswith("seed=")], "seed=0,1",
                     "train.steps=10", "train.eval_every=10"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    paths = plots.sweep_figures(tmp_path / "dln")[0]
    assert tmp_path / "dln" / "figures" / "landscape_seeds.png" in paths


def test_the_new_claims_are_inconclusive_on_one_seed_of_real_records(tiny_runs):
    for name, ids in NEW_CLAIMS.items():
        res, out = claims_cli(tiny_runs[name])
        assert res.returncode == 0, res.stderr
        for cid in ids:
            c = out[cid]
            assert c["verdict"] == claims.INCONCLUSIVE and c["experiment"] == name and c["runs"] >= 1, c
            assert c["n"] <= 1 and ("min_seeds" in c["reason"] or "no seed gave evidence" in c["reason"])


# ----------------------------------------------------------------------------- verdicts on synthetic records


def _bjorck_records(root, seeds, fall: bool):
    """Per seed ResNet-20/56/110; none's first divergent eta 1e-1 / 1e-2 / 1e-3 (or flat 1e-2), bn never diverges."""
    div = {"metrics.divergence.eta_min": 1e-5, "metrics.divergence.eta_max": 10.0, "metrics.divergence.points": 13}
    for s in seeds:
        for arch, first in [("resnet20", 1e-1), ("resnet56", 1e-2), ("resnet110", 1e-3)]:
            first = first if fall else 1e-2
            rows = [{"step": t, "arm": a, "split": "probe", "divergence/first_divergent_eta": f}
                    for t in range(10) for a, f in (("bn", None), ("none", first))]
            write_run(root / f"{arch}-{s}", seed=s, experiment="bjorck_depth", steps=10, rows=rows,
                      arms={"bn": arm(0.1), "none": arm(0.1)}, extra={"model.arch": arch, **div})


def _ghorbani_records(root, seeds, effect: float):
    """Outlier ratios: none 10**effect x bn@batch, bn@running 10**effect x bn@batch (with per-seed noise)."""
    for s in seeds:
        rows = []
        for step in (0, 200):
            base = 3.0 * 10 ** noise(s, 0.05, step)
            big = base * 10 ** (effect + noise(s, 0.05, step + 1))
            rows += [{"step": step, "arm": "bn", "split": "probe", "curvature/ratio@batch": base,
                      "curvature/ratio@running": big},
                     {"step": step, "arm": "none", "split": "probe", "curvature/ratio@batch": big,
                      "curvature/ratio@running": big}]
        write_run(root / f"g{s}", seed=s, experiment="ghorbani_spectrum", steps=201, rows=rows,
                  arms={"bn": arm(0.3), "none": arm(0.3)})


def _dln_records(root, seeds, effect: float):
    """Landscape probes every 100 of 1500 steps: none's band and beta_eff 10**effect x bn's."""
    for s in seeds:
        rows = []
        for step in range(0, 1501, 100):
            for a, k in (("bn", 0.0), ("none", effect)):
                f = 10 ** (k + noise(s, 0.05, step + (a == "none")))
                rows.append({"step": step, "arm": a, "split": "probe", "landscape/loss": 1.0,
                             "landscape/loss_min": 1.0, "landscape/loss_max": 1.0 + 0.1 * f,
                             "landscape/loss_band_rel": 0.1 * f, "landscape/beta_eff": 5.0 * f})
        write_run(root / f"d{s}", seed=s, experiment="santurkar_dln", rows=rows,
                  arms={"bn": arm(None), "none": arm(None)})


NEW_CLAIMS = {
    "bjorck_depth": ("bjorck_no_bn_eta_falls_with_depth", "bjorck_bn_eta_far_above_at_depth"),
    "ghorbani_spectrum": ("outliers_without_bn", "outliers_return_with_running_stats"),
    "santurkar_dln": ("dln_landscape_band_smaller", "dln_beta_eff_smaller"),
}


def test_the_new_claims_are_supported_on_clear_synthetic_effects_over_5_seeds(tmp_path):
    _bjorck_records(tmp_path / "bjorck", SEEDS, fall=True)
    _ghorbani_records(tmp_path / "ghorbani", SEEDS, effect=2.0)
    _dln_records(tmp_path / "dln", SEEDS, effect=2.0)
    res, out = claims_cli(tmp_path)
    assert res.returncode == 0, res.stderr
    for exp, ids in NEW_CLAIMS.items():
        for cid in ids:
            c = out[cid]
            assert c["verdict"] == claims.SUPPORTED and c["n"] == 5 and c["experiment"] == exp, (cid, c["reason"])
            assert c["interval"][0] > c["margin_on_scale"]
    # the known effects: none's stable eta falls 2 decades from depth 20 to 110; bn (never diverging: eta_max 10)
    # sits 10 / (1e-3 / 10**0.5) = 10**4.5 above none at depth 110
    assert out["bjorck_no_bn_eta_falls_with_depth"]["estimate"] == pytest.approx(2.0)
    assert out["bjorck_bn_eta_far_above_at_depth"]["estimate"] == pytest.approx(4.5)


def test_the_new_claims_are_not_supported_when_the_effect_is_absent(tmp_path):
    _bjorck_records(tmp_path / "bjorck", SEEDS, fall=False)
    _ghorbani_records(tmp_path / "ghorbani", SEEDS, effect=0.0)
    _dln_records(tmp_path / "dln", SEEDS, effect=-0.5)
    res, out = claims_cli(tmp_path)
    assert res.returncode == 0, res.stderr
    # flat with depth: a tie at every seed, so no evidence either way
    assert out["bjorck_no_bn_eta_falls_with_depth"]["verdict"] == claims.INCONCLUSIVE
    assert out["outliers_without_bn"]["verdict"] == claims.NOT_SUPPORTED
    assert out["dln_landscape_band_smaller"]["verdict"] == claims.NOT_SUPPORTED


def test_one_seed_of_a_clear_effect_is_inconclusive(tmp_path):
    _bjorck_records(tmp_path / "bjorck", [0], fall=True)
    _ghorbani_records(tmp_path / "ghorbani", [0], effect=2.0)
    _dln_records(tmp_path / "dln", [0], effect=2.0)
    res, out = claims_cli(tmp_path)
    assert res.returncode == 0, res.stderr
    for ids in NEW_CLAIMS.values():
        for cid in ids:
            assert out[cid]["verdict"] == claims.INCONCLUSIVE and out[cid]["n"] == 1


def test_divergence_figure_marks_etas_whose_step_overflowed():
    """A plain ResNet-110 overflows at every eta (ratio NaN in every seed): its etas must still be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bnlab.plots.sweep_depth import draw_divergence

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    etas = np.array([1e-3, 1e-2, 1e-1, 1.0])
    draw_divergence(ax, etas, np.array([0.9, 2.0, np.nan, np.inf]), color="C0", label="ResNet-20")
    draw_divergence(ax, etas, np.full(4, np.nan), color="C1", label="ResNet-110")
    marked = [c.get_offsets()[:, 0].tolist() for c in ax.collections]
    assert marked == [[1e-1, 1.0], etas.tolist()]
    labels = ax.get_legend_handles_labels()[1]
    assert "ResNet-110: loss NaN/Inf after the step" in labels and "ResNet-20" in labels
    plt.close(fig)
