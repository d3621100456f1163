"""The paired trainer: ``from bnlab import train; train.run(cfg, out_dir)``.

- loop.py: ``run``, setup -> loop -> finish, and the ``Hooks`` a caller (the bench) watches it with
- arm.py: one arm (model, optimizer, schedule) and its ``Tally`` (buffers and totals)
- step.py: one optimizer step of one arm, with the measurements due at it
- probes.py: which measurements are due (through bnlab/metrics/registry.py), and test-set evaluation
- rows.py: an arm's tally as record rows, W&B rows and the summary
- resume.py: completed runs, checkpoints to continue from
"""

from bnlab.train.arm import Arm, Tally, arm_names, build_arm
from bnlab.train.loop import Hooks, pick_device, run, total_steps
from bnlab.train.probes import evaluate, probe_blocks, probes_due, uses_batch_stats
from bnlab.train.resume import completed_summary, hydra_output_dir
from bnlab.train.rows import flush, make_summary, tracker_rows
from bnlab.train.step import autocast, step_arm, tf32, train_step

__all__ = ["Arm", "Hooks", "Tally", "arm_names", "autocast", "build_arm", "completed_summary", "evaluate", "flush",
           "hydra_output_dir", "make_summary", "pick_device", "probe_blocks", "probes_due", "run", "step_arm",
           "tf32", "total_steps", "tracker_rows", "train_step", "uses_batch_stats"]
