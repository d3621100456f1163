// bnlab-explore page logic: draws every view from the embedded DATA with Plotly (inlined above).
// Views re-render when the run, layer/channel, step or a playground control changes; arm toggles
// hide every trace of an arm in every plot (the legend's own click does the same per plot).
"use strict";
const DATA = JSON.parse(document.getElementById("bnlab-data").textContent);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const CONFIG = {displaylogo: false, responsive: true};
const state = {run: 0, hidden: new Set()};
const $ = (id) => document.getElementById(id);
const run = () => DATA.runs[state.run];
const color = (arm) => COLORS[run().arms.indexOf(arm) % COLORS.length];
const visible = (arm) => (state.hidden.has(arm) ? false : true);

function fill(select, options) {
  const keep = select.value;
  select.innerHTML = "";
  for (const o of options) select.add(new Option(o, o));
  if (options.includes(keep)) select.value = keep;
}

function axisButtons(log) {
  return [{type: "buttons", direction: "right", x: 1, y: 1.18, xanchor: "right", showactive: true,
           active: log ? 0 : 1, buttons: [
             {label: "log y", method: "relayout", args: [{"yaxis.type": "log"}]},
             {label: "linear y", method: "relayout", args: [{"yaxis.type": "linear"}]}]}];
}

function layout(title, xlabel, ylabel, extra) {
  return Object.assign({title: {text: title, font: {size: 14}}, margin: {t: 60, r: 20, b: 45, l: 60},
                        xaxis: {title: {text: xlabel}}, yaxis: {title: {text: ylabel}}, height: 340,
                        legend: {orientation: "h", y: -0.25}}, extra || {});
}

function draw(div, traces, lay) {
  for (const t of traces) if (t.legendgroup) t.visible = visible(t.legendgroup);
  Plotly.react(div, traces, lay, CONFIG);
}

// ---- view 4: every curve
function curveTraces(p) {
  const traces = [];
  for (const b of p.bands) {
    const c = color(b.arm);
    traces.push({x: b.x, y: b.hi, mode: "lines", line: {width: 0.5, color: c}, name: b.name + " (max)",
                 legendgroup: b.arm, showlegend: false});
    traces.push({x: b.x, y: b.lo, mode: "lines", line: {width: 0.5, color: c}, fill: "tonexty",
                 fillcolor: c + "40", name: b.name, legendgroup: b.arm});
  }
  for (const s of p.series) {
    traces.push({x: s.x, y: s.y, mode: s.x.length > 1 ? "lines" : "markers", name: s.name,
                 legendgroup: s.arm, line: {color: color(s.arm), dash: s.dash}});
  }
  return traces;
}

function drawCurves() {
  const box = $("curves");
  box.innerHTML = "";
  for (const p of run().panels) {
    const div = document.createElement("div");
    div.id = "curve-" + p.id;
    div.className = "plot";
    box.appendChild(div);
    draw(div, curveTraces(p), layout(p.title, "step", p.ylabel,
      {yaxis: {title: {text: p.ylabel}, type: p.log ? "log" : "linear"}, updatemenus: axisButtons(p.log)}));
  }
}

// ---- view 1: activations over training
function histTrace(h, arm, where) {
  const n = h.p.length, w = (h.hi - h.lo) / Math.max(n, 1);
  return {type: "bar", x: h.p.map((_, i) => h.lo + (i + 0.5) * w), y: h.p, width: w, opacity: 0.55,
          name: arm + (where === "pre" ? " pre-norm" : " nonlinearity input"), legendgroup: arm,
          marker: {color: color(arm)}};
}

function actSteps(ch) {
  const steps = new Set();
  for (const arm of Object.keys(ch)) for (const s of ch[arm].steps) steps.add(s);
  return [...steps].sort((a, b) => a - b);
}

