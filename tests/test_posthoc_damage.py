"""Post-hoc tools (bnlab-plot, -report, -claims, -analyze) on damaged records and unwritable outputs.

Every test copies real run records (``sweep_run``: 4 runs, 2 seeds x 2 learning rates) into
``tmp_path``, damages or confines the copy, and runs the installed console scripts in a
subprocess. A full disk is a real tmpfs sized to the copied records plus a few KiB; a read-only
folder is a tmpfs remounted read-only for root (CI's container runs tests as root, and chmod
does not stop root's writes), a chmod 555 folder for any other user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from bnlab import report
from bnlab.records.store import flatten, load_runs, read_metrics

BIN = Path(sys.executable).parent


def tool(name: str, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script ``name`` (e.g. ``bnlab-plot``) in a subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([str(BIN / name), *map(str, args)], check=False, capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def copy_records(src: Path, dst: Path, checkpoints: bool = False) -> Path:
    """A copy of a run or sweep dir without derived files (figures, reports) and, by default, checkpoints."""
    skip = ["figures", "report.html", "claims.json", "claims.md", "wandb"] + ([] if checkpoints else ["checkpoints"])
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*skip))
    return dst


def err_lines(res: subprocess.CompletedProcess) -> list[str]:
    return res.stderr.strip().splitlines()


# ------------------------------------------------------------------ damage kinds ----


def cut_middle_line(run: Path) -> None:
    path = run / "metrics.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4][: len(lines[4]) // 2]
    path.write_bytes(b"\n".join(lines))


def non_utf8_byte(run: Path) -> None:
    path = run / "metrics.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"train"', b'"tr\xffin"')
    path.write_bytes(b"\n".join(lines))


def row_not_object(run: Path) -> None:
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write("[1, 2, 3]\n")


def summary_not_json(run: Path) -> None:
    (run / "summary.json").write_text("{\"schema\": 1, \"pair_id\": ")


def summary_a_list(run: Path) -> None:
    (run / "summary.json").write_text("[1, 2]\n")


def summary_edit(*keys: str, value=KeyError):
    """A damage that sets summary[keys...] to ``value``, or deletes it when no value is given."""
    def damage(run: Path) -> None:
        s = json.loads((run / "summary.json").read_text())
        node = s
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        (run / "summary.json").write_text(json.dumps(s))
    return damage


def summary_empty(run: Path) -> None:
    (run / "summary.json").write_bytes(b"")


def config_not_yaml(run: Path) -> None:
    (run / "config.yaml").write_text("model: [unclosed\n")


DAMAGE = {
    "metrics middle line cut": (cut_middle_line, "metrics.jsonl line 5 is truncated JSON"),
    "metrics non-UTF-8 byte": (non_utf8_byte, "metrics.jsonl line 3 is not UTF-8 (byte 0xff"),
    "metrics row not an object": (row_not_object, "is a list, not a row object"),
    "summary not JSON": (summary_not_json, "summary.json is truncated JSON"),
    "summary empty": (summary_empty, "summary.json is empty"),
    "summary a list": (summary_a_list, "summary.json holds a list, not an object"),
    "summary missing key": (summary_edit("arms"), "summary.json has no 'arms'"),
    "summary arm missing key": (summary_edit("arms", "none", "diverged"), "summary.json has no 'arms.none.diverged'"),
    "summary wrong type": (summary_edit("lr", value="0.05"), "summary.json 'lr' is a string, not a number"),
    "summary arm wrong type": (summary_edit("arms", "bn", "final_test_acc", value=[0.5]),
                               "summary.json 'arms.bn.final_test_acc' is a list, not a number or null"),
    "summary no arms": (summary_edit("arms", value={}), "summary.json has no arms"),
    "config not YAML": (config_not_yaml, "config.yaml is not valid YAML at line"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_run_is_skipped_with_one_line_naming_the_damage(kind, sweep_run, tmp_path):
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    damage, expected = DAMAGE[kind]
    damage(sweep / "1")
    res = tool("bnlab-claims", sweep)
    lines = err_lines(res)
    assert res.returncode == 0 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"bnlab-claims: skipping {sweep / '1'}: ") and expected in lines[0], lines[0]
    claims = json.loads((sweep / "claims.json").read_text())
    assert max(c["runs"] for c in claims) == 3  # judged on the three whole runs


@pytest.fixture
def damaged_sweep(sweep_run, tmp_path) -> Path:
    """The sweep with runs 0, 1, 2 damaged three ways; run 3 whole."""
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    cut_middle_line(sweep / "0")
    non_utf8_byte(sweep / "1")
    summary_a_list(sweep / "2")
    return sweep


def test_plot_draws_the_whole_runs_of_a_damaged_sweep(damaged_sweep):
    res = tool("bnlab-plot", damaged_sweep)
    assert res.returncode == 0, res.stderr
    lines = err_lines(res)
    assert len(lines) == 3 and all(line.startswith("bnlab-plot: skipping ") for line in lines), res.stderr
    assert (damaged_sweep / "3" / "figures" / "curves.png").is_file()
    assert not any((damaged_sweep / r / "figures").exists() for r in "012")
    # one whole run left in the sweep dir: its sweep figures say why they were not drawn
    assert "a sweep figure needs >= 2 runs" in res.stdout


def test_report_lists_only_the_whole_runs(damaged_sweep, tmp_path):
    out = tmp_path / "r.html"
    res = tool("bnlab-report", damaged_sweep, "--no-figures", "--out", out)
    assert res.returncode == 0, res.stderr
    assert len(err_lines(res)) == 3 and res.stderr.count("bnlab-report: skipping ") == 3, res.stderr
    page = out.read_text()
    assert "data-run=\"3" in page and not any(f"data-run=\"{r}" in page for r in "012")


def test_a_last_line_cut_short_is_read_up_to_the_last_whole_line(sweep_run, tmp_path):
    run = copy_records(sweep_run / "0", tmp_path / "run")
    whole = read_metrics(run)
    path = run / "metrics.jsonl"
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 15])  # a kill in the middle of the last write
    notes: list[str] = []
    assert read_metrics(run, notes) == whole[:-1]
    assert notes and "partial line" in notes[0]
    res = tool("bnlab-plot", run)
    assert res.returncode == 0, res.stderr
    assert err_lines(res) == [f"bnlab-plot: notice: {run}: {notes[0]}"]
    assert (run / "figures" / "curves.png").is_file()


def test_nothing_usable_left_is_exit_2_with_a_line_saying_so(sweep_run, tmp_path):
    run = copy_records(sweep_run / "2", tmp_path / "run")
    summary_not_json(run)
    before = sorted(run.rglob("*"))
    for name in ("bnlab-plot", "bnlab-report", "bnlab-claims"):
        res = tool(name, run)
        lines = err_lines(res)
        assert res.returncode == 2 and len(lines) == 2, res.stderr
        assert lines[0].startswith(f"{name}: skipping ")
        assert lines[1].startswith(f"{name}: error: {run} holds no usable run records")
    assert sorted(run.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("damage", [summary_a_list, config_not_yaml])
def test_analyze_on_a_damaged_run_is_one_line(damage, sweep_run, tmp_path):
    run = copy_records(sweep_run / "0", tmp_path / "run", checkpoints=True)
    damage(run)
    res = tool("bnlab-analyze", run, "--samples", "64", "--device", "cpu")
    lines = err_lines(res)
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"bnlab-analyze: error: {run}: ") and "rerun" in lines[0], lines[0]
    assert not (run / "analysis").exists()


def test_a_damaged_analysis_json_skips_its_figures_only(sweep_run, tmp_path):
    run = copy_records(sweep_run / "0", tmp_path / "run")
    (run / "analysis").mkdir()
    (run / "analysis" / "analysis.json").write_text("{\"arms\": ")
    res = tool("bnlab-plot", run)
    assert res.returncode == 0, res.stderr
    assert "skipped surface_1d: analysis/analysis.json is damaged" in res.stdout
    assert (run / "figures" / "curves.png").is_file()


# ------------------------------------------------------------------ outputs ----


def mount_tmpfs(mnt: Path, size: str) -> None:
    mnt.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=False,
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")


@pytest.fixture
def mounts():
    """mounts(path, size) mounts a tmpfs there; every one is unmounted after the test."""
    done: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        mount_tmpfs(path, size)
        done.append(path)
        return path

    yield mount
    for path in reversed(done):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@pytest.fixture
def lockable(tmp_path, mounts):
    """(folder, lock): fill ``folder``, then ``lock()`` makes it refuse writes, also root's.

    Root: a tmpfs remounted read-only (chmod binds no root). Another user: chmod 555.
    """
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        yield folder, lambda: folder.chmod(0o555)
        folder.chmod(0o755)
        return
    folder = mounts(tmp_path / "ro", "4m")

    def lock():
        res = subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=False, capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr

    yield folder, lock


def assert_whole_figures(folder: Path) -> None:
    """Every PNG under ``folder`` decodes and every PDF is complete; no temp file stays."""
    for png in folder.rglob("*.png"):
        assert matplotlib.image.imread(png).size > 0, png
    for pdf in folder.rglob("*.pdf"):
        assert pdf.read_bytes().rstrip().endswith(b"%%EOF"), pdf
    assert not [p for p in folder.rglob(".*.tmp*")], "a temp file was left behind"


def test_analyze_on_a_read_only_run_fails_before_computing(sweep_run, lockable):
    ro, lock = lockable
    run = copy_records(sweep_run / "0", ro / "run", checkpoints=True)
    lock()
    res = tool("bnlab-analyze", run, "--samples", "64", "--device", "cpu")
    lines = err_lines(res)
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"bnlab-analyze: error: cannot write into {run / 'analysis'}: "), lines[0]
    assert "copy the run directory to a writable place" in lines[0]
    assert "top eigenvalue" not in res.stdout  # no arm was analyzed first


def test_report_into_a_read_only_dir_fails_before_drawing(sweep_run, tmp_path, lockable):
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    ro, lock = lockable
    lock()
    res = tool("bnlab-report", sweep, "--out", ro / "report.html")
    lines = err_lines(res)
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "pass --out FILE to write the report elsewhere" in lines[0] and "hydra" not in lines[0]
    assert not list(sweep.rglob("figures")), "figures were drawn before the output was checked"


def test_a_full_disk_leaves_no_partial_figure_and_names_the_fix(sweep_run, tmp_path, mounts):
    records = copy_records(sweep_run / "0", tmp_path / "records")
    size = sum(p.stat().st_size for p in records.rglob("*") if p.is_file())
    full = mounts(tmp_path / "full", f"{(size // 4096 + 12) * 4}k")  # the records, then about 48 KiB free
    run = Path(shutil.copytree(records, full / "run"))
    res = tool("bnlab-plot", run)
    lines = err_lines(res)
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "No space left on device" in lines[0] and "bnlab-plot writes into each run's" in lines[0], lines[0]
    assert "hydra.run.dir" not in lines[0]
    assert_whole_figures(run)
    assert not [p for p in run.rglob("*") if p.is_file() and p.stat().st_size == 0]


def test_claims_out_an_existing_file_is_one_line(sweep_run, tmp_path):
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    out = tmp_path / "taken.txt"
    out.write_text("keep me\n")
    res = tool("bnlab-claims", sweep, "--out", out)
    lines = err_lines(res)
    assert res.returncode == 2 and len(lines) == 1 and "is a file" in lines[0], res.stderr
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize("text,expected", [
    ("min_probes: [5\n", "is not a readable YAML file (line"),
    ("- 1\n- 2\n", "must be a mapping of thresholds"),
    ("min_probs: 5\n", "unknown threshold 'min_probs'"),
    ("trains_acc: high\n", "trains_acc='high' must be a finite number"),
    ("landscape_min_ratio: .nan\n", "landscape_min_ratio=nan must be a finite number"),
    ("batch_margin: .inf\n", "batch_margin=inf must be a finite number"),
    ("min_probes: 2.5\n", "min_probes=2.5 must be a positive integer"),
    ("confidence: 1.5\n", "confidence=1.5 must be a number in (0, 1)"),
])
def test_a_malformed_claims_config_is_one_line(sweep_run, tmp_path, text, expected):
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    cfg = tmp_path / "claims.yaml"
    cfg.write_text(text)
    res = tool("bnlab-claims", sweep, "--config", cfg)
    lines = err_lines(res)
    assert res.returncode == 2 and len(lines) == 1 and expected in lines[0], res.stderr
    assert not (sweep / "claims.json").exists()


def test_a_partial_claims_config_overrides_only_its_keys(sweep_run, tmp_path):
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    cfg = tmp_path / "claims.yaml"
    cfg.write_text("min_seeds: 1\n")  # one seed is enough: the sweep's 2 seeds get an interval
    res = tool("bnlab-claims", sweep, "--config", cfg)
    assert res.returncode == 0, res.stderr
    out = {c["id"]: c for c in json.loads((sweep / "claims.json").read_text())}
    assert out["bn_higher_accuracy"]["n"] == 2 and out["bn_higher_accuracy"]["interval"] is not None
    assert ">= 1 seeds" in out["bn_higher_accuracy"]["rule"] and out["bn_higher_accuracy"]["margin"] == 0.0


def test_stale_temp_files_of_a_killed_tool_are_removed_by_the_next_run(sweep_run, tmp_path):
    run = copy_records(sweep_run / "0", tmp_path / "run")
    (run / "figures").mkdir()
    dead = _dead_pid()
    stale = run / "figures" / f".curves.png.tmp{dead}"
    stale.write_bytes(b"\x89PNG half")
    live = run / "figures" / f".curves.png.tmp{os.getpid()}"  # another process writing it right now
    live.write_bytes(b"\x89PNG in progress")
    res = tool("bnlab-plot", run)
    assert res.returncode == 0, res.stderr
    assert not stale.exists() and live.exists()
    assert matplotlib.image.imread(run / "figures" / "curves.png").size > 0


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_killed_plot_leaves_only_whole_figures(sweep_run, tmp_path):
    sweep = copy_records(sweep_run, tmp_path / "sweep")
    for extra in ("1", "3"):  # two runs (lr 0.05 and 1.0) still make a sweep, in half the time
        shutil.rmtree(sweep / extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([str(BIN / "bnlab-plot"), str(sweep)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(sweep.rglob("*.png")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(sweep.rglob("*.png"))
    assert written, "bnlab-plot wrote nothing before the kill"
    for png in written:
        assert matplotlib.image.imread(png).size > 0, png
    for pdf in sweep.rglob("*.pdf"):
        assert pdf.read_bytes().rstrip().endswith(b"%%EOF"), pdf
    res = tool("bnlab-plot", sweep)  # the next run finishes and clears what the kill left
    assert res.returncode == 0, res.stderr
    assert_whole_figures(sweep)


# ------------------------------------------------------------------ scale ----


def labels_the_old_way(runs, root):
    """bnlab-report's labels as before: one config diff per run over its sweep dir (O(N^2))."""
    def group_differ(run):
        group = [r for r in runs if r.dir.parent == run.dir.parent]
        return report.config_diff([flatten(r.config) for r in group])[0] if len(group) >= 2 else []
    return [report.run_label(r, root, group_differ(r)) for r in runs]


