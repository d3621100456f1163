"""bnlab-explore on real run records, and the bn_stats recorder behind its views (issue 22).

The page's data (the JSON embedded in the HTML) is checked against metrics.jsonl; what the page
draws from it in a real browser is tests/test_explore_browser.py.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path

import explore_records
import pytest
import torch
from explore_records import page_data, read_rows, run_explore
from omegaconf import OmegaConf

from bnlab import models
from bnlab.metrics import bn_stats, registry

explore_run, explore_page = explore_records.explore_run, explore_records.explore_page  # session fixtures
MAX_BYTES = 5_000_000  # issue 22: the demo's explorer stays under ~5 MB


def close(a, b) -> bool:
    return a is None and b is None or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)


def test_page_is_self_contained_and_small(explore_page):
    text = explore_page.read_text()
    assert explore_page.stat().st_size < MAX_BYTES
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()[:2000]) == 1, "plotly.js inlined exactly once"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text), "the page loads nothing"


def test_page_data_are_the_records(explore_run, explore_page):
    rows = read_rows(explore_run)
    run = page_data(explore_page)["runs"][0]
    assert run["arms"] == ["bn", "none"]
    train = {(r["arm"], r["step"]): r for r in rows if r["split"] == "train"}
    # view 1: each arm's histogram at each recorded step is that step's act_hist record
    dist = run["dist"]["features.conv3/c1"]
    for arm in ("bn", "none"):
        assert dist[arm]["steps"] == [0, 4, 8]
        for i, step in enumerate(dist[arm]["steps"]):
            row = train[(arm, step)]
            for where in ("pre", "nl"):
                h = dist[arm][where][i]
                assert close(h["lo"], row[bn_stats.hist_key("features.conv3", 1, where, "lo")])
                assert all(close(p, row[bn_stats.hist_key("features.conv3", 1, where, f"b{j}")])
                           for j, p in enumerate(h["p"]))
        p50 = dist[arm]["pct"]["pre"]["50"]
        assert p50["x"] == [0, 4, 8]
        assert all(close(v, train[(arm, s)]["act/features.conv3/c1/p50"]) for s, v in zip(p50["x"], p50["y"]))
    # view 2: batch vs running statistics of every BN layer, in the BN arm only
    layers = run["bnstats"]["layers"]
    assert set(layers) == {f"features.norm{i}/c{c}" for i in (1, 2, 3) for c in (0, 1)}
    assert set(layers["features.norm2/c0"]) == {"bn"}
    s = layers["features.norm2/c0"]["bn"]["running_var"]
    assert all(close(v, train[("bn", st)][bn_stats.stat_key("features.norm2", 0, "running_var")])
               for st, v in zip(s["x"], s["y"]))
    assert run["bnstats"]["acc"]["bn"]["batch"]["x"], "test accuracy with batch statistics"
    # view 3: the saved batch and the BN arm's parameters at that step
    batch = run["batch"]["features.conv3/c0"]["bn"]
    probe = next(r for r in rows if r["arm"] == "bn" and r["split"] == "probe" and r["step"] == batch["step"]
                 and bn_stats.batch_key("features.conv3", 0, "x0") in r)
    assert len(batch["x"]) == 64 and close(batch["x"][5], probe[bn_stats.batch_key("features.conv3", 0, "x5")])
    assert close(batch["gamma"], probe[bn_stats.batch_key("features.conv3", 0, "gamma")])
    assert "running_mean" not in run["batch"]["features.conv3/c0"]["none"]
    # view 4: the curves
    panels = {p["id"]: p for p in run["panels"]}
    assert {"loss", "acc", "grad_norm", "landscape_loss", "ics_l2", "curvature", "layer_grad_norm"} <= set(panels)
    loss = next(s for s in panels["loss"]["series"] if s["name"] == "bn train")
    assert all(close(v, train[("bn", st)]["loss"]) for st, v in zip(loss["x"], loss["y"]))


def test_sweep_page_has_every_run(sweep_run, tmp_path):
    out = tmp_path / "sweep.html"
    res = run_explore([str(sweep_run), "--out", str(out)], tmp_path)
    assert res.returncode == 0, res.stderr
    runs = page_data(out)["runs"]
    assert sorted(r["name"] for r in runs) == sorted(str(p.parent.relative_to(sweep_run))
                                                     for p in sweep_run.rglob("summary.json"))
    # the arm that diverges at lr 1.0 (run_fixtures.py) is drawn up to its divergence, as recorded
    diverged = [(r, arm) for r in runs for arm, a in json.loads((sweep_run / r["name"] / "summary.json").read_text())
                ["arms"].items() if a["diverged"]]
    assert diverged
    for r, arm in diverged:
        recorded = [row for row in read_rows(sweep_run / r["name"]) if row["arm"] == arm and row["split"] == "train"]
        loss = next(s for p in r["panels"] if p["id"] == "loss" for s in p["series"] if s["name"] == f"{arm} train")
        assert loss["x"] == [row["step"] for row in recorded]
        assert close(loss["y"][-1], recorded[-1]["loss"])
    assert all(r["dist"] == {} and r["batch"] == {} for r in runs), "no activation records in this sweep"
    assert not list(tmp_path.glob(".sweep.html.tmp*"))


@pytest.mark.parametrize("case", ["missing", "no_runs", "out_is_dir", "damaged"])
def test_bad_input_is_one_line_and_writes_nothing(case, explore_run, tmp_path):
    target, extra = tmp_path / "nowhere", []
    if case == "no_runs":
        target.mkdir()
    elif case == "out_is_dir":
        target, extra = explore_run, ["--out", str(tmp_path)]
    elif case == "damaged":
        target = tmp_path / "damaged"
        shutil.copytree(explore_run, target, ignore=shutil.ignore_patterns("checkpoints", "explore.html"))
        (target / "summary.json").write_text('{"schema": 1, "pair_')
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = run_explore([str(target), *extra], tmp_path)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"bnlab-explore: error: [^\n]+; [^\n]+", last), res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing written"


# ---------------------------------------------------------------- the bn_stats recorder ----

@pytest.fixture
def bn_model():
    torch.manual_seed(0)
    norm_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs/norm/default.yaml")
    return models.build(OmegaConf.create({"arch": "simple_cnn", "width": 0.25}), "bn", norm_cfg, 10)


def test_recorder_reads_bn_statistics_and_leaves_the_step_unchanged(bn_model):
    x = torch.randn(16, 3, 32, 32)
    twin = copy.deepcopy(bn_model)
    norm = bn_model.features.norm2
    running_before = norm.running_mean[1].item(), norm.running_var[1].item()
    conv_out = {}
    bn_model.features.conv2.register_forward_hook(lambda m, i, o: conv_out.setdefault("a", o.detach()))
    rec = bn_stats.BNRecorder(bn_model, ["features.conv3"], [1], bins=10, values=32)
    rec.armed = {"bn_stats", "act_hist", "bn_batch"}
    y = bn_model(x)
    train, probe = rec.collect()
    a = conv_out["a"][:, 1]
    assert close(float(train[bn_stats.stat_key("features.norm2", 1, "batch_mean")]), a.mean().item())
    assert close(float(train[bn_stats.stat_key("features.norm2", 1, "batch_var")]), a.var(unbiased=False).item())
    assert (float(train[bn_stats.stat_key("features.norm2", 1, "running_mean")]),
            float(train[bn_stats.stat_key("features.norm2", 1, "running_var")])) == running_before
    fr = [float(train[bn_stats.hist_key("features.conv3", 1, "nl", f"b{i}")]) for i in range(10)]
    assert math.isclose(sum(fr), 1.0, rel_tol=1e-6) and min(fr) >= 0
    assert len([k for k in probe if bn_stats.parse_batch_key(k)[2].startswith("x")]) == 32
    assert rec.armed == set() and rec.collect() == ({}, {})
    assert torch.equal(y, twin(x)) and torch.equal(norm.running_var, twin.features.norm2.running_var)


def test_histogram_matches_numpy():
    import numpy as np

    v = torch.randn(1000)
    lo, hi, frac = bn_stats.histogram(v, 12)
    counts, edges = np.histogram(v.numpy(), bins=12, range=(float(lo), float(hi)))
    assert np.allclose(frac.numpy(), counts / 1000)


@pytest.mark.parametrize("key,parser", [(bn_stats.stat_key("a.norm1", 3, "running_var"), bn_stats.parse_stat_key),
                                        (bn_stats.hist_key("a.conv1", 0, "nl", "b7"), bn_stats.parse_hist_key),
                                        (bn_stats.batch_key("a.conv1", 2, "x12"), bn_stats.parse_batch_key)])
def test_key_parsers_invert_builders(key, parser):
    assert parser(key) is not None and parser("loss") is None
    owner = registry.owner(key)
    assert owner.name in ("bn_stats", "bn_batch") and key.split("/")[0] + "/" in owner.prefixes


def test_non_finite_record_values_are_gaps(explore_run, tmp_path):
    """A loss recorded as NaN or Infinity (an arm blowing up) is a null in the page: strict JSON, a gap."""
    run = tmp_path / "run"
    shutil.copytree(explore_run, run, ignore=shutil.ignore_patterns("checkpoints", "explore.html"))
    rows = read_rows(run)
    hit = [r for r in rows if r["arm"] == "none" and r["split"] == "train"][-2:]
    hit[0]["loss"], hit[1]["loss"] = "NaN", "Infinity"
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_explore([str(run)], tmp_path)
    assert res.returncode == 0, res.stderr
    loss = next(s for p in page_data(run / "explore.html")["runs"][0]["panels"] if p["id"] == "loss"
                for s in p["series"] if s["name"] == "none train")
    assert loss["y"][-2:] == [None, None] and None not in loss["y"][:-2]
