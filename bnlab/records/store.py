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
DERIVED = ("analysis", "figures", "report.html", "explore.html", "claims.json", "claims.md")
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


class DamagedRecord(BnlabError, ValueError):
    """A run record that cannot be read as written; the message names the file and the damage.

    Post-hoc tools skip such a run with one line and go on with the others. A ValueError too, so
    callers that treat unreadable leftovers as absent (train.completed_summary) keep doing so.
    """

    def __init__(self, run_dir: Path, message: str):
        super().__init__(message)
        self.run_dir = Path(run_dir)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DamagedRecord(path.parent, f"{path.name} cannot be read ({exc.strerror or exc})") from None


def _json_damage(exc: json.JSONDecodeError, text: str) -> str:
    """What is wrong with a JSON text: cut short (the error is at its end) or malformed (where)."""
    if not text.strip():
        return "is empty"
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return "is truncated JSON"
    return f"is not valid JSON ({exc.msg}, column {exc.colno})"


def _type_name(value) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number")


def _metrics_row(path: Path, n: int, raw: bytes) -> dict:
    """Line ``n`` of metrics.jsonl as a row; DamagedRecord when it is not UTF-8, not JSON or not a row."""
    where = f"{path.name} line {n}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedRecord(path.parent, f"{where} is not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                         f"{exc.start + 1})") from None
    try:
        row = loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedRecord(path.parent, f"{where} {_json_damage(exc, text)}") from None
    if not isinstance(row, dict):
        raise DamagedRecord(path.parent, f"{where} is {_type_name(row)}, not a row object")
    for key, kind in (("step", int), ("arm", str), ("split", str)):
        if key not in row:
            raise DamagedRecord(path.parent, f"{where} has no {key!r}")
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            raise DamagedRecord(path.parent, f"{where}: {key!r} is {_type_name(row[key])}, not {kind.__name__}")
    return row


