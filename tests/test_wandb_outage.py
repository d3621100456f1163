"""W&B outages and resumed runs, against loopback servers only (issues 7 and 8).

- a port that refuses connections, and a server that accepts but never
  answers: ``bnlab`` in online mode gives up after ``logger.init_timeout``,
  prints one warning line, logs offline and finishes with complete records;
- a fake W&B server (just enough GraphQL and file_stream for wandb 0.31) that
  rejects the key, or that answers at the start and then goes silent mid-run:
  the same fallback, and ``logger.finish_timeout`` bounds the final upload;
- resume ids: offline each segment is a new ``offline-run-*`` folder with the
  same id and steps an earlier segment logged are not logged again; online the
  same W&B run goes on after its last step.

Every child process runs under a timeout, so a hang fails the test instead of
stalling the suite. W&B never reaches the network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import wandb_records
from conftest import QUICK, read_jsonl, run_bnlab

FAKE_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 hex characters, like a real key
TIMEOUT = 5  # logger.init_timeout / logger.finish_timeout in these tests (seconds)
HANG_LIMIT = 150  # a child still running after this has hung (a run takes ~20-40 s on 2 busy cores)
FALLBACK = "continuing offline"  # the one warning line's words


# --------------------------------------------------------------------------- servers


@pytest.fixture
def refusing_url():
    """A loopback URL nobody listens on: connections are refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url():
    """A loopback server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()
    for conn in held:
        conn.close()


class FakeWandb:
    """Just enough of the W&B API for wandb 0.31's wandb-core: runs, files, history.

    ``history[run_id]`` collects the rows the SDK streamed, each with the
    file_stream offset it was sent at. ``mode`` switches behaviour: ``ok``,
    ``reject`` (401 to everything: a bad key), ``silent`` (hold every request
    unanswered, as a server lost mid-run). ``lose_after_first_stream`` goes
    silent right after the first file_stream request.
    """

    def __init__(self, mode: str = "ok", lose_after_first_stream: bool = False):
        self.mode, self.lose_after_first_stream = mode, lose_after_first_stream
        self.history: dict[str, list[tuple[int, dict]]] = {}
        self.ops: list[str] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self):  # file uploads
                self._body()
                if fake.mode == "silent":
                    fake.release.wait(HANG_LIMIT)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                raw = self._body()
                if fake.mode == "silent":
                    fake.release.wait(HANG_LIMIT)
                    return
                if fake.mode == "reject":
                    return self._reply(401, {"errors": [{"message": "invalid api key"}]})
                if self.path.startswith("/sdk/otel"):  # wandb's usage telemetry: not offered here
                    return self._reply(404, {})
                req = json.loads(raw or b"{}")
                if "/file_stream" in self.path:
                    fake.stream(self.path.split("/")[4], req)
                    return self._reply(200, {})
                op, var = req.get("operationName"), req.get("variables") or {}
                fake.ops.append(op)
                return self._reply(200, {"data": fake.graphql(op, var, self.server.server_address[1])})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stream(self, run_id: str, req: dict) -> None:
        for name, chunk in (req.get("files") or {}).items():
            if name == "wandb-history.jsonl":
                rows = self.history.setdefault(run_id, [])
                rows += [(chunk["offset"] + i, json.loads(line)) for i, line in enumerate(chunk["content"])]
        if self.lose_after_first_stream:
            self.mode = "silent"

    def graphql(self, op: str, var: dict, port: int) -> dict:
        if op == "UpsertBucket":
            return {"upsertBucket": {"inserted": True, "bucket": {
                "id": "QnVja2V0OjE=", "name": var.get("name"), "displayName": var.get("name"),
                "historyLineCount": 0, "project": {"id": "p", "name": var.get("project") or "bnlab",
                                                   "entity": {"id": "e", "name": var.get("entity") or "e"}}}}}
        if op == "CreateRunFiles":
            return {"createRunFiles": {"runID": var["run"], "uploadHeaders": [], "files": [
                {"name": f, "uploadUrl": f"http://127.0.0.1:{port}/upload/{f}"} for f in var["files"]]}}
        if op == "RunResumeStatus" and self.history.get(var["name"]):
            rows = self.history[var["name"]]
            last = max(r["_step"] for _, r in rows)
            return {"model": {"id": "p", "name": var.get("project"), "entity": {"id": "e", "name": "e"},
                              "bucket": {
                                  "id": "QnVja2V0OjE=", "name": var["name"], "displayName": var["name"],
                                  "summaryMetrics": json.dumps({"_step": last}), "logLineCount": 0,
                                  "historyLineCount": len(rows), "eventsLineCount": 0,
                                  "historyTail": json.dumps([json.dumps({"_step": last})]),
                                  "eventsTail": "[]", "config": "{}", "tags": [], "notes": None,
                                  "wandbConfig": json.dumps({"t": {}})}}}
        return {}

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_wandb():
    servers: list[FakeWandb] = []

    def start(**kwargs) -> FakeWandb:
        servers.append(FakeWandb(**kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


# --------------------------------------------------------------------------- helpers


def online_env(url: str) -> dict:
    return {"WANDB_BASE_URL": url, "WANDB_API_KEY": FAKE_KEY}


def run_online(tmp_path: Path, data_dir: Path, url: str, *extra: str):
    out = tmp_path / "run"
    t0 = time.monotonic()
    res = run_bnlab([*QUICK, "logger.mode=online", f"logger.init_timeout={TIMEOUT}",
                     f"logger.finish_timeout={TIMEOUT}", *extra, f"hydra.run.dir={out}"],
                    tmp_path, data_dir, env_extra=online_env(url), timeout=HANG_LIMIT)
    print(f"bnlab against {url}: exit {res.returncode} after {time.monotonic() - t0:.1f} s")
    return out, res


def check_records(out: Path, steps: int = 12) -> dict:
    """metrics.jsonl holds every train step and eval of both arms; summary.json says completed."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == steps
    rows = read_jsonl(out / "metrics.jsonl")
    for arm in ("bn", "none"):
        assert [r["step"] for r in rows if r["arm"] == arm and r["split"] == "train"] == list(range(steps))
        assert [r["step"] for r in rows if r["arm"] == arm and r["split"] == "test"] == [0, 6, 12]
    return summary


