"""Run records: the contract between training and everything after it.

A run directory holds (schema version ``SCHEMA``):

- ``config.yaml``: the resolved config (Hydra also writes ``.hydra/``);
- ``metrics.jsonl``: one JSON object per line,
  ``{"step": int, "arm": str, "split": "train"|"test"|"probe", <metric>: float|null, ...}``;
- ``summary.json``: per arm final/best accuracy, steps to target, divergence,
  time, plus the pair id, the data's content hash and ``"schema"``.

Both are strict JSON. A non-finite number (a diverged arm's loss, ``optim.lr=inf``)
is written as one of the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
(``NON_FINITE``) and ``read_metrics``/``read_summary`` turn those strings back
into floats, so every tool sees the number; null stays "no value".

Files the post-hoc tools derive from a run (``DERIVED``: analysis, figures,
report, claims) belong to the run that wrote summary.json: ``run_stamp`` names
it, ``stamp_mismatch`` tells a reader that a derived file is an earlier run's,
and starting a run over removes them (``RunRecord.start_over``).

Writes are crash-safe: summary and config go to a temp file renamed into place;
metrics lines are appended in one ``os.write`` of whole lines per flush, so a
killed process leaves complete lines only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

from bnlab.errors import BnlabError

SCHEMA = 1
# How a non-finite float is spelled in the records (the spelling of JavaScript and of Python's json module).
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# What bnlab-analyze, bnlab-plot, bnlab-report and bnlab-claims write into a run dir (by default): they
# describe the run that wrote summary.json, so a run started over in the same dir must not inherit them.
DERIVED = ("analysis", "figures", "report.html", "claims.json", "claims.md")
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


def encode(obj):
    """``obj`` with every non-finite float spelled as its NON_FINITE string (dicts and lists walked)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    return obj


def decode(obj):
    """The inverse of ``encode``: NON_FINITE strings back to floats (dicts and lists walked)."""
    if isinstance(obj, str):
        return NON_FINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def finite(v) -> bool:
    """Whether a record value is a number to compute with: not null, NaN or Inf (an arm that blew up)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def dumps(obj, **kw) -> str:
    """Strict JSON of ``obj`` with non-finite floats encoded (the records' one spelling)."""
    return json.dumps(encode(obj), allow_nan=False, **kw)


def loads(text: str):
    """JSON text as written by ``dumps`` (or by older bnlab, which wrote null), non-finite decoded."""
    return decode(json.loads(text))


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
        data = "".join(dumps(r) + "\n" for r in rows).encode()
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

    def start_over(self) -> list[str]:
        """A fresh run in this dir: no rows, summary, weights or derived file of an earlier attempt remain.

        Returns the names of the derived files and folders it removed (``DERIVED``).
        """
        self.metrics_path.unlink(missing_ok=True)
        self.summary_path.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "checkpoints", ignore_errors=True)  # the earlier run's weights
        removed = []
        for name in DERIVED:
            path = self.dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                removed.append(name + "/")
            elif path.exists() or path.is_symlink():
                path.unlink()
                removed.append(name)
        return removed

    def write_summary(self, summary: dict) -> None:
        summary = {"schema": SCHEMA, **summary}
        atomic_write_text(self.summary_path, dumps(summary, indent=2) + "\n")


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
    return [loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: Path) -> dict:
    return loads((Path(run_dir) / "summary.json").read_text())


def run_stamp(run_dir: Path) -> str:
    """Which run a run dir holds now: a hash of its summary.json (a run started over writes a new one).

    A post-hoc tool records it in what it derives; ``stamp_mismatch`` checks it.
    """
    return hashlib.sha256((Path(run_dir) / "summary.json").read_bytes()).hexdigest()[:16]


def stamp_mismatch(run_dir: Path, derived: dict, name: str) -> str | None:
    """Why ``derived`` (e.g. analysis.json's content) is not of the run in ``run_dir`` now, or None if it is.

    Files without a stamp (older bnlab) are checked by pair id only.
    """
    run_dir = Path(run_dir)
    if "run_stamp" in derived:
        if derived["run_stamp"] == run_stamp(run_dir):
            return None
    elif derived.get("pair_id") == read_summary(run_dir).get("pair_id"):
        return None
    return (f"{name} belongs to an earlier run in {run_dir} (its summary.json changed since); "
            f"ignored: re-run the tool that wrote it")


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
