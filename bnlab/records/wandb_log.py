"""Weights & Biases sink: one W&B run per arm, grouped by pair id.

Conventions (docs/design.md): ``group`` = pair id, ``job_type`` = arm name, the full
resolved config plus ``arm`` as the run config, the training step as x-axis.
Modes (``logger.mode``):

- ``auto`` (default): online when W&B credentials exist (``WANDB_API_KEY`` or a
  netrc entry for the W&B host), else offline with one notice line;
- ``online``, ``offline`` (then ``wandb sync <run_dir>/wandb/offline-run-*``),
  ``disabled``.

W&B outages never stop or stall training:

- online, ``wandb.init`` waits at most ``logger.init_timeout`` seconds; if it
  fails or times out (server refusing, not answering, rejecting the key), that
  arm and the remaining ones log offline instead, with one warning line on
  stderr naming the server and the ``wandb sync`` command; ``describe()`` (the
  run record's summary) says ``"mode": "offline"`` with the reason in
  ``"fallback"``;
- ``run.log`` only queues (wandb's service uploads in the background);
- each arm's ``run.finish`` waits at most ``logger.finish_timeout`` seconds for
  uploads (wandb's ``finish_timeout``); what was not uploaded stays in the
  run's local transaction log under ``<run_dir>/wandb/run-*`` for ``wandb sync``.

Resume: ``make(..., resume_ids={arm: id})`` re-opens each arm's run with the
same id (``resume="allow"``). Online, W&B continues the same run. Offline,
wandb writes a new ``offline-run-<time>-<id>`` folder per segment; ``wandb
sync`` uploads the folders of one id in order of start time into that one run,
appending. Because W&B renumbers (online: drops) rows whose step is not past
the run's last one, steps an earlier segment already logged (past the
checkpoint, before the crash) are not logged again.

The run records on disk are the source of truth; W&B is a mirror of them.
Runs are always finished, also when training raised.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import secrets
import string
import struct
import sys
from pathlib import Path

from bnlab.errors import BnlabError

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


# logger.<key> -> the W&B environment variable that fills it when the config leaves it null
ENV_SETTINGS = {"project": "WANDB_PROJECT", "entity": "WANDB_ENTITY", "group": "WANDB_RUN_GROUP",
                "tags": "WANDB_TAGS", "notes": "WANDB_NOTES", "dir": "WANDB_DIR"}
# summary.json's per-arm values that each arm's W&B summary carries (what a W&B user looks at first)
SUMMARY_KEYS = ("best_test_acc", "final_test_acc", "final_test_loss", "final_train_loss", "final_train_acc",
                "steps_to_target", "diverged", "diverged_step", "steps_trained", "train_time_s", "trainable_params")


def run_settings(cfg, pair_id: str, run_dir: Path, experiment: str | None = None) -> dict:
    """project, entity, group, tags, notes and dir of the W&B runs.

    Precedence, per key: an explicit ``logger.<key>`` in the config, else the
    W&B environment variable (``WANDB_PROJECT``, ``WANDB_ENTITY``,
    ``WANDB_RUN_GROUP``, ``WANDB_TAGS`` comma-separated, ``WANDB_NOTES``,
    ``WANDB_DIR``), else bnlab's default (project ``bnlab``, group the pair id,
    dir the run directory). The experiment name is always one more tag, so runs
    can be filtered by experiment.
    """
    out = {}
    for key, env in ENV_SETTINGS.items():
        value = cfg.get(key)
        if value is None and os.environ.get(env):
            value = os.environ[env]
            if key == "tags":
                value = [t.strip() for t in value.split(",") if t.strip()]
        out[key] = value
    defaults = {"project": "bnlab", "group": pair_id, "dir": str(run_dir), "tags": []}
    out = {k: (defaults.get(k) if v is None else v) for k, v in out.items()}
    out["tags"] = list(out["tags"])
    if experiment and experiment not in out["tags"]:
        out["tags"].append(str(experiment))
    return out


def define_metrics(run) -> None:
    """The training step (key ``step``, logged in every row) as every metric's x-axis; test accuracy's
    summary is its maximum (the best test accuracy), the others keep their last value."""
    run.define_metric("step")
    run.define_metric("*", step_metric="step")
    for key in ("test/acc", "test/acc_batch_stats"):
        run.define_metric(key, step_metric="step", summary="max")


class NullTracker:
    """Used for ``logger=none``: every call is a no-op."""

    runs: dict = {}

    def log(self, arm: str, step: int, data: dict) -> None:
        pass

    def summarize(self, summary: dict) -> None:
        pass

    def log_figures(self, step: int, paths: list[Path]) -> None:
        pass

    def log_html(self, step: int, path: Path) -> None:
        pass

    def log_checkpoints(self, paths: dict[str, Path]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass

    def describe(self) -> dict:
        return {}


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise BnlabError(f"logger.mode={mode} is not a W&B mode; choose from {', '.join(MODES)}")
    env = os.environ.get("WANDB_MODE")
    if mode == "auto" and env in ("offline", "disabled", "online"):
        return env
    if mode == "auto":
        if has_credentials():
            return "online"
        log.info("W&B: no credentials found, logging offline (sync later with `wandb sync`)")
        return "offline"
    return mode


def warn(message: str) -> None:
    """One unwrapped line on stderr, and the same line in the job's log file."""
    print(f"bnlab: warning: {message}", file=sys.stderr, flush=True)
    record = log.makeRecord(log.name, logging.WARNING, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:  # the console handler wraps lines: file only
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(" Consider increasing the init_timeout")[0]  # wandb's hint; we name our key
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _new_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _server(wandb) -> str:
    try:
        return wandb.setup().settings.base_url
    except Exception:  # noqa: BLE001 - only for a message
        return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def probe(url: str, timeout: float) -> str | None:
    """Why the W&B server at ``url`` cannot be reached, or None when it answers HTTP at all.

    Bounds the wait (``timeout`` per connect and per read) before ``wandb.init``
    is asked to go online, so an outage costs at most that. Any HTTP status
    counts as an answer, and so does a TLS failure (wandb has CA settings of its
    own): only a refused, reset, unresolvable or silent server is an outage.
    Proxies come from the environment, as for wandb.
    """
    import ssl
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return None
        if isinstance(exc.reason, TimeoutError):
            return f"no answer within {timeout:g}s"
        return f"{exc.reason}"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except (OSError, ValueError) as exc:  # reset mid-answer, a malformed URL
        return _one_line(exc)
    return None


def _transaction_records(path: Path):
    """Records of a wandb transaction log (``run-<id>.wandb``), stopping quietly at a torn end.

    The format (LevelDB log: a 7-byte header, 32 KiB blocks of ``crc32:u32 |
    length:u16 | type:u8 | data`` chunks, each record a serialized
    ``wandb_internal_pb2.Record``) is the one tests/wandb_records.py reads; a
    process killed mid-write leaves a partial last chunk, which ends the scan.
    """
    from wandb.proto import wandb_internal_pb2

    block, header = 32768, 7
    raw = Path(path).read_bytes()
    if raw[:4] != b":W&B":
        return
    buf, pos = b"", header
    while pos + header <= len(raw):
        left = block - pos % block
        if left < header:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + header])
        if length == 0 and kind == 0:
            pos += left
            continue
        if pos + header + length > len(raw) or kind not in (1, 2, 3, 4):
            return
        data = raw[pos + header : pos + header + length]
        pos += header + length
        buf = data if kind in (1, 2) else buf + data
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            try:
                rec.ParseFromString(buf)
            except Exception:  # noqa: BLE001 - a torn record ends the scan
                return
            buf = b""
            yield rec


