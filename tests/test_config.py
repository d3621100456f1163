"""Configs composed with Hydra's compose API: every group option and experiment."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnlab import config
from bnlab.errors import BnlabError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_defaults_compose_and_validate(compose_cfg):
    cfg = compose_cfg()
    config.validate(cfg)
    assert list(cfg.arms) == ["bn", "none"]
    assert cfg.data.name == "cifar10" and cfg.model.arch == "vgg11" and cfg.optim.name == "sgd"
    assert cfg.data.augment.enabled is False  # Santurkar et al.: no augmentation by default


@pytest.mark.parametrize(
    "group", ["data", "model", "init", "optim", "logger", "metrics", "norm", "experiment", "scale"]
)
def test_every_option_composes(compose_cfg, group):
    opts = options(group)
    assert opts, f"configs/{group} is empty"
    for opt in opts:
        cfg = compose_cfg(f"{group}={opt}")
        config.validate(cfg)


def test_option_names_match_what_they_select(compose_cfg):
    for arch in options("model"):
        assert compose_cfg(f"model={arch}").model.arch == arch
    for scheme in options("init"):
        assert compose_cfg(f"init={scheme}").init.scheme == scheme
    for opt in options("optim"):
        assert compose_cfg(f"optim={opt}").optim.name == opt


def test_experiment_is_a_delta(compose_cfg):
    demo = compose_cfg("experiment=demo")
    base = compose_cfg()
    assert demo.model.width == 0.25 and demo.train.steps == 300
    assert demo.optim.momentum == base.optim.momentum  # untouched keys keep their defaults


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=0", r"optim.lr=0 must be > 0"),
        ("optim.lr=-0.1", r"optim.lr=-0.1 must be > 0"),
        ("data.batch_size=0", r"data.batch_size=0 must be an integer > 0"),
        ("arms=[bn,foo]", r"unknown norm 'foo'"),
        ("arms=[]", r"arms=\[\] is empty"),
        ("model.width=0", r"model.width=0 must be > 0"),
        ("train.steps=0", r"train.steps=0 must be an integer > 0"),
        ("logger.mode=sometimes", r"logger.mode=sometimes is not known"),
    ],
)
def test_impossible_values_are_named(compose_cfg, override, message):
    with pytest.raises(BnlabError, match=message):
        config.validate(compose_cfg(override))


def test_pair_id_ignores_arms_and_logging_only(compose_cfg):
    a = config.pair_id(compose_cfg())
    assert a == config.pair_id(compose_cfg("arms=[none]"))
    assert a == config.pair_id(compose_cfg("logger=none"))
    assert a != config.pair_id(compose_cfg("optim.lr=0.5"))
    assert a != config.pair_id(compose_cfg("seed=1"))
    assert OmegaConf.is_config(compose_cfg())  # compose returns a DictConfig