def warning_lines(stderr: str, words: str) -> list[str]:
    return [line for line in stderr.splitlines() if words in line]


def check_offline_fallback(out: Path, res, url: str, why: str) -> None:
    assert res.returncode == 0, res.stderr
    (line,) = warning_lines(res.stderr, FALLBACK)  # exactly one, for both arms
    assert line.startswith("bnlab: warning: W&B") and url in line and why in line
    assert f"wandb sync {out / 'wandb'}/offline-run-*" in line
    summary = check_records(out)
    for info in summary["wandb"].values():
        assert info["mode"] == "offline" and why in info["fallback"], info
    # the offline runs hold every logged step: training steps 0..11 and the final eval at 12
    runs = wandb_records.read_all(out / "wandb")
    assert set(runs) == {"bn", "none"}
    for arm, run in runs.items():
        assert run["id"] == summary["wandb"][arm]["id"]
        assert sorted(run["history"]) == list(range(13))
        assert run["history"][12]["test/acc"] == pytest.approx(summary["arms"][arm]["final_test_acc"])


def run_script(code: str, args: list[str], env_extra: dict | None = None) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter, under a timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"WANDB_SILENT": "true", **(env_extra or {})})
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                         text=True, timeout=HANG_LIMIT)
    assert res.returncode == 0, res.stderr[-3000:]
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "stderr": res.stderr}


# Two segments of a paired run through bnlab.records.wandb_log, as the trainer does it on a resume:
# the first logs steps 0..5 and finishes; the second gets the first's ids and logs 3..8
# (it resumed from a checkpoint at step 3, after the first had logged past it).
# argv: the first segment's logger.mode, the second's, the run dir.
SEGMENTS = """
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
from bnlab.records import wandb_log as tracking

modes = iter(sys.argv[1:3])
run_dir = Path(sys.argv[3])

def segment(steps, resume_ids=None):
    cfg = OmegaConf.create({"name": "wandb", "mode": next(modes), "project": "bnlab", "entity": None,
                            "tags": [], "init_timeout": 20, "finish_timeout": 20, "system_stats": False})
    t = tracking.make(cfg, run_dir, "pair0", {"lr": 0.1}, ["bn", "none"], resume_ids=resume_ids)
    for step in steps:
        for arm in ("bn", "none"):
            t.log(arm, step, {"train/loss": 10.0 * step + (arm == "none")})
    t.finish(0)
    return t.describe()

first = segment(range(0, 6))
second = segment(range(3, 9), resume_ids={arm: d["id"] for arm, d in first.items()})
print(json.dumps({"first": first, "second": second}))
"""


# --------------------------------------------------------------------------- tests


def test_refused_connection_falls_back_to_offline(tmp_path, cifar_dir, refusing_url):
    out, res = run_online(tmp_path, cifar_dir, refusing_url)
    check_offline_fallback(out, res, refusing_url, "Connection refused")


def test_silent_server_falls_back_after_init_timeout(tmp_path, cifar_dir, silent_url):
    out, res = run_online(tmp_path, cifar_dir, silent_url)
    check_offline_fallback(out, res, silent_url, f"no answer within {TIMEOUT}s")


def test_rejected_key_falls_back_to_offline(tmp_path, cifar_dir, fake_wandb):
    server = fake_wandb(mode="reject")  # answers HTTP, so wandb.init itself is what fails
    out, res = run_online(tmp_path, cifar_dir, server.url)
    check_offline_fallback(out, res, server.url, "online start failed")