def segment_glob(run_id: str, prefix: str) -> str:
    """The transaction logs of run ``run_id`` under a wandb dir: ``<prefix>-<time>-<id>[-<n>]/run-<id>.wandb``.

    wandb adds ``-<n>`` to the folder when a segment of the same run starts within the same second as
    the last one (a fast crash and resume): matching only ``...-<id>/`` would miss that segment.
    """
    return f"{prefix}-*-{run_id}*/run-{run_id}.wandb"


def last_logged_step(wandb_dir: Path, run_id: str, skip: Path | None = None) -> int | None:
    """The highest step any local segment of run ``run_id`` (online or offline) logged."""
    last = None
    for path in Path(wandb_dir).glob(segment_glob(run_id, "*")):
        if skip is not None and path.parent.resolve() == Path(skip).resolve():
            continue
        try:
            for rec in _transaction_records(path):
                if rec.WhichOneof("record_type") != "history":
                    continue
                for item in rec.history.item:
                    if (item.key or "/".join(item.nested_key)) == "_step":
                        step = int(json.loads(item.value_json))
                        last = step if last is None else max(last, step)
        except (OSError, ValueError) as exc:
            log.info("W&B: could not read %s (%s); its steps are not skipped", path, exc)
    return last


def unsynced_segments(wandb_dir: Path, run_id: str) -> list[Path]:
    """Offline folders of run ``run_id`` that ``wandb sync`` has not uploaded (no ``.synced`` mark)."""
    return [p.parent for p in sorted(Path(wandb_dir).glob(segment_glob(run_id, "offline-run")))
            if not p.with_name(p.name + ".synced").exists()]


