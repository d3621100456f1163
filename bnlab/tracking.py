"""Weights & Biases sink: one W&B run per arm, grouped by pair id.

Conventions (DESIGN.md): ``group`` = pair id, ``job_type`` = arm name, the full
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


class NullTracker:
    """Used for ``logger=none``: every call is a no-op."""

    runs: dict = {}

    def log(self, arm: str, step: int, data: dict) -> None:
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


def last_logged_step(wandb_dir: Path, run_id: str, skip: Path | None = None) -> int | None:
    """The highest step any local segment of run ``run_id`` (online or offline) logged."""
    last = None
    for path in Path(wandb_dir).glob(f"*-{run_id}/run-{run_id}.wandb"):
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
    return [p.parent for p in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
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
        resume_ids = {a: i for a, i in (resume_ids or {}).items() if i}
        (self.run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            console="off",  # the run records and the rich console already hold the output
            silent=True,
            init_timeout=float(cfg.init_timeout),
            finish_timeout=self.finish_timeout,
            finish_timeout_raises=True,  # so ``finish`` can say so in one line of its own
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
                        and unsynced_segments(self.run_dir / "wandb", resume_ids[a])]
        if stay_offline:
            warn(f"W&B: resumed runs of {', '.join(stay_offline)} have offline segments not yet synced, so "
                 f"they go on offline; upload all in order with `wandb sync {self.run_dir / 'wandb'}/offline-run-*`")
        for arm in arms:
            run_id = resume_ids.get(arm) or _new_id()
            kwargs = dict(
                project=cfg.project,
                entity=cfg.get("entity"),
                group=pair_id,
                job_type=arm,
                name=f"{pair_id}-{arm}",
                tags=list(cfg.get("tags") or []),
                config={**config, "arm": arm},
                dir=str(self.run_dir),
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
            f"`wandb sync {self.run_dir / 'wandb'}/offline-run-*`"
        )

    def _first_new_step(self, run, mode: str) -> int:
        """Steps below this were logged by an earlier segment of the run: not logged again."""
        if mode == "online":
            return int(run.starting_step) if run.resumed else 0
        last = last_logged_step(self.run_dir / "wandb", run.id, skip=Path(run.dir).parent)
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
        self.runs[arm].log(data, step=step)

    def finish(self, exit_code: int = 0) -> None:
        timed_out = []
        for arm, run in self.runs.items():
            try:
                run.finish(exit_code=exit_code)
            except TimeoutError:
                timed_out.append(arm)
            except Exception as exc:  # noqa: BLE001 - W&B must not fail a run whose records are written
                warn(f"W&B: finishing the {arm} run failed ({_one_line(exc)}); the run records are complete")
        if timed_out:
            import wandb

            warn(
                f"W&B server {_server(wandb)}: uploads of {', '.join(timed_out)} not done after "
                f"logger.finish_timeout={self.finish_timeout:g}s; the data is on disk: "
                f"`wandb sync {self.run_dir / 'wandb'}/run-*`"
            )

    def describe(self) -> dict:
        out = {}
        for arm, r in self.runs.items():
            out[arm] = {"id": r.id, "mode": self.modes[arm], "dir": str(Path(r.dir).parent),
                        "resumed": self.resumed[arm]}
            if arm in self.fallback:
                out[arm]["fallback"] = self.fallback[arm]
        return out


def make(cfg, run_dir: Path, pair_id: str, config: dict, arms: list[str],
         resume_ids: dict[str, str] | None = None):
    """The tracker for ``logger``; ``resume_ids`` ({arm: W&B run id}, from ``describe()``) re-opens those runs."""
    if cfg.name == "none" or cfg.get("mode") == "disabled":
        return NullTracker()
    if cfg.name != "wandb":
        raise BnlabError(f"logger={cfg.name} is not a known logger; use logger=wandb or logger=none")
    return WandbTracker(cfg, run_dir, pair_id, config, arms, resume_ids=resume_ids)
