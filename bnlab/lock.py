"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.bnlab.lock``.

``train.run`` takes the lock before it reads anything that leads to a write
(the completed summary, the checkpoint) and keeps it until it returns, raises
or stops on a signal. The file holds the holder's pid, host and start time as
JSON, so a second process on the same dir (the same command launched twice, a
requeued job while the old one still runs, a resume while the first run still
writes) is refused in one line naming the holder, and writes nothing.

The kernel drops a ``flock`` when its process dies, however it dies: a lock
file that names a holder but is not locked was left by a process that ended
without releasing it (SIGKILL, a node crash). It is stale: the next run takes
it over and says so once it starts writing. A run that ends normally removes
the file. A run refused before it wrote anything (bad input) puts back what
the file held, so a refused command leaves the dir as it found it.

Across hosts the lock is as good as the shared filesystem's locks: NFS (v3
with lockd, v4) maps ``flock`` to byte-range locks the server arbitrates and
frees when a dead client's lease expires; mounts with ``nolock`` or
``local_lock=all``, and Lustre without ``-o flock``, lock per host only. A
filesystem that refuses locks altogether gets a warning and an unlocked run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from bnlab.errors import BnlabError
from bnlab.records.store import DISK_ERRORS, disk_error

log = logging.getLogger(__name__)

NAME = ".bnlab.lock"
# flock itself failing (not "someone holds it"): the filesystem has no locks.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def holder_text(info: dict) -> str:
    """``pid 123 on host h since 2026-01-01 10:00:00`` from a lock file's JSON (what is known of it)."""
    if not info:
        return "a process that has not yet said who it is"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"])) if "since" in info else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {since}"


def held_by_another(run_dir: Path, info: dict) -> BnlabError:
    """The one line for a run dir that a live bnlab process holds."""
    return BnlabError(f"{run_dir} is being written by another bnlab process ({holder_text(info)}); "
                      f"wait for it to end or stop it, or choose another hydra.run.dir")


class RunLock:
    """Context manager: hold ``RUN_DIR/.bnlab.lock`` exclusively, or raise BnlabError naming the holder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / NAME
        self.fd: int | None = None
        self.previous: bytes | None = None  # the file's content before we took it (None: no file)
        self.stale: dict | None = None  # the dead holder whose lock we took over
        self.writing = False

    def __enter__(self) -> RunLock:
        try:
            return self._take()
        except OSError as exc:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if exc.errno in DISK_ERRORS:
                raise disk_error(self.path, exc) from None
            raise

    def _take(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # a holder that removes the file as we open it: open the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read(fd)
                os.close(fd)
                raise held_by_another(self.path.parent, info) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_LOCKS:
                    raise
                log.warning("cannot lock %s (%s): this filesystem has no locks, so nothing stops a second "
                            "bnlab process from writing this run dir at the same time", self.path, exc.strerror)
                return self
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise BnlabError(f"cannot take {self.path}: it is replaced again and again; is another bnlab "
                             f"process starting in this dir? Rerun when it has ended")
        self.fd = fd
        self.previous = os.pread(fd, 1 << 16, 0) if os.fstat(fd).st_size else None
        stale = _read(fd)
        self.stale = stale or None
        _write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        return self

    def start_writing(self) -> None:
        """From here on the run writes the dir: a stale lock taken over is reported (one line)."""
        self.writing = True
        if self.stale is not None:
            log.warning("took over the lock of %s, which ended without releasing it (killed?); this process "
                        "now writes %s", holder_text(self.stale), self.path.parent)

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        try:
            if self.writing or self.previous is None:
                self.path.unlink(missing_ok=True)  # before the unlock: no one can lock the old file meanwhile
            else:
                _write(self.fd, self.previous)  # refused before writing: leave the dir as it was
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = None


def check_free(run_dir: Path) -> None:
    """BnlabError naming the holder if a live process holds ``run_dir``'s lock; touches nothing.

    The CLI asks before Hydra starts: Hydra writes ``.hydra/`` and the job log into the run
    dir before ``train.run`` takes the lock, and would overwrite the holder's copies.
    """
    path = Path(run_dir) / NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or none we can read): nothing to ask
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise held_by_another(Path(run_dir), _read(fd)) from None
    except OSError:
        pass  # no locks on this filesystem: train.run warns
    finally:
        os.close(fd)  # closing drops the shared probe lock at once


def _read(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _write(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder may have just removed it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
