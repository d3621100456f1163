"""Shared fixtures: the real CIFAR-10 subset, the installed console script, Hydra compose."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from bnlab.paths import absolute_data_args

REPO = Path(__file__).resolve().parents[1]
# `pytest` started by hand with a relative BNLAB_DATA_DIR: relative to where it was started, as the
# CLI reads it, before any test runs bnlab from another directory.
absolute_data_args([])
BNLAB = Path(sys.executable).with_name("bnlab")  # the console script of this environment


def _find_cifar_mini() -> Path | None:
    for cand in (os.environ.get("BNLAB_DATA_DIR"), REPO.parent / "shared/data/cifar10-mini"):
        if cand and (Path(cand) / "cifar-10-batches-py").is_dir():
            return Path(cand).resolve()
    return None


CIFAR_MINI = _find_cifar_mini()


@pytest.fixture
def cifar_dir() -> Path:
    if CIFAR_MINI is None:
        pytest.skip(
            "needs the CIFAR-10 subset: set BNLAB_DATA_DIR to a folder holding cifar-10-batches-py "
            "(CI has it at ../shared/data/cifar10-mini)"
        )
    return CIFAR_MINI


# Small, fast settings for end-to-end runs on 2 CPU cores.
QUICK = ["model=simple_cnn", "model.width=0.25", "train.steps=12", "train.log_every=4",
         "train.eval_every=6", "data.batch_size=32", "metrics.layer_norms.every=6"]


def run_bnlab(args: list[str], cwd: Path, data_dir: Path | None = None, env_extra=None, timeout=300):
    """Run the installed `bnlab` console script in a subprocess, W&B offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"})
    if data_dir is not None:
        env["BNLAB_DATA_DIR"] = str(data_dir)
    env.update(env_extra or {})
    return subprocess.run(
        [str(BNLAB), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides) -> the composed DictConfig (Hydra's compose API)."""

    def _compose(*overrides: str):
        with initialize_config_module("bnlab.configs", version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture
def corrupt_cifar(tmp_path, cifar_dir) -> Path:
    """A copy of the subset whose data_batch_3 is truncated mid-pickle."""
    dst = tmp_path / "corrupt" / "cifar-10-batches-py"
    shutil.copytree(cifar_dir / "cifar-10-batches-py", dst)
    f = dst / "data_batch_3"
    f.write_bytes(f.read_bytes()[: 4096])
    return dst.parent


from run_fixtures import single_run, sweep_run  # noqa: E402,F401  (shared session fixtures)