function drawActivations() {
  const dist = run().dist, names = Object.keys(dist);
  fill($("act-channel"), names);
  $("act-none").hidden = names.length > 0;
  if (!names.length) return;
  const ch = dist[$("act-channel").value], steps = actSteps(ch), slider = $("act-step");
  slider.max = Math.max(steps.length - 1, 0);
  slider.disabled = steps.length < 2;
  const step = steps[Math.min(+slider.value, steps.length - 1)];
  $("act-step-label").textContent = steps.length ? "step " + step : "no histograms recorded";
  for (const where of ["pre", "nl"]) {
    const traces = [];
    for (const arm of run().arms) {
      const i = ch[arm] ? ch[arm].steps.indexOf(step) : -1;
      if (i >= 0) traces.push(histTrace(ch[arm][where][i], arm, where));
    }
    const title = where === "pre" ? "Pre-norm activations (the norm's input)"
                                  : "Input to the nonlinearity (BN's output in a BN arm)";
    draw($("act-" + where), traces, layout(title + (steps.length ? ", step " + step : ""), "value",
                                          "fraction", {barmode: "overlay", height: 300}));
  }
  const lines = [];
  for (const arm of run().arms) {
    if (!ch[arm]) continue;
    for (const where of ["pre", "nl"]) {
      for (const [q, s] of Object.entries(ch[arm].pct[where])) {
        lines.push({x: s.x, y: s.y, mode: "lines", legendgroup: arm, name: `${arm} ${where} p${q}`,
                    line: {color: color(arm), dash: where === "pre" ? "solid" : "dot"}});
      }
    }
  }
  const mark = steps.length ? [{type: "line", x0: step, x1: step, yref: "paper", y0: 0, y1: 1,
                                line: {color: "#888", dash: "dash"}}] : [];
  draw($("act-pct"), lines, layout("Ioffe & Szegedy percentiles (solid: pre-norm; dotted: nonlinearity input)",
                                   "step", "value", {shapes: mark}));
}

let playing = null;
function togglePlay() {
  const slider = $("act-step");
  if (playing) { clearInterval(playing); playing = null; $("act-play").textContent = "Play"; return; }
  $("act-play").textContent = "Pause";
  playing = setInterval(() => {
    slider.value = (+slider.value + 1) % (+slider.max + 1);
    drawActivations();
  }, 600);
}

// ---- view 2: training vs inference statistics
function drawBnStats() {
  const bs = run().bnstats, names = Object.keys(bs.layers);
  fill($("bn-layer"), names);
  $("bn-none").hidden = names.length > 0;
  for (const [stat, div] of [["mean", "bn-mean"], ["var", "bn-var"]]) {
    const traces = [];
    const layer = bs.layers[$("bn-layer").value] || {};
    for (const [arm, st] of Object.entries(layer)) {
      const b = st["batch_" + stat], r = st["running_" + stat];
      if (b) traces.push({x: b.x, y: b.y, mode: "markers", name: `${arm} batch ${stat}`, legendgroup: arm,
                          marker: {color: color(arm), size: 5}});
      if (r) traces.push({x: r.x, y: r.y, mode: "lines", name: `${arm} running ${stat}`, legendgroup: arm,
                          line: {color: color(arm)}});
    }
    draw($(div), traces, layout(`Batch ${stat} of each step vs running ${stat} (inference)`, "step", stat));
  }
  const acc = [];
  for (const [arm, a] of Object.entries(bs.acc)) {
    acc.push({x: a.running.x, y: a.running.y, mode: "lines+markers", name: `${arm} running stats`,
              legendgroup: arm, line: {color: color(arm)}});
    if (a.batch.x.length) acc.push({x: a.batch.x, y: a.batch.y, mode: "lines+markers", legendgroup: arm,
                                    name: `${arm} batch stats`, line: {color: color(arm), dash: "dot"}});
  }
  draw($("bn-acc"), acc, layout("Test accuracy: running vs batch statistics", "step", "accuracy"));
}

// ---- view 3: playground (BN computed here, Ioffe & Szegedy Alg. 1)
function meanVar(xs) {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return [m, xs.reduce((a, b) => a + (b - m) * (b - m), 0) / xs.length];
}

function normalize(xs, p) {
  const [bm, bv] = meanVar(xs);
  const [mu, v] = p.mode === "train" ? [bm, bv] : [p.running_mean, p.running_var];
  return xs.map((x) => p.gamma * (x - mu) / Math.sqrt(v + p.eps) + p.beta);
}

