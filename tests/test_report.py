"""bnlab-report: one self-contained HTML page per run or sweep, from real run records.

Content is checked by parsing the page; the page is also opened in headless
Chromium (Debian's ``chromium``; CI's ``.ci/run`` installs it): a screenshot
that is not blank, every image loaded and decoded, no script errors and no
console messages from the page. A deliberately broken copy shows that those
checks do catch a broken image, an uncaught error and a console message.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest

from bnlab import claims, report
from bnlab.claims import text as claims_text
from bnlab.records.store import load_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT = Path(sys.executable).with_name("bnlab-report")  # the console script of this environment


class Page(HTMLParser):
    """Every start tag with its attributes, and the tables: header cells and body rows (row attrs, cell texts)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[dict] = []  # {"class", "caption", "headers", "rows": [(attrs, [cell texts])]}
        self._in_head = False
        self._row = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self.tables.append({"class": a.get("class", ""), "headers": [], "rows": []})
        elif tag in ("thead", "tbody"):
            self._in_head = tag == "thead"
        elif tag == "tr" and self.tables:
            self._row = (a, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._in_head:
                self.tables[-1]["headers"] = self._row[1]
            else:
                self.tables[-1]["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, cls: str) -> dict:
        found = [t for t in self.tables if cls in t["class"].split()]
        assert len(found) == 1, f"expected one table.{cls}, found {len(found)}"
        return found[0]

    def attrs(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def sweep_report(sweep_run) -> Path:
    """The report of the sweep at its default place, through report.main."""
    assert report.main([str(sweep_run)]) == 0
    out = sweep_run / "report.html"
    assert out.is_file()
    return out


@pytest.fixture(scope="module")
def single_report(single_run, tmp_path_factory) -> Path:
    """The report of the single run through the installed console script, with --out."""
    out = tmp_path_factory.mktemp("report") / "nested" / "single.html"
    res = subprocess.run([str(REPORT), str(single_run), "--out", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(out)  # prints the output path
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # atomic: no temp file left
    return out


# ------------------------------------------------------------------ content ----


def test_sweep_report_holds_every_claim_verdict(sweep_run, sweep_report):
    text = sweep_report.read_text()
    page = Page(text)
    rows = {a["data-claim"]: cells for a, cells in page.table("claims")["rows"]}
    results = claims.evaluate(sweep_run)
    assert set(rows) == {c["id"] for c in results}
    assert page.table("claims")["headers"] == report.CLAIM_HEADERS == [
        "claim", "paper", "verdict", "experiment", "n", "per-seed effects", "estimate [95% interval]", "margin",
        "windows", "scale", "runs", "rule"]
    for c in results:
        cells = dict(zip(report.CLAIM_HEADERS, rows[c["id"]]))
        assert c["id"] in cells["claim"] and c["claim"] in cells["claim"]
        assert cells["verdict"].startswith(c["verdict"]) and (c["reason"] or "") in cells["verdict"]
        assert cells["experiment"] == (c["experiment"] or report.DASH) and cells["n"] == str(c["n"])
        assert cells["scale"] == c["scale"] and cells["rule"] == c["rule"]
        assert cells["margin"].startswith(claims_text.margin(c)) and c["margin_reason"] in cells["margin"]
        assert all(run in cells["runs"] for run in c["runs_used"][:6])
        assert cells["per-seed effects"] == claims_text.per_seed(c)
        assert cells["estimate [95% interval]"] == claims_text.estimate(c)
        assert cells["windows"] == claims_text.windows(c)
    # the verdict is colored by class
    classes = {a.get("class") for a in page.attrs("span")}
    assert classes & {"verdict supported", "verdict not-supported", "verdict inconclusive"}


def test_sweep_report_has_one_summary_row_per_run_and_arm(sweep_run, sweep_report):
    page = Page(sweep_report.read_text())
    table = page.table("summary")
    assert table["headers"][:2] == ["run", "arm"]
    assert {"final test acc", "best test acc", "steps to target", "diverged (step)", "train time (s)",
            "probe time (s)"} <= set(table["headers"])
    rows = table["rows"]
    runs = load_runs(sweep_run)
    assert len(runs) == 4
    assert len(rows) == sum(len(r.arms) for r in runs)
    col = {h: i for i, h in enumerate(table["headers"])}
    diverged_seen = 0
    for r in runs:
        rel = str(r.dir.relative_to(sweep_run))
        for arm, a in r.summary["arms"].items():
            mine = [cells for attrs, cells in rows
                    if attrs["data-arm"] == arm
                    and (attrs["data-run"] == rel or attrs["data-run"].startswith(rel + " ("))]
            assert len(mine) == 1, (rel, arm)
            cells = mine[0]
            assert cells[col["final test acc"]] == f"{a['final_test_acc']:.4f}"
            assert cells[col["best test acc"]] == f"{a['best_test_acc']:.4f}"
            if a["diverged"]:
                diverged_seen += 1
                assert cells[col["diverged (step)"]] == f"yes (step {a['diverged_step']})"
            else:
                assert cells[col["diverged (step)"]] == "no"
    assert diverged_seen >= 1  # lr 1.0 makes the unnormalized arm diverge


def test_sweep_report_config_diff_has_the_swept_keys(sweep_run, sweep_report):
    page = Page(sweep_report.read_text())
    table = page.table("config-diff")
    assert "seed" in table["headers"] and "optim.lr" in table["headers"]
    assert table["headers"][0] == "run"
    runs = {str(r.dir.relative_to(sweep_run)): r for r in load_runs(sweep_run)}
    assert len(table["rows"]) == len(runs)
    for _, cells in table["rows"]:
        row = dict(zip(table["headers"], cells))
        run = runs[row["run"]]
        assert row["seed"] == str(run.get("seed"))
        assert row["optim.lr"] == report.fmt_value(run.get("optim.lr"))
    # keys every run shares are not columns
    assert "model.arch" not in table["headers"]


def test_sweep_report_scale_statement(sweep_run, sweep_report):
    text = html.unescape(sweep_report.read_text())
    assert claims.scale(load_runs(sweep_run)) in text
    for section in ("scale", "config", "summary", "claims", "figures"):
        assert f'id="{section}"' in text and f'href="#{section}"' in text  # table of contents


def test_images_are_embedded_pngs_with_alt_and_caption(sweep_run, sweep_report):
    text = sweep_report.read_text()
    page = Page(text)
    imgs = page.attrs("img")
    runs = load_runs(sweep_run)
    assert len(imgs) >= len(runs) + 1  # at least every run's curves and one sweep figure
    assert len(page.attrs("figcaption")) == len(imgs) == text.count("<figure>")
    files = set()
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        img = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.01
        assert a.get("alt", "").strip()
        full = (sweep_run / a["data-file"]).read_bytes()  # the figure bnlab-plot wrote, beside the records
        assert data == report.embedded_png(sweep_run / a["data-file"])  # its 100-dpi palette copy
        height, width = matplotlib.image.imread(io.BytesIO(full), format="png").shape[:2]
        assert img.shape[:2] == (round(height * report.EMBED_SCALE), round(width * report.EMBED_SCALE))
        assert len(data) < len(full)
        files.add(a["data-file"])
    for r in runs:  # grouped per run: each run's curves figure is embedded
        assert f"{r.dir.relative_to(sweep_run)}/figures/curves.png" in files
    assert any(f.startswith("figures/") for f in files)  # the sweep's own figures


def test_report_is_self_contained(sweep_report, single_report):
    for path in (sweep_report, single_report):
        text = path.read_text()
        page = Page(text)
        for tag, attrs in page.tags:
            for name in ("src", "href", "srcset", "action", "poster", "data"):
                v = (attrs.get(name) or "").strip().lower()
                assert not v.startswith(("http://", "https://", "//")), (tag, name, v[:80])
            if tag == "a":
                assert attrs["href"].startswith("#")  # in-page links only
        assert not page.attrs("link") and not page.attrs("script") and not page.attrs("iframe")
        assert "@import" not in text and "url(" not in text and "@font-face" not in text
        assert re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text, re.I) is None


def test_single_run_report_has_the_config_table(single_run, single_report):
    page = Page(single_report.read_text())
    config = dict(cells for t in page.tables if "config" in t["class"].split() for _, cells in t["rows"])
    run = load_runs(single_run)[0]
    assert config["optim.lr"] == report.fmt_value(run.get("optim.lr"))
    assert config["seed"] == str(run.get("seed"))
    assert config["model.arch"] == run.get("model.arch")
    summary = page.table("summary")["rows"]
    assert sorted(a["data-arm"] for a, _ in summary) == sorted(run.arms)
    # probe and analysis figures of that run are embedded
    files = {a["data-file"] for a in page.attrs("img")}
    for name in ("curves", "landscape", "surface_1d"):
        assert f"figures/{name}.png" in files
    assert not [t for t in page.tables if "config-diff" in t["class"].split()]


def test_text_from_records_is_escaped(sweep_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    src = sorted(p.parent for p in sweep_run.rglob("summary.json"))[0]
    for name in ("summary.json", "config.yaml", "metrics.jsonl"):
        shutil.copy(src / name, run / name)
    cfg = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(cfg.replace("arch: simple_cnn", "arch: '<script>alert(1)</script>&x'"))
    text = report.build(run, make_figures=False)
    assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;x" in text


def test_no_records_is_one_line_exit_2(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnlab-report: error:") and "no run records" in err[0]
    assert not (tmp_path / "report.html").exists()


# ----------------------------------------------------------------- chromium ----

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]

# Collects script errors and failed resource loads from the start of the page (capture phase).
PROBE_HEAD = """<script>window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  if (t && t !== window && t.tagName) { window.__errors.push("failed to load <" + t.tagName.toLowerCase() + "> "
    + (t.alt || "")); }
  else { window.__errors.push(String(e.message) + " @" + e.filename + ":" + e.lineno); }
}, true);</script>"""

# On load: every image complete with a natural size, and decoded: drawn into a canvas (which decodes it,
# also off screen; a broken image throws) and read back, its pixel standard deviation (0-255) recorded.
PROBE_BODY = """<script>window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var pixelStd = imgs.map(function (img) {
    try {
      var c = document.createElement("canvas");
      c.width = 96; c.height = 64;
      var ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0, c.width, c.height);
      var d = ctx.getImageData(0, 0, c.width, c.height).data, s = 0, s2 = 0, n = 0;
      for (var j = 0; j < d.length; j += 4) { var v = (d[j] + d[j + 1] + d[j + 2]) / 3; s += v; s2 += v * v; n++; }
      return Math.sqrt(Math.max(0, s2 / n - (s / n) * (s / n)));
    } catch (e) { return null; }
  });
  var pre = document.createElement("pre");
  pre.id = "result";
  pre.textContent = JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.alt; }),
    undecoded: imgs.filter(function (i, k) { return !(pixelStd[k] > 0); }).map(function (i) { return i.alt; }),
    pixel_std: pixelStd,
    sizes: imgs.map(function (i) { return [i.naturalWidth, i.naturalHeight]; }),
    errors: window.__errors,
    title: document.title
  });
  document.body.appendChild(pre);
});</script>"""


def chromium_exe() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium (CI's .ci/run installs it)")
    return exe


def run_chromium(exe: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)  # a new, empty profile every run
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def instrumented_copy(report_path: Path, dest: Path, extra_body: str = "") -> Path:
    text = report_path.read_text()
    assert text.count("<head>") == 1 and text.count("</body>") == 1
    text = text.replace("<head>", "<head>\n" + PROBE_HEAD, 1)
    text = text.replace("</body>", extra_body + PROBE_BODY + "\n</body>", 1)
    dest.write_text(text)
    return dest


def load_in_chromium(exe: str, page: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """(the probe's JSON result, chromium's log lines that speak about the page)."""
    res = run_chromium(exe, tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                       "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="result">(.*?)</pre>', res.stdout, re.S)
    assert m, "the probe wrote no result: " + res.stdout[-500:] + res.stderr[-2000:]
    result = json.loads(html.unescape(m.group(1)))
    # Chromium's own noise on a healthy page (no D-Bus in a container, no GPU for VA-API, the sandbox
    # warning of the GPU process, the Debian launcher's shell warning) never names the page; console
    # messages of the page appear as "INFO:CONSOLE...] "<message>", source: <page url> (<line>)"
    # whatever their level, and uncaught exceptions as "Uncaught ...".
    about_page = [line for line in res.stderr.splitlines()
                  if ":CONSOLE" in line or "Uncaught" in line
                  or (("ERROR" in line or "FATAL" in line) and (page.name in line or page.as_uri() in line))]
    return result, about_page


def test_report_in_headless_chromium(sweep_report, tmp_path):
    exe = chromium_exe()
    n_imgs = len(Page(sweep_report.read_text()).attrs("img"))

    # (1) a screenshot that is not blank
    shot = tmp_path / "report.png"
    res = run_chromium(exe, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", sweep_report.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.is_file() and shot.read_bytes().startswith(PNG_SIGNATURE)
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # text, tables and colored verdicts, not a blank page
    assert (rgb.min(axis=-1) < 0.9).mean() > 0.01
    print(f"screenshot: {shot}")

    # (2) loads with every image decoded, no script error, no console message from the page
    page = instrumented_copy(sweep_report, tmp_path / "report_probe.html")
    result, about_page = load_in_chromium(exe, page, tmp_path)
    assert result["title"].startswith("bnlab report")
    assert result["images"] == n_imgs > 0
    assert result["broken"] == [] and result["undecoded"] == []
    assert all(w > 100 and h > 100 for w, h in result["sizes"])
    assert all(v > 2 for v in result["pixel_std"])  # decoded to a drawing, not a blank
    assert result["errors"] == []
    assert about_page == []

    # the same checks catch a broken image, an uncaught error and a console message
    bad = instrumented_copy(sweep_report, tmp_path / "report_broken.html",
                            '<img alt="broken-on-purpose" src="data:image/png;base64,iVBORw0KGgoAAAA">\n'
                            '<script>console.error("console-error-on-purpose"); no_such_function();</script>\n')
    result, about_page = load_in_chromium(exe, bad, tmp_path)
    assert result["images"] == n_imgs + 1
    assert result["broken"] == ["broken-on-purpose"] and result["undecoded"] == ["broken-on-purpose"]
    assert any("no_such_function" in e for e in result["errors"])
    assert any("console-error-on-purpose" in line for line in about_page)
    assert any("Uncaught" in line and "no_such_function" in line for line in about_page)
