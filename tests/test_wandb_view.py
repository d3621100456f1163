"""What a W&B user sees of a bnlab run, read back with wandb's own reader (`wandb leet inspect`)."""

from __future__ import annotations

import json

import pytest
import wandb_records
from conftest import QUICK, run_bnlab
from omegaconf import OmegaConf

from bnlab.records import wandb_log as tracking


def test_summary_tags_project_figures_and_artifact_of_an_offline_run(tmp_path, cifar_dir):
    out = tmp_path / "run"
    env = {"WANDB_PROJECT": "from-env", "WANDB_TAGS": "t1, t2", "WANDB_NOTES": "a note"}
    res = run_bnlab(["experiment=demo", *QUICK, "train.target_acc=0.1", "logger.mode=offline",
                     "logger.log_checkpoints=true", f"hydra.run.dir={out}"], tmp_path, cifar_dir, env_extra=env)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert OmegaConf.load(out / "config.yaml").experiment_name == "demo"  # recorded in the resolved config
    runs = {r["job_type"]: r for r in map(wandb_records.read_run, sorted((out / "wandb").glob("offline-run-*")))}
    assert set(runs) == {"bn", "none"}
    for arm, info in summary["wandb"].items():
        seen = wandb_records.summary(info["dir"])
        assert seen["state"] == "finished" and seen["project"] == "from-env" and seen["notes"] == "a note"
        assert set(seen["tags"]) == {"t1", "t2", "demo"}  # the experiment is a tag
        want = summary["arms"][arm]
        got = seen["summary"]
        for key in ("best_test_acc", "final_test_acc", "final_train_loss", "steps_to_target", "diverged",
                    "steps_trained", "train_time_s"):
            assert got[key] == pytest.approx(want[key]), key
        assert want["steps_to_target"] is not None and got["diverged"] is False
        assert got["pair_id"] == summary["pair_id"] and got["steps"] == summary["steps"]
        # define_metric: test accuracy's summary is its best value, the step is every row's x-axis
        assert got["test/acc"]["max"] == pytest.approx(want["best_test_acc"])
        assert got["figures/curves"]["_type"] == "image-file"
        assert (out / "figures" / "curves.png").is_file()
        history = runs[arm]["history"]
        assert all(row["step"] == step for step, row in history.items())
        kinds = [r["type"] for r in wandb_records.records(info["dir"])]
        assert "artifact" in kinds and kinds.count("metric") >= 3


def test_no_figures_or_artifacts_when_switched_off(tmp_path, cifar_dir):
    out = tmp_path / "run"
    res = run_bnlab([*QUICK, "logger.mode=offline", "logger.log_figures=false", "arms=[bn]",
                     f"hydra.run.dir={out}"], tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "summary.json").read_text())["wandb"]["bn"]
    seen = wandb_records.summary(info["dir"])
    assert seen["project"] == "bnlab" and seen["tags"] in ([], None)  # bnlab's default, no experiment
    assert not [k for k in seen["summary"] if k.startswith("figures/")]
    assert "artifact" not in [r["type"] for r in wandb_records.records(info["dir"])]
    assert not (out / "figures").exists()


@pytest.mark.parametrize(
    "config, env, want",
    [
        ({}, {}, {"project": "bnlab", "entity": None, "group": "PAIR", "tags": ["exp"], "notes": None,
                  "dir": "RUN"}),
        ({}, {"WANDB_PROJECT": "p", "WANDB_ENTITY": "e", "WANDB_RUN_GROUP": "g", "WANDB_TAGS": "a,b",
              "WANDB_NOTES": "n", "WANDB_DIR": "/d"},
         {"project": "p", "entity": "e", "group": "g", "tags": ["a", "b", "exp"], "notes": "n", "dir": "/d"}),
        ({"project": "cp", "entity": "ce", "group": "cg", "tags": ["x"], "notes": "cn", "dir": "/cd"},
         {"WANDB_PROJECT": "p", "WANDB_ENTITY": "e", "WANDB_RUN_GROUP": "g", "WANDB_TAGS": "a,b",
          "WANDB_NOTES": "n", "WANDB_DIR": "/d"},
         {"project": "cp", "entity": "ce", "group": "cg", "tags": ["x", "exp"], "notes": "cn", "dir": "/cd"}),
    ],
    ids=["defaults", "environment-fills-nulls", "config-wins"],
)
def test_config_then_environment_then_default(monkeypatch, config, env, want):
    for var in tracking.ENV_SETTINGS.values():
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = OmegaConf.create({**dict.fromkeys(tracking.ENV_SETTINGS), **config})
    got = tracking.run_settings(cfg, "PAIR", "RUN", experiment="exp")
    assert got == want


# bnlab with wandb's Run.finish patched to send the given signal to its own process first:
# the signal arrives once, while the W&B runs are being finished.
SIGNAL_IN_FINISH = r"""
import os, signal, sys
import wandb.sdk.wandb_run as wandb_run
_finish = wandb_run.Run.finish
SIG = getattr(signal, sys.argv.pop(1))
sent = []
def finish(self, *args, **kwargs):
    if not sent:  # once, in the first arm's finish
        sent.append(os.kill(os.getpid(), SIG))
    return _finish(self, *args, **kwargs)
wandb_run.Run.finish = finish
from bnlab.cli import main
sys.argv[0] = "bnlab"
main()
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_the_wandb_finish_leaves_whole_runs(tmp_path, cifar_dir, sig):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"WANDB_SILENT": "true", "BNLAB_DATA_DIR": str(cifar_dir)})
    res = subprocess.run([sys.executable, "-c", SIGNAL_IN_FINISH, sig, *QUICK, "logger.mode=offline",
                          "logger.log_figures=false", f"hydra.run.dir={out}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "during the W&B finish" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"bnlab: warning: {sig}"), res.stderr
    assert "Traceback" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    for arm, info in summary["wandb"].items():
        assert wandb_records.summary(info["dir"])["state"] == "finished"
        assert sorted(wandb_records.read_run(info["dir"])["history"]) == list(range(13)), arm


@pytest.mark.parametrize("key", ["log_figures", "log_checkpoints"])
def test_a_logger_switch_that_is_not_a_bool_is_one_line(tmp_path, monkeypatch, capsys, key):
    import sys

    from bnlab import cli

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the preflight guards stdout; give the test's back after
    with pytest.raises(SystemExit) as exit_:
        cli.preflight([*QUICK, f"logger.{key}=maybe", f"hydra.run.dir={tmp_path / 'out'}"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"bnlab: error: logger.{key}=maybe must be true or false; pass e.g. logger.{key}=false"]
    assert not (tmp_path / "out").exists()