function playgroundParams(b) {
  return {m: +$("pg-m").value, eps: Math.pow(10, +$("pg-eps").value), gamma: +$("pg-gamma").value,
          beta: +$("pg-beta").value, mode: $("pg-mode-infer").checked ? "inference" : "train",
          running_mean: b.running_mean ?? 0, running_var: b.running_var ?? 1};
}

function pgSource() {
  const pg = run().batch, names = Object.keys(pg);
  fill($("pg-channel"), names);
  $("pg-none").hidden = names.length > 0;
  if (!names.length) return null;
  const arms = Object.keys(pg[$("pg-channel").value]);
  fill($("pg-arm"), arms);
  return pg[$("pg-channel").value][$("pg-arm").value];
}

function loadPlayground() {
  const b = pgSource();
  if (!b) return;
  $("pg-m").max = b.x.length;
  $("pg-m").value = b.x.length;
  $("pg-gamma").value = b.gamma ?? 1;
  $("pg-beta").value = b.beta ?? 0;
  $("pg-eps").value = Math.log10(b.eps ?? 1e-5);
  $("pg-mode-infer").disabled = b.running_mean === undefined;
  drawPlayground();
}

function drawPlayground() {
  const b = pgSource();
  if (!b) return;
  const p = playgroundParams(b), xs = b.x.slice(0, p.m), ys = normalize(xs, p);
  const [ym, yv] = meanVar(ys);
  $("pg-readout").textContent = `batch of ${p.m} (step ${b.step}), ${p.mode} statistics, eps=${p.eps.toExponential(1)},`
    + ` gamma=${p.gamma}, beta=${p.beta}: output mean ${ym.toFixed(4)}, std ${Math.sqrt(yv).toFixed(4)}`;
  $("pg-readout").dataset.mean = ym;
  $("pg-readout").dataset.std = Math.sqrt(yv);
  Plotly.react($("pg-plot"), [
    {type: "histogram", x: xs, name: "pre-norm values x", opacity: 0.5, marker: {color: "#888"}},
    {type: "histogram", x: ys, name: "BN(x) = gamma (x - mu) / sqrt(var + eps) + beta", opacity: 0.6,
     marker: {color: COLORS[0]}}],
    layout(`BatchNorm on a real batch: output mean ${ym.toFixed(3)}, std ${Math.sqrt(yv).toFixed(3)}`,
           "value", "count", {barmode: "overlay", height: 380}), CONFIG);
}

// ---- page
function armToggles() {
  const box = $("arm-toggles");
  box.innerHTML = "Arms: ";
  for (const arm of run().arms) {
    const label = document.createElement("label"), cb = document.createElement("input");
    cb.type = "checkbox";
    cb.id = "arm-" + arm;
    cb.checked = !state.hidden.has(arm);
    cb.addEventListener("change", () => { cb.checked ? state.hidden.delete(arm) : state.hidden.add(arm); drawAll(); });
    label.append(cb, " " + arm + " ");
    label.style.color = color(arm);
    box.appendChild(label);
  }
}

function drawAll() {
  armToggles();
  drawActivations();
  drawBnStats();
  drawCurves();
}

function init() {
  fill($("run-pick"), DATA.runs.map((r) => r.name));
  $("run-pick").parentElement.hidden = DATA.runs.length < 2;
  $("run-pick").addEventListener("change", () => {
    state.run = DATA.runs.findIndex((r) => r.name === $("run-pick").value);
    drawAll();
    loadPlayground();
  });
  $("act-channel").addEventListener("change", drawActivations);
  $("act-step").addEventListener("input", drawActivations);
  $("act-play").addEventListener("click", togglePlay);
  $("bn-layer").addEventListener("change", drawBnStats);
  $("pg-channel").addEventListener("change", loadPlayground);
  $("pg-arm").addEventListener("change", loadPlayground);
  for (const id of ["pg-m", "pg-eps", "pg-gamma", "pg-beta", "pg-mode-train", "pg-mode-infer"]) {
    $(id).addEventListener("input", drawPlayground);
  }
  drawAll();
  loadPlayground();
  document.body.dataset.ready = "1";
}

init();
