"""Read W&B offline run files (``run-<id>.wandb``) back, for tests.

wandb >= 0.19 writes these from its Go core and no longer ships a Python
reader. The file is a LevelDB-style log (github.com/google/leveldb
doc/log_format.md): a 7-byte header (":W&B", magic, version), then 32 KiB
blocks of chunks ``crc32:u32 | length:u16 | type:u8 | data``, types FULL=1,
FIRST=2, MIDDLE=3, LAST=4. Each reassembled record is a serialized
``wandb.proto.wandb_internal_pb2.Record``, decoded with wandb's own protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7


def records(path: Path) -> list:
    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, buf, pos = [], b"", HEADER
    while pos + HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        data = raw[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        buf = data if kind in (1, 2) else buf + data
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(run_dir: Path) -> dict:
    """The run's config, group/job_type, and history rows (step -> {key: value})."""
    (wfile,) = Path(run_dir).glob("run-*.wandb")
    info, config, history = {}, {}, {}
    for rec in records(wfile):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            info = {"id": rec.run.run_id, "group": rec.run.run_group, "job_type": rec.run.job_type}
            config.update({_key(i): json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            config.update({_key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in rec.history.item}
            history.setdefault(int(row["_step"]), {}).update(row)
    return {**info, "config": config, "history": history}


def read_all(wandb_dir: Path) -> dict:
    """job_type (the arm) -> read_run(...) for every offline run under ``<run_dir>/wandb``."""
    runs = [read_run(d) for d in sorted(Path(wandb_dir).glob("offline-run-*"))]
    return {r["job_type"]: r for r in runs}
