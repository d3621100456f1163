"""The measurement registry (bnlab/metrics/registry.py): the trainer, config checks and record keys go
through it, so a new metric needs only its module and its config block."""

import pytest
import torch
from omegaconf import open_dict

from bnlab import train
from bnlab.errors import BnlabError
from bnlab.metrics import activations, bn_stats, curvature, divergence, gradnorms, ics, landscape, registry
from bnlab.records.store import read_metrics

FAST = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.steps=12",
        "train.log_every=4", "train.eval_every=6", "train.progress=off"]


def _dummy_at_w(p: registry.Probe) -> dict:
    """A made-up probe: the batch's mean input times the block's scale, and the step's lr."""
    return {"dummy/mean_x": p.x.float().mean().item() * p.block["scale"], "dummy/lr": p.lr}


def _dummy_norm(p: registry.Probe) -> dict:
    """A made-up per-step quantity (a device tensor, like every train-row metric)."""
    return {"dummytrain/w0": torch.linalg.vector_norm(next(p.model.parameters()).detach())}


@pytest.fixture
def dummies():
    """Two metrics defined here, registered only for the test: one probe, one train-row quantity."""
    made = [registry.register(registry.Measurement(
                name="dummy", prefix="dummy/", title="Dummy probe", paper="none", split="probe", at_w=_dummy_at_w)),
            registry.register(registry.Measurement(
                name="dummytrain", prefix="dummytrain/", title="Dummy norm", paper="none", split="train",
                at_w=_dummy_norm))]
    yield made
    for m in made:
        registry.MEASUREMENTS.pop(m.name)


def with_blocks(cfg, **blocks):
    with open_dict(cfg):
        for name, block in blocks.items():
            cfg.metrics[name] = block
    return cfg


def test_a_metric_defined_outside_bnlab_lands_in_the_records(compose_cfg, tmp_path, dummies):
    cfg = with_blocks(compose_cfg(*FAST), dummy={"every": 5, "scale": 2.0}, dummytrain={"every": 3})
    train.run(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    for arm in cfg.arms:
        probe = [r for r in rows if r["arm"] == arm and any(k.startswith("dummy/") for k in r)]
        assert [r["step"] for r in probe] == [0, 5, 10] and {r["split"] for r in probe} == {"probe"}
        lrs = {r["step"]: r["lr"] for r in rows if r["arm"] == arm and r["split"] == "train"}
        assert all(r["dummy/lr"] == lrs[r["step"]] for r in probe)
        per_step = [r for r in rows if r["arm"] == arm and "dummytrain/w0" in r]
        assert [r["step"] for r in per_step] == [0, 3, 6, 9] and {r["split"] for r in per_step} == {"train"}
        assert all(r["dummytrain/w0"] > 0 for r in per_step)
    # both arms saw the same batches: the same input statistic at every probe step
    by_arm = [[r["dummy/mean_x"] for r in rows if r["arm"] == arm and "dummy/mean_x" in r] for arm in cfg.arms]
    assert by_arm[0] == by_arm[1]
    assert registry.owner("dummy/mean_x") is dummies[0] and registry.owner("dummytrain/w0") is dummies[1]


def test_config_checks_cover_a_registered_metric(compose_cfg, tmp_path, dummies):
    cfg = with_blocks(compose_cfg(*FAST), dummy={"every": 0, "scale": 1.0})
    with pytest.raises(BnlabError, match=r"metrics\.dummy\.every=0 must be an integer > 0"):
        train.run(cfg, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_metric_without_a_config_block_is_off(compose_cfg, dummies):
    cfg = compose_cfg(*FAST)
    assert not any(name.startswith("dummy") for name in train.probes_due(cfg, 0))


def test_registration_refuses_a_clash():
    with pytest.raises(ValueError, match="overlaps"):
        registry.register(registry.Measurement(name="clash", prefix="landscape/x", title="", paper="",
                                               split="probe"))
    with pytest.raises(ValueError, match="split"):
        registry.register(registry.Measurement(name="odd", prefix="odd/", title="", paper="", split="test"))
    assert "clash" not in registry.MEASUREMENTS and "odd" not in registry.MEASUREMENTS


ALL_PROBES = [*FAST, "metrics.layer_norms.every=4", "metrics.landscape.every=4", "metrics.ics.every=4",
              "metrics.divergence.every=6", "metrics.curvature.every=6", "metrics.curvature.max_hvps=4",
              "metrics.curvature.trace_samples=2", "metrics.curvature.slq_runs=1", "metrics.curvature.slq_steps=4",
              "metrics.activations.every=4", "metrics.bn_stats.every=4", "metrics.bn_stats.hist_every=4",
              "metrics.bn_stats.batch_every=6", "metrics.bn_stats.batch_values=8", "train.steps=7"]
BASE = {"step", "arm", "split", "lr", "loss", "acc", "grad_norm", "loss_batch_stats", "acc_batch_stats"}
PARSERS = [(gradnorms.parse_grad_key, lambda p: gradnorms.grad_key(p)),
           (gradnorms.parse_weight_key, lambda p: gradnorms.weight_key(p)),
           (landscape.parse_grid_key, lambda p: landscape.grid_key(*p)),
           (divergence.parse_ratio_key, lambda p: divergence.ratio_key(p)),
           (divergence.parse_init_key, lambda p: divergence.init_key(*p)),
           (ics.parse_key, lambda p: ics.key(*p)),
           (curvature.parse_slq_key, lambda p: curvature.slq_key(*p)),
           (curvature.parse_key, lambda p: curvature.key(*p)),
           (activations.parse_percentile_key, lambda p: activations.percentile_key(*p)),
           (activations.parse_stat_key, lambda p: activations.stat_key(*p)),
           (bn_stats.parse_stat_key, lambda p: bn_stats.stat_key(*p)),
           (bn_stats.parse_hist_key, lambda p: bn_stats.hist_key(*p)),
           (bn_stats.parse_batch_key, lambda p: bn_stats.batch_key(*p))]


def test_every_record_key_has_an_owner_and_parses_back(compose_cfg, tmp_path):
    """A real run with every measurement on: each key belongs to the measurement of its split, and
    each parser inverts its builder on the keys the run wrote."""
    train.run(compose_cfg(*ALL_PROBES), tmp_path)
    rows = read_metrics(tmp_path)
    owners, parsed = set(), 0
    for r in rows:
        for k in set(r) - BASE:
            m = registry.owner(k)
            assert m is not None and r["split"] == m.split, k
            owners.add(m.name)
            for parse, build in PARSERS:
                if (p := parse(k)) is not None:
                    assert build(p) == k
                    parsed += 1
    assert owners == set(registry.MEASUREMENTS) - {"recurrent_stats"}  # model=lstm only: tests/test_lstm.py
    assert parsed > 0
    assert landscape.parse_grid_key("landscape/loss_band") is None and ics.parse_key("act/x/mean") is None
