"""bnlab's side of SLURM sweeps (``hydra/launcher=slurm``, hydra-submitit-launcher).

submitit polls the state of a sweep's jobs with ``sacct`` from the launching
process. On a cluster without job accounting, sacct fails at every poll and
submitit logs a multi-line warning each time (a dozen per short sweep). bnlab
asks sacct once before the sweep: if it fails, one line says what that means,
and submitit stops polling it and waits on the jobs' result files, which is
what it falls back to anyway. configs/hydra/launcher/slurm*.yaml hold the
launcher presets; scripts/slurm_cluster.sh starts a single-node test cluster.
"""

from __future__ import annotations

import subprocess
import sys

from bnlab.errors import BnlabError


def why_not(command: list[str]) -> str | None:
    """Why ``command`` (a SLURM client call) fails here, in one line, or None when it answers."""
    try:
        res = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return f"no SLURM client here ({command[0]} not found)"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return " ".join(str(exc).split())
    if res.returncode == 0:
        return None
    return " ".join((res.stderr or res.stdout).split())[:200] or f"{command[0]} exited with {res.returncode}"


def check_controller() -> None:
    """BnlabError (one line, exit 2) before anything is submitted when no controller answers."""
    why = why_not(["sinfo", "-h", "-o", "%a"])
    if why is not None:
        raise BnlabError(f"hydra/launcher=slurm*: no SLURM controller answers here ({why}); start the cluster "
                         f"(the local test one: bash scripts/slurm_cluster.sh up) or run on a SLURM login node")


def check_accounting() -> None:
    """One warning line and no sacct polls when accounting is off; nothing when it answers."""
    why = why_not(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"])
    if why is None:
        return
    print(f"bnlab: warning: sacct does not answer on this SLURM cluster ({why}): without job accounting "
          f"submitit waits on the jobs' result files instead of polling their states (a job killed "
          f"without one is not noticed); enable slurmdbd accounting for job histories "
          f"(scripts/slurm_cluster.sh shows a minimal setup)", file=sys.stderr, flush=True)
    from submitit.slurm.slurm import SlurmInfoWatcher

    SlurmInfoWatcher._make_command = lambda self: None  # no sacct polls: state comes from result files
