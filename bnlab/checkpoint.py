"""Resumable checkpoints: the whole state of a paired run in one file.

``RUN_DIR/checkpoints/last.pt`` holds, every ``train.checkpoint_every`` steps:
each arm's model, optimizer and scheduler state, its noise generators, its
divergence flag and bookkeeping; the data stream (order, position and the one
generator behind order and augmentation); the global torch RNG; the W&B run
ids; the resolved config it was written under; what data it trained on (image
counts and a content hash, ``data.fingerprint``); and the length of
``metrics.jsonl`` at that moment. Resuming restores all of it and cuts the
records back to that length, so a run killed at any instant and resumed is the
run it would have been (tests/test_reliability.py checks bitwise equality).

Written atomically (temp file, fsync, rename: a kill leaves the old file or
the new one, never half of one) and loadable with ``torch.load(...,
weights_only=True)``: only tensors, numbers, strings, lists, dicts and None.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from bnlab.errors import BnlabError
from bnlab.records.store import DISK_ERRORS, disk_error, flatten

FORMAT = 1
NAME = "last.pt"

# Keys that may change between the run that wrote a checkpoint and the run that resumes it:
# they do not change what is trained (where the data lives, how progress is shown, W&B, where
# the steps run: another device or thread split continues the run, equal up to float rounding).
MAY_DIFFER = ("logger", "train.progress", "train.resume", "train.checkpoint_every", "train.concurrent_arms",
              "data.root", "data.download", "device")


def path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / NAME


def save(run_dir: Path, state: dict) -> Path:
    """Write ``state`` to checkpoints/last.pt atomically."""
    return atomic_save(path(run_dir), {"format": FORMAT, **state})


def atomic_save(dst: Path, obj) -> Path:
    """torch.save to a temp file, fsync, rename: readers see the old file or the new one, whole."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        err = exc if isinstance(exc, OSError) else _os_error(exc)
        if err is not None and err.errno in DISK_ERRORS:
            raise disk_error(dst, err) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves the previous checkpoint whole
    return dst


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (torch wraps write failures), or one made from its message."""
    while exc is not None:
        if isinstance(exc, OSError):
            return exc
        if "No space left" in str(exc) or "error code: 28" in str(exc):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        exc = exc.__cause__ or exc.__context__
    return None


def load(run_dir: Path) -> dict | None:
    """The checkpoint of ``run_dir``, or None when there is none. A corrupt one is bad input."""
    src = path(run_dir)
    if not src.is_file():
        return None
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BnlabError(
            f"{src} is corrupt or unreadable ({exc.__class__.__name__}); delete it to start over, "
            f"or pass train.resume=never"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BnlabError(f"{src} is not a bnlab checkpoint of format {FORMAT}; delete it or pass train.resume=never")
    return state


def config_changes(saved: dict, current: dict) -> list[str]:
    """``key: saved -> current`` for every trained-relevant key that differs (``MAY_DIFFER`` excluded)."""
    a, b = flatten(saved), flatten(current)

    def relevant(k: str) -> bool:
        return not any(k == m or k.startswith(m + ".") for m in MAY_DIFFER)

    return [f"{k}: {a.get(k, '<absent>')} -> {b.get(k, '<absent>')}"
            for k in sorted(set(a) | set(b)) if relevant(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def check_config(run_dir: Path, state: dict, current: dict) -> None:
    """Refuse to resume a checkpoint written under a different config (one line, exit 2)."""
    changes = config_changes(state["config"], current)
    if changes:
        more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
        raise BnlabError(
            f"{path(run_dir)} was written by a different config ({'; '.join(changes[:3])}{more}); "
            f"rerun with the same overrides, choose another hydra.run.dir, or pass train.resume=never to start over"
        )


def check_data(run_dir: Path, state: dict, current: dict) -> None:
    """Refuse to resume a checkpoint trained on other data (one line, exit 2).

    ``current`` is ``data.fingerprint`` of the data loaded now: the content counts, not its path.
    A checkpoint from before fingerprints (no "data") is resumed unchecked.
    """
    saved = state.get("data")
    if saved is None or saved == current:
        return
    raise BnlabError(
        f"{path(run_dir)} was trained on other data ({_data_text(saved)}; the data loaded now: "
        f"{_data_text(current)}); point BNLAB_DATA_DIR or data.root at the data it trained on, "
        f"choose another hydra.run.dir, or pass train.resume=never to start over"
    )


def _data_text(fp: dict) -> str:
    return f"{fp.get('train_size')} train / {fp.get('test_size')} test images, sha256 {str(fp.get('sha256'))[:12]}"


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
