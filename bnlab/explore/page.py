"""The explorer page: one self-contained HTML file (Plotly's JavaScript inlined once, the data as JSON).

Nothing is fetched when the page opens: no CDN, no fonts, no MathJax; it works from a file:// URL
offline. ``build(runs_data, title)`` returns the HTML text.
"""

from __future__ import annotations

import html
import json
from importlib import resources

CSS = """
body { font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; max-width: 1200px; }
section { border-top: 1px solid #ccc; margin-top: 1.5em; }
.plot { width: 100%; min-height: 300px; }
.controls { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin: .5em 0; }
.note { color: #777; font-style: italic; }
#curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1em; }
"""

BODY = """
<h1>{title}</h1>
<p>Interactive view of bnlab run records: hover a point for its value, drag to zoom (double-click resets),
click a legend entry to hide a trace, or untick an arm to hide all of its traces.</p>
<div class="controls"><label>Run <select id="run-pick"></select></label><span id="arm-toggles"></span></div>

<section id="view-activations"><h2>1. Activations over training</h2>
<div class="controls"><label>Layer/channel <select id="act-channel"></select></label>
<input type="range" id="act-step" min="0" max="0" value="0" step="1"> <span id="act-step-label"></span>
<button id="act-play">Play</button></div>
<p class="note" id="act-none">No activation records: run with metrics.activations.every (percentiles) and
metrics.bn_stats.hist_every (distributions).</p>
<div id="act-pre" class="plot"></div><div id="act-nl" class="plot"></div><div id="act-pct" class="plot"></div>
</section>

<section id="view-bnstats"><h2>2. Training vs inference statistics</h2>
<div class="controls"><label>BN layer/channel <select id="bn-layer"></select></label></div>
<p class="note" id="bn-none">No batch/running statistics recorded: run with metrics.bn_stats.every.</p>
<div id="bn-mean" class="plot"></div><div id="bn-var" class="plot"></div><div id="bn-acc" class="plot"></div>
</section>

<section id="view-playground"><h2>3. Playground on real activations</h2>
<p>A batch of real pre-norm activations saved from this run. BN is computed in this page:
y = gamma (x - mu) / sqrt(var + eps) + beta, with mu, var the statistics of the first <i>m</i> values
(train) or the layer's running statistics (inference).</p>
<div class="controls"><label>Layer/channel <select id="pg-channel"></select></label>
<label>Arm <select id="pg-arm"></select></label>
<label>batch size m <input type="range" id="pg-m" min="2" max="2" value="2" step="1"></label>
<label>log10 eps <input type="range" id="pg-eps" min="-8" max="1" value="-5" step="0.5"></label>
<label>gamma <input type="range" id="pg-gamma" min="-3" max="3" value="1" step="0.05"></label>
<label>beta <input type="range" id="pg-beta" min="-3" max="3" value="0" step="0.05"></label>
<label><input type="radio" name="pg-mode" id="pg-mode-train" checked> train (batch stats)</label>
<label><input type="radio" name="pg-mode" id="pg-mode-infer"> inference (running stats)</label></div>
<p class="note" id="pg-none">No saved batch: run with metrics.bn_stats.batch_every.</p>
<p id="pg-readout"></p><div id="pg-plot" class="plot"></div>
</section>

<section id="view-curves"><h2>4. Curves</h2><div id="curves"></div></section>
"""


def script(text: str) -> str:
    """``text`` inside a script element; "</" escaped so no string in it can close the element."""
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


def build(runs: list[dict], title: str) -> str:
    from plotly.offline import get_plotlyjs

    data = json.dumps({"runs": runs}, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    page_js = resources.files("bnlab.explore").joinpath("page.js").read_text()
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style>",
        script(get_plotlyjs()), "</head><body>",
        BODY.format(title=html.escape(title)),
        f'<script type="application/json" id="bnlab-data">{data}</script>',
        script(page_js), "</body></html>",
    ])
