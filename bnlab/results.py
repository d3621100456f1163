"""Run records: the contract between training and everything after it.

A run directory holds (schema version ``SCHEMA``):

- ``config.yaml``: the resolved config (Hydra also writes ``.hydra/``);
- ``metrics.jsonl``: one JSON object per line,
  ``{"step": int, "arm": str, "split": "train"|"test"|"probe", <metric>: float|null, ...}``,
  non-finite values written as null;
- ``summary.json``: per arm final/best accuracy, steps to target, divergence,
  time, plus the pair id and ``"schema"``.

Writes are crash-safe: summary and config go to a temp file renamed into place;
metrics lines are appended in one ``os.write`` of whole lines per flush, so a
killed process leaves complete lines only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from pathlib import Path

from bnlab.errors import BnlabError

SCHEMA = 1
# A write that fails for one of these reasons is the machine's state, not a bug: one line, exit 2.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error(path: Path, exc: OSError) -> BnlabError:
    """The one-line error for a failed write of ``path`` (full disk, quota, read-only, permissions)."""
    return BnlabError(
        f"cannot write {path}: {exc.strerror or exc}; free space or choose another hydra.run.dir "
        f"(the records up to the last complete flush are intact; rerun the same command to resume)"
    )


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # the old file, if any, stays whole
        if exc.errno in DISK_ERRORS:
            raise disk_error(path, exc) from None
        raise


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunRecord:
    """Writer for one run directory."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.summary_path = self.dir / "summary.json"

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.dir / "config.yaml", yaml_text)

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        data = "".join(
            json.dumps({k: _clean(v) for k, v in r.items()}, allow_nan=False) + "\n" for r in rows
        ).encode()
        before = self.size()
        try:
            fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.truncate(self.metrics_path, before)  # no partial line stays behind
            if exc.errno in DISK_ERRORS:
                raise disk_error(self.metrics_path, exc) from None
            raise

    def size(self) -> int:
        """Bytes of metrics.jsonl so far (a checkpoint records it to resume the records exactly)."""
        return self.metrics_path.stat().st_size if self.metrics_path.exists() else 0

    def truncate(self, size: int) -> None:
        """Cut metrics.jsonl back to ``size`` bytes (the rows up to a checkpoint); drop any summary."""
        have = self.size()
        if have < size:
            raise BnlabError(
                f"{self.metrics_path} has {have} bytes but its checkpoint expects at least {size}; the records "
                f"were changed after the checkpoint: pass train.resume=never to start over"
            )
        if self.metrics_path.exists():
            os.truncate(self.metrics_path, size)
        self.summary_path.unlink(missing_ok=True)

    def start_over(self) -> None:
        """A fresh run in this dir: no rows or summary of an earlier attempt remain."""
        self.metrics_path.unlink(missing_ok=True)
        self.summary_path.unlink(missing_ok=True)

    def write_summary(self, summary: dict) -> None:
        summary = {"schema": SCHEMA, **summary}
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, allow_nan=False) + "\n")


def flatten(node, prefix: str = "") -> dict:
    """A nested config as {dotted key: leaf value}; lists are leaves; an empty dict is a leaf."""
    out = {}
    if isinstance(node, dict) and node:
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = node
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def find_runs(root: Path) -> list[Path]:
    """Every run directory (one holding summary.json) at or below root, sorted."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("summary.json"))


class Run:
    """One run directory, read lazily: ``summary``, ``config`` (resolved, plain dict), ``metrics``."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.summary = read_summary(self.dir)
        self._metrics: list[dict] | None = None
        self._config: dict | None = None

    @property
    def config(self) -> dict:
        if self._config is None:
            import yaml

            path = self.dir / "config.yaml"
            self._config = yaml.safe_load(path.read_text()) if path.exists() else {}
        return self._config

    @property
    def metrics(self) -> list[dict]:
        if self._metrics is None:
            self._metrics = read_metrics(self.dir)
        return self._metrics

    def get(self, dotted: str, default=None):
        """A resolved config value by dotted key, e.g. ``run.get("optim.lr")``."""
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def rows(self, arm: str, split: str, key: str | None = None) -> list[dict]:
        """Rows of one arm and split in step order; only those holding ``key`` when given."""
        return [r for r in self.metrics if r["arm"] == arm and r["split"] == split and (key is None or key in r)]

    def series(self, arm: str, split: str, key: str) -> tuple[list[int], list[float | None]]:
        rows = self.rows(arm, split, key)
        return [r["step"] for r in rows], [r[key] for r in rows]

    @property
    def arms(self) -> list[str]:
        return list(self.summary["arms"])


def load_runs(root: Path) -> list[Run]:
    """Every finished run at or below ``root`` (a run dir or a multirun dir)."""
    return [Run(d) for d in find_runs(root)]
