"""The ``bnlab`` console script: a Hydra app around ``train.run``.

``main()`` first composes the config for the given overrides (for a ``-m``
sweep: once per swept value) and checks it, so a typo, an unknown choice or an
impossible number fails in one line with exit code 2 before Hydra creates any
output directory. Then Hydra runs the job(s) as usual: ``bnlab --help``,
``--cfg job``, overrides, ``-m`` sweeps and launchers all work. Configs ship
inside the package (``bnlab.configs``), so the installed script finds them
from any working directory.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, open_dict

from bnlab.errors import BnlabError
from bnlab.records import console

CONFIG_MODULE = "bnlab.configs"

# Flags after which Hydra does not run a job, or that change where configs come from.
_PASS_THROUGH = {
    "--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
    "--resolve", "--package", "-p", "--run", "-r", "--shell-completion", "-sc",
    "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
    "--experimental-rerun",
}


def fail(message: str) -> None:
    console.to_stderr(f"bnlab: error: {message}")
    sys.exit(BnlabError.exit_code)


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf messages span lines; keep the informative ones on one line."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        return f"{group}={choice} is not a known option; choose from {', '.join(exc.options)}"
    parts = []
    while exc is not None:
        parts += [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        exc = exc.__cause__
    keep = [p for p in parts if not p.startswith(("full_key", "object_type", "Set the environment"))]
    return "; ".join(dict.fromkeys(keep)) + " (see `bnlab --help` and `bnlab --cfg job`)"


def _variants(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Override lists that together touch every swept value once.

    A sweep without ``-m`` is bad input: Hydra would answer with its five-line "Ambiguous value".
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    base, sweeps = [], []
    for o in parsed:
        if o.is_sweep_override() and not multirun:
            key = o.get_key_element()
            raise BnlabError(f"{o.input_line} lists several values; add -m to run one job per value "
                             f"(bnlab -m {o.input_line}), or write {key}=[...] for one list value")
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # e.g. interval() sweeps for optimizers: leave to Hydra
                continue
            key = o.get_key_element()
            sweeps.append([f"{key}={v}" for v in values])
            base.append(sweeps[-1][0])
        else:
            base.append(o.input_line)
    variants = [base]
    for s in sweeps:
        for v in s[1:]:
            variants.append([v if b.split("=", 1)[0] == v.split("=", 1)[0] else b for b in base])
    return variants


def _check_output_dir(path: str) -> None:
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        fail(f"output dir {path}: {p} is a file, not a directory; choose another hydra.run.dir / hydra.sweep.dir")
    if not os.access(p, os.W_OK | os.X_OK):
        fail(f"output dir {path}: {p} is not writable; choose another hydra.run.dir / hydra.sweep.dir")


def preflight(args: list[str]) -> None:
    """Guard the console, then compose and validate the config(s) of this command line; exit 2 on bad input.

    A ``-m`` sweep whose jobs go to SLURM (``hydra/launcher=slurm``, ``slurm_local``, ...) also needs a
    controller that answers; the launcher polls job states from this process (bnlab/slurm.py)."""
    console.guard_stdout()  # first: a closed or full stdout must not fail anything that follows
    if any(a.split("=", 1)[0] in _PASS_THROUGH for a in args):
        return
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bnlab import config, lock, slurm

    try:
        variants = _variants(overrides, multirun)
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            for ov in variants:
                cfg = compose("config", overrides=ov, return_hydra_config=True)
                to_slurm = multirun and "SlurmLauncher" in str(cfg.hydra.launcher.get("_target_", ""))
                out = cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir
                _check_output_dir(str(out))
                if not multirun:  # before Hydra writes .hydra/ and the log into a dir another run holds
                    lock.check_free(Path(str(out)))
                with open_dict(cfg):
                    del cfg["hydra"]
                config.validate(cfg)
        if to_slurm:
            slurm.check_controller()
            slurm.check_accounting()
    except BnlabError as exc:
        fail(str(exc))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        fail(one_line(exc))


class SweepJobFailed(CompactHydraException):
    """Bad input met by one job of a ``-m`` sweep at run time (e.g. a corrupt data file).

    Raised instead of ``sys.exit``: Hydra records the job as failed and the
    launcher runs the other jobs to the end (an exit inside a joblib worker
    makes joblib kill the jobs running beside it and drop the queued ones);
    then Hydra reports the first failed job in one line and ``bnlab -m`` exits 1.
    """


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def _app(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from bnlab.preemption import Interrupted
    from bnlab.train import hydra_output_dir, run

    console.guard_stdout()  # again in a launcher's worker process (a no-op where the preflight ran)
    out_dir = hydra_output_dir()
    if cfg.get("experiment_name") is None:  # runs can be found by experiment: config.yaml, W&B tag
        with open_dict(cfg):
            cfg.experiment_name = HydraConfig.get().runtime.choices.get("experiment")
    try:
        return run(cfg, out_dir)
    except BnlabError as exc:
        _remove_if_empty(out_dir)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            fail(str(exc))
        print(f"bnlab: error: {exc}", file=sys.stderr, flush=True)  # now, from the job's own process
        raise SweepJobFailed(f"bnlab: error: sweep job {HydraConfig.get().job.num} failed "
                             f"(the other jobs ran to the end): {exc}") from None
    except Interrupted as exc:  # a signal: the checkpoint is written, the rerun resumes
        # An exit, not a failed job: a stop signal stops the whole sweep (the basic launcher would
        # otherwise start the next job; joblib workers got the signal too and checkpoint atomically).
        print(f"bnlab: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _remove_if_empty(run_dir: Path) -> None:
    """Drop the directory Hydra made for a job that wrote no record (nothing half-written)."""
    ours = [p for p in run_dir.iterdir() if p.name != ".hydra" and p.suffix != ".log"]
    if not ours:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    from bnlab.paths import absolute_data_args

    # relative data paths mean "from here": made absolute before any job runs elsewhere
    sys.argv[1:] = absolute_data_args(sys.argv[1:])
    preflight(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
