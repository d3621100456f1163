"""What the post-hoc tools (bnlab-plot, -report, -claims, -analyze) share: reading runs, writing outputs.

- ``usable_runs``: the runs under a folder whose records read whole; each damaged run is
  skipped with one line on stderr (``bnlab-plot: skipping RUN: metrics.jsonl line 213 is
  truncated JSON``), and only a folder with nothing usable left is an error.
- ``write_text`` / ``save_figure``: every output goes to a temp file in the same folder
  (``.NAME.tmpPID``) and is renamed into place, so a killed or failing tool never leaves a
  truncated file under its final name; temp files of that name whose process is gone (a tool
  killed earlier) are removed by the next write of the same file.
- ``check_writable``: a probe write into an output folder before the expensive work.
- ``main``: runs a tool's body and turns a BnlabError into one line and exit code 2.

A failed write names the fix of that tool (``--out``, or the run directory the tool writes
into), not ``hydra.run.dir``, which only ``bnlab`` takes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from bnlab.errors import BnlabError
from bnlab.records.store import DISK_ERRORS, DamagedRecord, Run, load_runs


def usable_runs(root: Path, prog: str) -> list[Run]:
    """The runs at or below ``root`` whose records read whole; one stderr line per skipped run or notice."""
    if not Path(root).is_dir():
        raise BnlabError(f"{root} is not a directory; pass a bnlab run or multirun directory")
    damaged: list[DamagedRecord] = []
    runs = load_runs(root, damaged)
    for exc in damaged:
        print(f"{prog}: skipping {exc.run_dir}: {exc}", file=sys.stderr)
    for run in runs:
        for note in run.notes:
            print(f"{prog}: notice: {run.dir}: {note}", file=sys.stderr)
    if not runs and damaged:
        raise BnlabError(f"{root} holds no usable run records: its {len(damaged)} run(s) are damaged "
                         f"(see the lines above); repair or rerun them, or pass another directory")
    if not runs:
        raise BnlabError(f"{root} holds no run records (summary.json); pass a bnlab run or multirun directory")
    return runs


def main(prog: str, body: Callable[[], int | None]) -> int:
    """``body()``'s exit code (0 for None); a BnlabError is one line ``PROG: error: ...`` and exit 2."""
    try:
        return body() or 0
    except BnlabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code


# ------------------------------------------------------------------ outputs ----


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(path: Path) -> None:
    """Delete ``.NAME.tmpPID`` files of ``path`` left by a process of this host that is gone.

    A live PID keeps its file (another tool writing the same output right now); across hosts on a
    shared filesystem a PID says nothing, so two hosts must not write one output folder at once.
    """
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp(\d+)$")
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return
    for p in candidates:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)


def output_error(path: Path, exc: OSError, fix: str) -> BnlabError:
    """The one-line error for a failed output write: what failed, and ``fix`` (the tool's own option)."""
    return BnlabError(f"cannot write {path}: {exc.strerror or exc}; {fix}")


def write_atomic(path: Path, write: Callable[[Path], object], fix: str) -> Path:
    """``write(temp)`` then rename onto ``path``: ``path`` is the old file or the whole new one, never part."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # also a Ctrl-C between the write and the rename: no temp stays
        with contextlib.suppress(OSError):  # on a read-only mount even the unlink of nothing fails
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (exc.errno in DISK_ERRORS or isinstance(exc, (NotADirectoryError,
                                                                                     FileExistsError))):
            raise output_error(path, exc, fix) from None
        raise
    return path


def write_text(path: Path, text: str, fix: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fix)


def save_figure(fig, path: Path, fix: str, **savefig_kw) -> Path:
    """``fig.savefig`` into ``path`` through a temp file (the format comes from ``path``'s suffix)."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip("."), **savefig_kw), fix)


def check_writable(directory: Path, fix: str) -> None:
    """Create ``directory`` if needed and write and delete a probe file there; else the one-line error.

    A real write, not ``os.access``: root passes every permission check, yet a read-only mount,
    an immutable folder or a full disk still refuse it.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BnlabError(f"{directory} is a file, not a directory; {fix}")
    probe = temp_path(directory / "bnlab-write-probe")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise BnlabError(f"cannot write into {directory}: {exc.strerror or exc}; {fix}") from None