def test_report_labels_are_those_of_the_per_run_diff_with_one_diff_per_sweep(sweep_run, tmp_path, monkeypatch):
    root = tmp_path / "results"
    copy_records(sweep_run, root / "lr_sweep")
    copy_records(sweep_run / "0", root / "lone" / "run")
    other = copy_records(sweep_run, root / "width_sweep")
    for r in other.iterdir():  # a second sweep varying another key
        if (r / "config.yaml").exists():
            cfg = yaml.safe_load((r / "config.yaml").read_text())
            cfg["model"]["width"] = 0.25 * (1 + int(r.name) % 2)
            (r / "config.yaml").write_text(yaml.safe_dump(cfg))
    runs = load_runs(root)
    assert len(runs) == 9
    differs = report.group_differs(runs)
    new = [report.run_label(r, root, differs[r.dir.parent]) for r in runs]
    assert new == labels_the_old_way(runs, root)
    assert any("model.width=0.5" in lbl for lbl in new) and any("optim.lr=1.0" in lbl for lbl in new)

    calls = []
    real = report.config_diff
    monkeypatch.setattr(report, "config_diff", lambda flats: calls.append(len(flats)) or real(flats))
    html = report.build(root, make_figures=False)
    # one diff over all 9 runs (the config table) and one per sweep dir of >= 2 runs, none per run
    assert sorted(calls) == [4, 4, 9]
    assert all(f">{lbl}<" in html for lbl in new)