class WandbTracker:
    """One ``wandb`` run per arm, created up front and finished in ``finish``."""

    def __init__(self, cfg, run_dir: Path, pair_id: str, config: dict, arms: list[str],
                 resume_ids: dict[str, str] | None = None):
        import wandb

        self.mode = resolve_mode(cfg.mode)  # the mode asked for; ``modes`` holds what each arm got
        self.run_dir = Path(run_dir)
        self.runs, self.modes, self.fallback, self.resumed, self.floor = {}, {}, {}, {}, {}
        self.finish_timeout = float(cfg.get("finish_timeout") or 0)
        self.pair_id = pair_id
        self.settings = run_settings(cfg, pair_id, self.run_dir, config.get("experiment_name"))
        self.wandb_dir = Path(self.settings["dir"]).absolute() / "wandb"  # where wandb puts the run folders
        resume_ids = {a: i for a, i in (resume_ids or {}).items() if i}
        self.wandb_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            console="off",  # the run records and the rich console already hold the output
            silent=True,
            init_timeout=float(cfg.init_timeout),
            finish_timeout=self.finish_timeout,
            finish_timeout_raises=True,  # so ``finish`` can say so in one line of its own
            # W&B has no public setting for this: its own docs ("How can I disable logging of system
            # metrics to W&B?") name x_disable_stats. Off by default: a sampling thread per arm run
            # costs CPU beside training on small machines and is not part of the science.
            x_disable_stats=not cfg.system_stats,
        )
        failed = None  # why online is out, once it is: the remaining arms go offline at once
        if self.mode == "online":
            failed = probe(_server(wandb), float(cfg.init_timeout))
            if failed:
                self._warn_offline(wandb, cfg, failed)
        if self.mode == "offline" or failed:
            # offline for the whole process too: else wandb's own usage telemetry still posts to the
            # server when the process exits, and waits up to 10 s for one that does not answer
            wandb.setup(settings=wandb.Settings(mode="offline"))
        # A run resumed online would put this segment's steps first, and W&B would renumber the older
        # offline segments' steps behind them when they are synced: such runs go on offline instead.
        stay_offline = [a for a in arms if a in resume_ids and not failed and self.mode == "online"
                        and unsynced_segments(self.wandb_dir, resume_ids[a])]
        if stay_offline:
            warn(f"W&B: resumed runs of {', '.join(stay_offline)} have offline segments not yet synced, so "
                 f"they go on offline; upload all in order with `wandb sync {self.wandb_dir}/offline-run-*`")
        for arm in arms:
            run_id = resume_ids.get(arm) or _new_id()
            kwargs = dict(
                project=self.settings["project"],
                entity=self.settings["entity"],
                group=self.settings["group"],
                job_type=arm,
                name=f"{pair_id}-{arm}",
                tags=self.settings["tags"],
                notes=self.settings["notes"],
                config={**config, "arm": arm},
                dir=str(self.wandb_dir.parent),
                resume="allow" if arm in resume_ids else None,
                reinit="create_new",  # one process holds a run per arm at once
                settings=settings,
            )
            mode, note = ("offline" if failed else self.mode), ""
            if arm in stay_offline:
                mode = "offline"
                self.fallback[arm] = f"run {run_id} has offline segments not yet synced"
            try:
                run = wandb.init(mode=mode, id=run_id, **kwargs)
            except Exception as exc:  # noqa: BLE001 - CommError, timeouts, a rejected key: any online failure
                if mode != "online":
                    raise
                failed = f"online start failed: {_one_line(exc)}"
                self._warn_offline(wandb, cfg, failed)
                mode = "offline"
                # wandb's service keeps the failed run's id busy for the rest of this process
                run = wandb.init(mode=mode, id=_new_id(), **kwargs)
                if arm in resume_ids:
                    note = f"; run {run_id} goes on offline as a new run {run.id}"
            define_metrics(run)
            self.runs[arm], self.modes[arm] = run, mode
            if failed and mode == "offline":
                self.fallback[arm] = f"online unavailable: {failed}{note}"
            self.resumed[arm] = arm in resume_ids and run.id == run_id
            if self.resumed[arm]:
                self.floor[arm] = self._first_new_step(run, mode)

    def _warn_offline(self, wandb, cfg, why: str) -> None:
        warn(
            f"W&B: cannot log online to {_server(wandb)} ({why}; logger.init_timeout="
            f"{float(cfg.init_timeout):g}s); continuing offline, upload later with "
            f"`wandb sync {self.wandb_dir}/offline-run-*`"
        )

    def _first_new_step(self, run, mode: str) -> int:
        """Steps below this were logged by an earlier segment of the run: not logged again."""
        if mode == "online":
            return int(run.starting_step) if run.resumed else 0
        last = last_logged_step(self.wandb_dir, run.id, skip=Path(run.dir).parent)
        first = 0 if last is None else last + 1
        if first:
            log.info("W&B: run %s resumes offline after step %d, which an earlier segment logged", run.id, last)
        return first

    def log(self, arm: str, step: int, data: dict) -> None:
        import torch
        import wandb

        if step < self.floor.get(arm, 0):
            return
        # tensors are raw activation samples: W&B histograms (they are not in the run records)
        data = {k: wandb.Histogram(v.float().cpu().numpy()) if isinstance(v, torch.Tensor) else v
                for k, v in data.items()}
        self.runs[arm].log({"step": step, **data}, step=step)

    def summarize(self, summary: dict) -> None:
        """Each arm's W&B summary gets what summary.json holds for it (SUMMARY_KEYS) and the run's scale."""
        shared = {k: summary[k] for k in ("pair_id", "steps", "lr", "batch_size", "seed", "model", "width")
                  if k in summary}
        for arm, run in self.runs.items():
            values = summary["arms"].get(arm, {})
            run.summary.update({**shared, **{k: values[k] for k in SUMMARY_KEYS if k in values}})

    def log_figures(self, step: int, paths: list[Path]) -> None:
        """The run's figures (PNG) as ``wandb.Image`` in every arm's run, at the last logged step."""
        import wandb

        images = {f"figures/{p.stem}": p for p in paths if p.suffix == ".png"}
        for arm, run in self.runs.items():
            if images and step >= self.floor.get(arm, 0):
                run.log({"step": step, **{k: wandb.Image(str(p), caption=p.stem) for k, p in images.items()}},
                        step=step)

    def log_html(self, step: int, path: Path) -> None:
        """The run's explorer page (bnlab-explore) as ``wandb.Html`` in every arm's run; ``inject=False``:
        the page is complete HTML with its own scripts, W&B's stylesheet would only add to it."""
        import wandb

        for arm, run in self.runs.items():
            if step >= self.floor.get(arm, 0):
                run.log({"step": step, "explore": wandb.Html(str(path), inject=False)}, step=step)

    def log_checkpoints(self, paths: dict[str, Path]) -> None:
        """Each arm's final weights as a W&B Artifact of type ``model`` (``logger.log_checkpoints``)."""
        import wandb

        for arm, run in self.runs.items():
            if arm in paths:
                art = wandb.Artifact(f"{self.pair_id}-{arm}", type="model",
                                     metadata={"arm": arm, "pair_id": self.pair_id})
                art.add_file(str(paths[arm]), name=f"{arm}.pt")
                run.log_artifact(art)

    def finish(self, exit_code: int = 0) -> None:
        """Finish every arm's run; a stop signal meanwhile waits until they are whole (one line)."""
        from bnlab.preemption import DeferredSignals

        timed_out = []
        with DeferredSignals() as signals:
            for arm, run in self.runs.items():
                try:
                    run.finish(exit_code=exit_code)
                except TimeoutError:
                    timed_out.append(arm)
                except Exception as exc:  # noqa: BLE001 - W&B must not fail a run whose records are written
                    warn(f"W&B: finishing the {arm} run failed ({_one_line(exc)}); the run records are complete")
        if signals.caught:
            warn(f"{' and '.join(dict.fromkeys(signals.caught))} during the W&B finish: the W&B runs were "
                 f"finished first, so they are whole")
        if timed_out:
            import wandb

            warn(
                f"W&B server {_server(wandb)}: uploads of {', '.join(timed_out)} not done after "
                f"logger.finish_timeout={self.finish_timeout:g}s; the data is on disk: "
                f"`wandb sync {self.wandb_dir}/run-*`"
            )

    def describe(self) -> dict:
        out = {}
        for arm, r in self.runs.items():
            out[arm] = {"id": r.id, "mode": self.modes[arm], "dir": str(Path(r.dir).parent),
                        "resumed": self.resumed[arm]}
            if arm in self.fallback:
                out[arm]["fallback"] = self.fallback[arm]
        return out