def read_metrics(run_dir: Path, notes: list[str] | None = None) -> list[dict]:
    """The rows of ``metrics.jsonl`` ([] without one); DamagedRecord names the first bad line.

    The writer appends whole lines in one write, so a last line without its newline that does not
    parse is a write cut short by a kill: it is dropped, with a notice appended to ``notes``. Any
    other bad line (not UTF-8, not JSON, not a row) makes the whole file damaged.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    lines = _read_bytes(path).split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    rows = [_metrics_row(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if tail.strip():
        try:
            rows.append(_metrics_row(path, len(lines) + 1, tail))
        except DamagedRecord:
            if notes is not None:
                notes.append(f"metrics.jsonl ends in a partial line {len(lines) + 1} (a write cut short, e.g. a "
                             f"killed run): read the {len(lines)} whole line(s) before it")
    return rows


# summary.json fields the post-hoc tools read; a number is an int or float, never a bool
NUMBER, OPTIONAL_NUMBER, OPTIONAL_INT = "a number", "a number or null", "an integer or null"
SUMMARY_FIELDS = {"pair_id": str, "model": str, "width": NUMBER, "lr": NUMBER, "batch_size": int, "seed": int,
                  "steps": int, "data": dict, "arms": dict}
DATA_FIELDS = {"name": str, "train_size": int, "test_size": int}
ARM_FIELDS = {"diverged": bool, "final_test_acc": OPTIONAL_NUMBER, "best_test_acc": OPTIONAL_NUMBER,
              "steps_to_target": OPTIONAL_INT, "diverged_step": OPTIONAL_INT}


def _fits(value, kind) -> bool:
    if kind in (NUMBER, OPTIONAL_NUMBER, OPTIONAL_INT):
        if value is None:
            return kind != NUMBER
        numeric = int if kind == OPTIONAL_INT else (int, float)
        return isinstance(value, numeric) and not isinstance(value, bool)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _check_fields(run_dir: Path, node, fields: dict, where: str) -> None:
    for key, kind in fields.items():
        name = f"{where}{key}"
        if key not in node:
            raise DamagedRecord(run_dir, f"summary.json has no {name!r}")
        if not _fits(node[key], kind):
            want = kind if isinstance(kind, str) else {dict: "an object", str: "a string", int: "an integer",
                                                       bool: "a boolean"}[kind]
            raise DamagedRecord(run_dir, f"summary.json {name!r} is {_type_name(node[key])}, not {want}")


def check_summary(run_dir: Path, summary) -> dict:
    """``summary`` if it holds every field the tools read, with its type; else DamagedRecord."""
    if not isinstance(summary, dict):
        raise DamagedRecord(run_dir, f"summary.json holds {_type_name(summary)}, not an object")
    _check_fields(run_dir, summary, SUMMARY_FIELDS, "")
    _check_fields(run_dir, summary["data"], DATA_FIELDS, "data.")
    if not summary["arms"]:
        raise DamagedRecord(run_dir, "summary.json has no arms")
    for arm, node in summary["arms"].items():
        if not isinstance(node, dict):
            raise DamagedRecord(run_dir, f"summary.json 'arms.{arm}' is {_type_name(node)}, not an object")
        _check_fields(run_dir, node, ARM_FIELDS, f"arms.{arm}.")
    return summary


def read_summary(run_dir: Path) -> dict:
    """``summary.json``, checked (``check_summary``); DamagedRecord names what is wrong with it."""
    path = Path(run_dir) / "summary.json"
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedRecord(run_dir, f"summary.json is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                                     f"{exc.start})") from None
    try:
        summary = loads(text)
    except json.JSONDecodeError as exc:
        damage = _json_damage(exc, text)
        if damage.startswith("is not valid"):
            damage = f"is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        raise DamagedRecord(run_dir, f"summary.json {damage}") from None
    return check_summary(run_dir, summary)


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
    return sorted(p.parent for p in root.rglob("summary.json") if p.is_file())


class Run:
    """One run directory, read lazily: ``summary``, ``config`` (resolved, plain dict), ``metrics``.

    Damaged records raise DamagedRecord when read; ``notes`` collects notices about records read
    despite a flaw (a last metrics line cut short).
    """

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.summary = read_summary(self.dir)
        self.notes: list[str] = []
        self._metrics: list[dict] | None = None
        self._config: dict | None = None

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = read_config(self.dir)
        return self._config

    @property
    def metrics(self) -> list[dict]:
        if self._metrics is None:
            self._metrics = read_metrics(self.dir, self.notes)
        return self._metrics

    def check(self) -> Run:
        """Read every record now, so that damage shows here rather than halfway through a figure."""
        _ = self.metrics, self.config
        return self

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


def read_config(run_dir: Path) -> dict:
    """The run's resolved ``config.yaml`` as a plain dict ({} without one); DamagedRecord if unreadable."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return {}
    try:
        # libyaml's loader when present: 7x faster, which a report over 1,000 runs feels
        config = yaml.load(_read_bytes(path).decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError as exc:
        raise DamagedRecord(run_dir, f"config.yaml is not UTF-8 (byte at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise DamagedRecord(run_dir, f"config.yaml is not valid YAML{where}") from None
    if not isinstance(config, dict):
        raise DamagedRecord(run_dir, f"config.yaml holds {_type_name(config)}, not a mapping")
    return config


def load_runs(root: Path, damaged: list[DamagedRecord] | None = None) -> list[Run]:
    """Every finished run at or below ``root`` (a run dir or a multirun dir).

    Without ``damaged``, records are read lazily and damage raises DamagedRecord when met. With a
    list, every run is read whole now; a damaged one is left out and its DamagedRecord appended.
    """
    if damaged is None:
        return [Run(d) for d in find_runs(root)]
    runs = []
    for d in find_runs(root):
        try:
            runs.append(Run(d).check())
        except DamagedRecord as exc:
            damaged.append(exc)
    return runs
