"""The explorer page in a real browser: Debian's Chromium driven by Selenium (issue 22).

These tests FAIL, never skip, when the browser is missing: CI must have it
(``apt-get install chromium chromium-driver``; BNLAB_CHROMIUM / BNLAB_CHROMEDRIVER point elsewhere).
A machine without it deselects them explicitly with ``-m 'not browser'``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import explore_records
import pytest
from explore_records import read_rows, run_explore

from bnlab.metrics import bn_stats

pytestmark = pytest.mark.browser
explore_run, explore_page = explore_records.explore_run, explore_records.explore_page  # session fixtures
CHROMIUM = Path(os.environ.get("BNLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("BNLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
VIEWS = ["view-activations", "view-bnstats", "view-playground", "view-curves"]


@pytest.fixture(scope="module")
def driver():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"browser tests need Chromium and its driver, missing {missing}: apt-get install chromium "
                    f"chromium-driver (or set BNLAB_CHROMIUM/BNLAB_CHROMEDRIVER), or deselect with -m 'not browser'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    yield d
    d.quit()


@pytest.fixture
def page(driver, explore_page):
    """The explorer page, loaded and drawn; the browser's logs emptied of earlier pages."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(explore_page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return driver


def js(driver, expr: str):
    return driver.execute_script(f"return {expr};")


def traces(driver, div: str) -> list[dict]:
    return js(driver, f"document.getElementById('{div}').data.map(t => ({{arm: t.legendgroup || null, "
                      f"name: t.name, x: t.x, y: t.y, visible: t.visible === undefined ? true : t.visible}}))")


def press(driver, element_id: str, key: str, times: int = 1) -> None:
    """Keyboard input on a control, as a user moves a slider (fires its input events)."""
    from selenium.webdriver.common.by import By

    el = driver.find_element(By.ID, element_id)
    for _ in range(times):
        el.send_keys(key)


def test_page_loads_offline_without_errors(page, tmp_path):
    from selenium.webdriver.common.by import By

    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    requested = set()
    for entry in page.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            requested.add(msg["params"]["request"]["url"])
    assert requested and all(u.startswith(("file://", "data:", "blob:")) for u in requested), requested
    for view in VIEWS:  # one screenshot per view; every plot of it drawn
        section = page.find_element(By.ID, view)
        page.execute_script("arguments[0].scrollIntoView()", section)
        shot = tmp_path / f"{view}.png"
        section.screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
        plots = section.find_elements(By.CLASS_NAME, "plot")
        assert plots and all(page.execute_script("return arguments[0].data.length", p) > 0 for p in plots), view


def test_step_slider_shows_that_steps_recorded_distribution(page, explore_run):
    from selenium.webdriver.common.keys import Keys

    channel = js(page, "document.getElementById('act-channel').value")
    conv, ch = channel.rsplit("/c", 1)
    press(page, "act-step", Keys.ARROW_RIGHT, 2)
    assert js(page, "document.getElementById('act-step').value") == "2"
    rows = {(r["arm"], r["step"]): r for r in read_rows(explore_run) if r["split"] == "train"}
    steps = sorted({s for (arm, s), r in rows.items() if bn_stats.hist_key(conv, int(ch), "pre", "lo") in r})
    assert js(page, "document.getElementById('act-step-label').textContent") == f"step {steps[2]}"
    for where in ("pre", "nl"):
        drawn = {t["arm"]: t["y"] for t in traces(page, f"act-{where}")}
        assert set(drawn) == {"bn", "none"}
        for arm, ys in drawn.items():
            row = rows[(arm, steps[2])]
            want = [row[bn_stats.hist_key(conv, int(ch), where, f"b{i}")] for i in range(len(ys))]
            assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9) for a, b in zip(ys, want)), (where, arm)
            assert ys != [rows[(arm, steps[0])][bn_stats.hist_key(conv, int(ch), where, f"b{i}")]
                          for i in range(len(ys))], "the distribution moved from step to step"


def bn_formula(xs, gamma, beta, eps, mean=None, var=None):
    """Ioffe & Szegedy's Algorithm 1 on ``xs``: batch statistics unless ``mean``, ``var`` are given."""
    m = sum(xs) / len(xs) if mean is None else mean
    v = sum((x - m) ** 2 for x in xs) / len(xs) if var is None else var
    return [gamma * (x - m) / math.sqrt(v + eps) + beta for x in xs]


