"""Claim verdicts from real run records: fields, per-seed effects, margins from config, INCONCLUSIVE without evidence.

The statistics themselves (intervals, ties, experiments, trajectories, windows) are tested on
synthetic records in test_verdicts.py.
"""

import json
import math

import yaml
from verdict_records import arm, landscape_rows, noise, write_run

from bnlab import claims
from bnlab.claims import evidence
from bnlab.records.store import load_runs

IDS = [c.id for c in claims.CLAIMS]


def test_every_claim_has_a_verdict_numbers_and_scale(sweep_run, tmp_path, capsys):
    assert claims.main([str(sweep_run), "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "claims.json").read_text())
    assert [c["id"] for c in out] == IDS and len(IDS) >= 11
    for c in out:
        assert c["verdict"] in (claims.SUPPORTED, claims.NOT_SUPPORTED, claims.INCONCLUSIVE)
        assert c["paper"] and c["rule"] and isinstance(c["numbers"], dict) and c["margin_reason"]
        for key in ("experiment", "n", "per_seed", "estimate", "interval", "windows", "runs_used", "runs_ignored"):
            assert key in c, key
        assert len(c["runs_used"]) + len(c["runs_ignored"]) == 4  # every run is used or ignored, with why
    md = (tmp_path / "claims.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(IDS) + 1  # header + a row each
    assert "**INCONCLUSIVE**" in md
    printed = capsys.readouterr().out
    assert "bnlab claims" in printed and str(tmp_path / "claims.json") in printed


def test_higher_lr_claim_follows_the_records(sweep_run):
    cfg = claims.load_config()
    result = {c["id"]: c for c in claims.evaluate(sweep_run, cfg)}["bn_higher_lr"]
    runs = load_runs(sweep_run)
    # the sweep names the claim in claims_tested, without an experiment name of its own
    assert result["experiment"] == evidence.UNKNOWN and result["runs"] == 4
    assert "4 run(s)" in result["scale"] and "2 seed(s)" in result["scale"] and "5085 train" in result["scale"]

    def effect(seed):  # recomputed from the summaries: largest lr at which each arm trains
        rs = [r for r in runs if r.summary["seed"] == seed]
        lrs = sorted(r.summary["lr"] for r in rs)

        def best(arm):
            ok = [r.summary["lr"] for r in rs if not r.summary["arms"][arm]["diverged"]
                  and r.summary["arms"][arm]["final_test_acc"] >= cfg["trains_acc"]]
            return max(ok, default=lrs[0] / 2)

        return None if best("bn") == best("none") else math.log10(best("bn") / best("none"))

    expected = {s: effect(s) for s in (0, 1)}
    assert {p["seed"]: p["value"] for p in result["per_seed"]} == {
        s: claims.sig(e) for s, e in expected.items() if e is not None}
    assert set(result["no_effect"]) == {str(s) for s, e in expected.items() if e is None}
    # 2 seeds < min_seeds: never decided, and it says why
    assert result["verdict"] == claims.INCONCLUSIVE and result["reason"]


def test_missing_evidence_is_inconclusive_never_supported(single_run):
    out = {c["id"]: c for c in claims.evaluate(single_run)}
    # one lr, no noisy arm, one batch size, no BN-only run: nothing to judge
    for cid in ("bn_higher_lr", "noisy_bn_trains_like_bn", "bn_needs_large_batches", "bn_only_beats_random"):
        assert out[cid]["verdict"] == claims.INCONCLUSIVE, cid
    # 3 landscape probes per arm < min_probes (5): inconclusive too
    assert out["landscape_band_smaller"]["verdict"] == claims.INCONCLUSIVE


def test_margins_and_min_seeds_come_from_the_config(tmp_path):
    # 5 seeds of santurkar_fig4 whose plain arm's relative band is ~5x BN's
    for s in range(5):
        j = math.exp(noise(s, 0.05))
        write_run(tmp_path / "runs" / str(s), seed=s, experiment="santurkar_fig4",
                  arms={"bn": arm(0.5), "none": arm(0.5)},
                  rows=landscape_rows(1500, 50, {"bn": lambda t: 0.1, "none": lambda t, j=j: 0.5 * j}))
    cfg = claims.load_config()
    for override, expected in [({"landscape_min_ratio": 2}, claims.SUPPORTED),
                               ({}, claims.NOT_SUPPORTED),  # the default margin: an order of magnitude
                               ({"landscape_min_ratio": 2, "min_seeds": 6}, claims.INCONCLUSIVE)]:
        path = tmp_path / "claims.yaml"
        path.write_text(yaml.safe_dump({**cfg, **override}))
        out = {c["id"]: c for c in claims.evaluate(tmp_path / "runs", claims.load_config(path))}
        band = out["landscape_band_smaller"]
        assert band["verdict"] == expected, override
        assert 4.5 < 10 ** band["estimate"] < 5.5 and band["n"] == 5


def test_bad_paths_are_one_line_exit_2(tmp_path, sweep_run, capsys):
    assert claims.main([str(tmp_path)]) == 2
    assert "holds no run records" in capsys.readouterr().err
    assert claims.main([str(sweep_run), "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
