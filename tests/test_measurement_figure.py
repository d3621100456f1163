"""A new measurement gets a figure and a place in the report through the measurement registry alone.

A dummy metric module registers a ``Measurement``; synthetic run records carry its keys. The
real ``bnlab-plot`` / ``bnlab-report`` entry points run in a subprocess that imports the module
first (as the trainer imports every module of ``bnlab.metrics``): nothing in plots or report
names the dummy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from verdict_records import arm, write_run

from bnlab import plots
from bnlab.metrics import registry
from bnlab.records.store import Run

DUMMY = registry.Measurement(name="dummy_energy", prefix="dummy/", title="Dummy energy", paper="Nobody 2026",
                             split="probe")
MODULE = f"""from bnlab.metrics.registry import Measurement, register

register(Measurement(name={DUMMY.name!r}, prefix={DUMMY.prefix!r}, title={DUMMY.title!r}, paper={DUMMY.paper!r},
                     split={DUMMY.split!r}))
"""
STEPS = range(0, 501, 100)


def energy(arm_name: str, step: int) -> float:
    return (2.0 if arm_name == "bn" else 5.0) * (1 + step / 100)


def dummy_rows() -> list[dict]:
    """Probe rows of both arms with two scalar dummy keys and one list (not a scalar: not drawn)."""
    return [{"step": s, "arm": a, "split": "probe", "dummy/energy": energy(a, s), "dummy/count": s // 100,
             "dummy/hist": [1, 2, 3]} for s in STEPS for a in ("bn", "none")]


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "run", arms={"bn": arm(0.5), "none": arm(0.4)}, rows=dummy_rows(),
                     extra={"metrics.dummy_energy": {"every": 100}})


def tool(entry: str, args: list[str], tmp_path: Path, register: bool) -> subprocess.CompletedProcess:
    """``entry`` (bnlab.plots or bnlab.report) main in a subprocess; the dummy metric imported first if ``register``."""
    (tmp_path / "dummy_metric.py").write_text(MODULE)
    code = ("import sys\n" + ("import dummy_metric\n" if register else "")
            + f"from {entry} import main\nsys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_a_registered_measurement_without_a_figure_gets_the_generic_one(run_dir, tmp_path):
    png = run_dir / "figures" / f"{DUMMY.name}.png"
    plain = tool("bnlab.plots", [str(run_dir)], tmp_path, register=False)
    assert plain.returncode == 0, plain.stderr
    assert not png.exists()  # unregistered keys: nobody draws them

    res = tool("bnlab.plots", [str(run_dir)], tmp_path, register=True)
    assert res.returncode == 0, res.stderr
    assert str(png) in res.stdout.splitlines() and png.with_suffix(".pdf").is_file()
    img = matplotlib.image.imread(png)
    assert img.std() > 0.05 and (img[..., :3] < 0.9).any(axis=-1).mean() > 0.02, "blank figure"


def test_the_generic_figure_draws_each_scalar_key_of_the_measurement(run_dir, monkeypatch):
    monkeypatch.setitem(registry.MEASUREMENTS, DUMMY.name, DUMMY)
    for name in ("bn", "none"):
        steps, traces = plots.measurement_traces(Run(run_dir), name, DUMMY)
        assert list(traces) == ["dummy/energy", "dummy/count"]  # the list-valued key is not a trace
        np.testing.assert_array_equal(steps, list(STEPS))
        np.testing.assert_allclose(traces["dummy/energy"], [energy(name, s) for s in STEPS])
    assert plots.caption(DUMMY.name).startswith(f"{DUMMY.title} ({DUMMY.paper})")


def test_a_run_without_the_measurements_keys_gets_a_skip_note(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.MEASUREMENTS, DUMMY.name, DUMMY)
    bare = write_run(tmp_path / "bare", arms={"bn": arm(0.5), "none": arm(0.4)}, rows=[])
    _, notes = plots.run_figures(bare)
    assert f"skipped {DUMMY.name}: no probe rows with dummy/* keys (metrics.{DUMMY.name}) ({bare})" in notes


def test_the_report_embeds_the_generic_figure_with_its_caption(run_dir, tmp_path):
    res = tool("bnlab.report", [str(run_dir)], tmp_path, register=True)
    assert res.returncode == 0, res.stderr
    page = (run_dir / "report.html").read_text()
    assert f'data-file="figures/{DUMMY.name}.png"' in page
    assert f"<strong>{DUMMY.name}</strong>: {DUMMY.title} ({DUMMY.paper})" in page