def mean_std(ys):
    m = sum(ys) / len(ys)
    return m, math.sqrt(sum((y - m) ** 2 for y in ys) / len(ys))


def test_playground_gamma_slider_gives_the_formulas_mean_and_std(page, explore_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    conv, ch = js(page, "document.getElementById('pg-channel').value").rsplit("/c", 1)
    assert js(page, "document.getElementById('pg-arm').value") == "bn"
    probe = [r for r in read_rows(explore_run) if r["arm"] == "bn" and r["split"] == "probe"
             and bn_stats.batch_key(conv, int(ch), "x0") in r][-1]
    xs_all = [probe[bn_stats.batch_key(conv, int(ch), f"x{i}")] for i in range(64)]
    param = {p: probe[bn_stats.batch_key(conv, int(ch), p)] for p in bn_stats.BATCH_PARAMS}
    press(page, "pg-gamma", Keys.ARROW_RIGHT, 12)
    press(page, "pg-m", Keys.ARROW_LEFT, 16)  # a sub-batch: the first 48 values
    ctl = js(page, "Object.fromEntries(['pg-m','pg-gamma','pg-beta','pg-eps'].map(i => "
                   "[i, +document.getElementById(i).value]))")
    gamma, eps, m = ctl["pg-gamma"], 10 ** ctl["pg-eps"], int(ctl["pg-m"])
    assert m == 48 and gamma != pytest.approx(param["gamma"], abs=0.3)
    for mode, stats in (("train", {}), ("inference", {"mean": param["running_mean"], "var": param["running_var"]})):
        if mode == "inference":
            page.find_element(By.ID, "pg-mode-infer").click()
        want = bn_formula(xs_all[:m], gamma, ctl["pg-beta"], eps, **stats)
        drawn = traces(page, "pg-plot")[1]["x"]
        assert len(drawn) == m
        assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(drawn, want)), mode
        shown = js(page, "[+document.getElementById('pg-readout').dataset.mean, "
                         "+document.getElementById('pg-readout').dataset.std]")
        assert shown == pytest.approx(mean_std(want), rel=1e-4, abs=1e-4), mode
    assert mean_std(want)[1] != pytest.approx(abs(gamma), rel=1e-3), "inference: running, not batch, statistics"


def test_toggling_an_arm_hides_its_traces(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    plots = js(page, "[...document.querySelectorAll('.plot')].filter(p => p.data).map(p => p.id)")
    page.find_element(By.ID, "arm-none").click()
    for div in plots:
        for t in traces(page, div):
            if t["arm"] == "none":
                assert t["visible"] is False, (div, t["name"])
            elif t["arm"] == "bn":
                assert t["visible"] is True, (div, t["name"])
    page.find_element(By.ID, "arm-none").click()
    assert all(t["visible"] is True for t in traces(page, "curve-loss"))
    # the legend: a click on an entry hides its arm's traces (plotly's legend group) in that plot
    arm = traces(page, "curve-loss")[0]["arm"]
    items = page.find_elements(By.CSS_SELECTOR, "#curve-loss .legend .traces .legendtoggle")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", items[0])
    items[0].click()  # plotly waits out its double-click delay before it hides the trace
    WebDriverWait(page, 5).until(lambda d: traces(d, "curve-loss")[0]["visible"] != True)  # noqa: E712
    after = traces(page, "curve-loss")
    assert all(t["visible"] == ("legendonly" if t["arm"] == arm else True) for t in after), after


def test_sweep_page_picks_the_run(driver, sweep_run, tmp_path):
    """A sweep's page: no console error; the run picker redraws the curves with the chosen run's records."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    out = tmp_path / "sweep.html"
    assert run_explore([str(sweep_run), "--out", str(out)], tmp_path).returncode == 0
    driver.get(out.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    picker = Select(driver.find_element(By.ID, "run-pick"))
    names = [o.text for o in picker.options]
    assert len(names) == 4
    for name in (names[-1], names[0]):
        picker.select_by_visible_text(name)
        recorded = [r for r in read_rows(sweep_run / name) if r["arm"] == "bn" and r["split"] == "train"]
        drawn = next(t for t in traces(driver, "curve-loss") if t["name"] == "bn train")
        assert drawn["x"] == [r["step"] for r in recorded]
        assert drawn["y"] == pytest.approx([r["loss"] for r in recorded], rel=1e-5)
    driver.find_element(By.ID, "view-curves").screenshot(str(tmp_path / "sweep-curves.png"))