def publish(tracker, cfg, run_dir: Path, summary: dict) -> None:
    """End of a completed run: summary values, figures (``logger.log_figures``) and final weights
    (``logger.log_checkpoints``) to W&B. The records are written first; this only mirrors them."""
    if not tracker.runs:
        return
    tracker.summarize(summary)
    if cfg.get("log_figures"):
        from bnlab import plots
        from bnlab.explore.cli import write_page

        paths, _ = plots.run_figures(run_dir)  # the same figures bnlab-plot draws, into RUN_DIR/figures
        step = max(a["steps_trained"] for a in summary["arms"].values())
        tracker.log_figures(step, paths)
        tracker.log_html(step, write_page(Path(run_dir)))  # the interactive page, RUN_DIR/explore.html
    if cfg.get("log_checkpoints"):
        ckpts = {arm: Path(run_dir) / "checkpoints" / f"{arm}.pt" for arm in summary["arms"]}
        missing = [arm for arm, p in ckpts.items() if not p.is_file()]
        if missing:
            warn(f"logger.log_checkpoints=true but no final weights of {', '.join(missing)} "
                 f"(train.save_checkpoint=false?); no artifact for them")
        tracker.log_checkpoints({arm: p for arm, p in ckpts.items() if p.is_file()})


def make(cfg, run_dir: Path, pair_id: str, config: dict, arms: list[str],
         resume_ids: dict[str, str] | None = None):
    """The tracker for ``logger``; ``resume_ids`` ({arm: W&B run id}, from ``describe()``) re-opens those runs."""
    if cfg.name == "none" or cfg.get("mode") == "disabled":
        return NullTracker()
    if cfg.name != "wandb":
        raise BnlabError(f"logger={cfg.name} is not a known logger; use logger=wandb or logger=none")
    return WandbTracker(cfg, run_dir, pair_id, config, arms, resume_ids=resume_ids)
