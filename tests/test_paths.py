"""Relative data paths mean "from where the command was started", for the run and every sweep job."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import BNLAB, QUICK, run_bnlab
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bnlab.paths import absolute_data_args


def _job_roots(sweep_dir) -> list[str]:
    jobs = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    return [OmegaConf.load(j / "config.yaml").data.root for j in jobs]


def test_relative_env_and_overrides_resolve_against_the_launch_dir(tmp_path, cifar_dir):
    launch = tmp_path / "launch"
    launch.mkdir()
    (launch / "here").symlink_to(cifar_dir)
    (tmp_path / "up").symlink_to(cifar_dir)
    base = [*QUICK, "train.steps=4", "train.eval_every=4", "logger=none"]
    # a relative $BNLAB_DATA_DIR, in a -m sweep (the jobs get the absolute path)
    res = run_bnlab(["-m", *base, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'env'}"], launch,
                    env_extra={"BNLAB_DATA_DIR": "here"})
    assert res.returncode == 0, res.stderr
    assert _job_roots(tmp_path / "env") == [str(launch / "here")] * 2
    # relative data.root overrides, swept over two spellings: each job gets its absolute path
    res = run_bnlab(["-m", *base, "data.root=here,../up", f"hydra.sweep.dir={tmp_path / 'override'}"], launch,
                    env_extra={"BNLAB_DATA_DIR": "/nowhere"})
    assert res.returncode == 0, res.stderr
    assert _job_roots(tmp_path / "override") == [str(launch / "here"), str(tmp_path / "up")]


def test_the_default_data_dir_is_absolute_in_the_record(tmp_path, cifar_dir):
    """No $BNLAB_DATA_DIR: ./data of the launch directory, written as an absolute path."""
    (tmp_path / "data").symlink_to(cifar_dir)
    env = {k: v for k, v in os.environ.items() if k != "BNLAB_DATA_DIR" and not k.startswith("WANDB_")}
    res = subprocess.run([str(BNLAB), *QUICK, "train.steps=4", "train.eval_every=4", "logger=none",
                          "hydra.run.dir=out"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert OmegaConf.load(tmp_path / "out" / "config.yaml").data.root == str(tmp_path / "data")


@pytest.mark.parametrize("path", ["rel/dir", "with space", "a,comma", "it's"])
def test_override_paths_round_trip_through_hydra(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    quoted = "'" + path.replace("'", "\\'") + "'"
    (arg,) = absolute_data_args([f"data.root={quoted}"])
    (o,) = OverridesParser.create().parse_overrides([arg])
    assert o.value() == str(tmp_path / path)
    (arg,) = absolute_data_args([f"data.root={quoted},/abs"])  # a sweep keeps its values apart
    (o,) = OverridesParser.create().parse_overrides([arg])
    assert [getattr(v, 'text', v) for v in o.value().list] == [str(tmp_path / path), "/abs"]
    assert absolute_data_args(["model=vgg11", "data.batch_size=3"]) == ["model=vgg11", "data.batch_size=3"]