def test_server_lost_mid_run_finishes_within_finish_timeout(tmp_path, cifar_dir, fake_wandb):
    server = fake_wandb(lose_after_first_stream=True)
    out, res = run_online(tmp_path, cifar_dir, server.url)
    assert res.returncode == 0, res.stderr
    assert server.mode == "silent", "the fake server never saw the run start streaming"
    assert not warning_lines(res.stderr, FALLBACK)  # it was online from the start
    (line,) = warning_lines(res.stderr, "not done after")  # one line for both arms
    assert f"logger.finish_timeout={TIMEOUT}s" in line and f"wandb sync {out / 'wandb'}/run-*" in line
    summary = check_records(out)
    assert {info["mode"] for info in summary["wandb"].values()} == {"online"}
    # what did not reach the server is in each run's local transaction log, for `wandb sync`
    for arm, info in summary["wandb"].items():
        run = wandb_records.read_run(Path(info["dir"]))
        assert run["id"] == info["id"] and run["job_type"] == arm
        assert sorted(run["history"]) == list(range(13))


def test_resume_ids_offline_new_segment_same_id_no_repeated_steps(tmp_path, fake_wandb):
    seg = run_script(SEGMENTS, ["offline", "offline", str(tmp_path)])
    first, second = seg["first"], seg["second"]
    for arm in ("bn", "none"):
        assert second[arm]["id"] == first[arm]["id"]
        assert (first[arm]["resumed"], second[arm]["resumed"]) == (False, True)
        assert second[arm]["mode"] == "offline" and second[arm]["dir"] != first[arm]["dir"]
        # one offline-run-<time>-<id> folder per segment, each with its own steps:
        # 3..5 were already logged by the first segment and are not logged again
        dirs = sorted((tmp_path / "wandb").glob(f"offline-run-*-{first[arm]['id']}*"))  # "-1": same second
        assert [str(d) for d in dirs] == [first[arm]["dir"], second[arm]["dir"]]
        a, b = (wandb_records.read_run(d) for d in dirs)
        assert (a["id"], b["id"], a["job_type"], b["job_type"]) == (first[arm]["id"],) * 2 + (arm, arm)
        assert sorted(a["history"]) == [0, 1, 2, 3, 4, 5] and sorted(b["history"]) == [6, 7, 8]
        assert b["history"][8]["train/loss"] == 80.0 + (arm == "none")
    # `wandb sync` uploads the segments of one id in order into one run, appending
    server = fake_wandb()
    segments = sorted(str(d) for d in (tmp_path / "wandb").glob("offline-run-*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    res = subprocess.run([str(Path(sys.executable).with_name("wandb")), "sync", "--yes", *segments],
                         env={**env, **online_env(server.url)}, capture_output=True, text=True, timeout=HANG_LIMIT)
    assert res.returncode == 0, res.stderr
    for arm in ("bn", "none"):
        rows = server.history[first[arm]["id"]]
        assert [(offset, row["_step"]) for offset, row in rows] == [(i, i) for i in range(9)]


def test_resume_ids_online_continue_the_same_run(tmp_path, fake_wandb):
    server = fake_wandb()
    seg = run_script(SEGMENTS, ["online", "online", str(tmp_path)], online_env(server.url))
    first, second = seg["first"], seg["second"]
    assert "RunResumeStatus" in server.ops  # the second segment asked W&B to resume
    for arm in ("bn", "none"):
        rid = first[arm]["id"]
        assert second[arm]["id"] == rid and second[arm]["mode"] == "online" and second[arm]["resumed"]
        # one W&B run: history lines 0..5 from the first segment, then 6..8 appended after them
        rows = server.history[rid]
        assert [(offset, row["_step"]) for offset, row in rows] == [(i, i) for i in range(9)]


def test_resume_online_goes_on_offline_while_earlier_segments_are_unsynced(tmp_path, fake_wandb):
    server = fake_wandb()
    res_first_offline = run_script(SEGMENTS, ["offline", "online", str(tmp_path)], online_env(server.url))
    first, second = res_first_offline["first"], res_first_offline["second"]
    for arm in ("bn", "none"):
        # W&B would renumber the unsynced offline steps behind the online ones: the run stays offline
        assert second[arm]["id"] == first[arm]["id"] and second[arm]["resumed"]
        assert second[arm]["mode"] == "offline" and "not yet synced" in second[arm]["fallback"]
    assert not server.history  # nothing went online
    (line,) = warning_lines(res_first_offline["stderr"], "not yet synced")  # one line for both arms
    assert "bn, none" in line and f"wandb sync {tmp_path / 'wandb'}/offline-run-*" in line


def test_segments_of_one_run_are_found_when_wandb_suffixes_a_folder(tmp_path):
    """A crash and resume within one second: wandb names the second folder ``...-<id>-1``."""
    from bnlab.records.wandb_log import unsynced_segments

    names = ["offline-run-20261130_231500-abcd1234", "offline-run-20261130_231500-abcd1234-1",
             "offline-run-20261130_231502-abcd1234", "offline-run-20261130_231500-zzzz9999"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"run-{name.split('-')[3]}.wandb").write_bytes(b"")
    (tmp_path / "latest-run").symlink_to(tmp_path / names[2])
    assert unsynced_segments(tmp_path, "abcd1234") == [tmp_path / n for n in names[:3]]
    (tmp_path / names[1] / "run-abcd1234.wandb.synced").write_bytes(b"")
    assert unsynced_segments(tmp_path, "abcd1234") == [tmp_path / names[0], tmp_path / names[2]]
