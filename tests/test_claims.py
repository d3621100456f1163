"""Claim verdicts from real run records: numbers, thresholds from config, INCONCLUSIVE without evidence."""

import json

import pytest
import yaml

from bnlab import claims
from bnlab.analysis import landscape_medians
from bnlab.results import load_runs

IDS = [cid for cid, *_ in claims.CLAIMS]


def test_every_claim_has_a_verdict_numbers_and_scale(sweep_run, tmp_path, capsys):
    assert claims.main([str(sweep_run), "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "claims.json").read_text())
    assert [c["id"] for c in out] == IDS and len(IDS) >= 11
    for c in out:
        assert c["verdict"] in (claims.SUPPORTED, claims.NOT_SUPPORTED, claims.INCONCLUSIVE)
        assert c["paper"] and c["rule"] and isinstance(c["numbers"], dict)
    md = (tmp_path / "claims.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(IDS) + 1  # header + a row each
    assert "**INCONCLUSIVE**" in md
    printed = capsys.readouterr().out
    assert "bnlab claims" in printed and str(tmp_path / "claims.json") in printed


def test_higher_lr_claim_follows_the_records(sweep_run):
    cfg = claims.load_config()
    result = {c["id"]: c for c in claims.evaluate(sweep_run, cfg)}["bn_higher_lr"]
    runs = load_runs(sweep_run)
    assert result["numbers"]["lrs"] == [0.05, 1.0] and result["runs"] == 4
    assert "4 run(s)" in result["scale"] and "2 seed(s)" in result["scale"] and "5085 train" in result["scale"]

    def max_lr(arm):  # recomputed from the summaries: trains in every seed at that lr
        ok = {}
        for r in runs:
            a = r.summary["arms"][arm]
            good = not a["diverged"] and a["final_test_acc"] >= cfg["trains_acc"]
            ok[r.summary["lr"]] = ok.get(r.summary["lr"], True) and good
        return max([lr for lr, g in ok.items() if g], default=None)

    assert result["numbers"]["max_lr_bn"] == max_lr("bn")
    assert result["numbers"]["max_lr_none"] == max_lr("none")
    bn, none = max_lr("bn"), max_lr("none")
    expected = claims.SUPPORTED if bn is not None and (none is None or bn > none) else claims.NOT_SUPPORTED
    assert result["verdict"] == expected


def test_missing_evidence_is_inconclusive_never_supported(single_run):
    out = {c["id"]: c for c in claims.evaluate(single_run)}
    # one lr, no noisy arm, one batch size, no BN-only run: nothing to judge
    for cid in ("bn_higher_lr", "noisy_bn_trains_like_bn", "bn_needs_large_batches", "bn_only_beats_random"):
        assert out[cid]["verdict"] == claims.INCONCLUSIVE, cid
    # 3 landscape probes per arm < min_probes (5): inconclusive too
    assert out["landscape_band_smaller"]["verdict"] == claims.INCONCLUSIVE


def test_thresholds_come_from_the_config(single_run, tmp_path):
    cfg = claims.load_config()
    med = landscape_medians(single_run)
    ratio = med["none"]["loss_band"] / med["bn"]["loss_band"]
    for min_ratio, expected in [(ratio / 2, claims.SUPPORTED), (ratio * 2, claims.NOT_SUPPORTED)]:
        path = tmp_path / f"claims{min_ratio}.yaml"
        path.write_text(yaml.safe_dump({**cfg, "min_probes": 2, "landscape_min_ratio": min_ratio}))
        out = {c["id"]: c for c in claims.evaluate(single_run, claims.load_config(path))}
        band = out["landscape_band_smaller"]
        assert band["verdict"] == expected
        assert band["numbers"]["ratio_none_over_bn"] == pytest.approx(ratio, rel=1e-3)


def test_bad_paths_are_one_line_exit_2(tmp_path, sweep_run, capsys):
    assert claims.main([str(tmp_path)]) == 2
    assert "holds no run records" in capsys.readouterr().err
    assert claims.main([str(sweep_run), "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
