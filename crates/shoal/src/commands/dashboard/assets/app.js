// Shoal dashboard: four pages over the server's JSON (runs, a run's curves, a cluster run, a
// study), each built once and then updated in place every second, so nothing jumps.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const POLL_MS = 1000;
const BEST_COLOR = "#101828";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

// ---- helpers -------------------------------------------------------------------------------

async function api(path, params) {
  const query = new URLSearchParams(params || {});
  const headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  const response = await fetch(path + (query.toString() ? "?" + query : ""), { headers, cache: "no-store" });
  if (!response.ok) throw new Error((await response.text()) || response.status + " " + response.statusText);
  return response.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

// One colour per run (or trial) wherever it is drawn: picked from its id.
function colorFor(id) {
  let hash = 0;
  for (const c of String(id)) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (digits !== undefined) return value.toFixed(digits);
  const abs = Math.abs(value);
  if (Number.isInteger(value) && abs < 1e15) return value.toLocaleString("en-US");
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return value.toLocaleString("en-US", { maximumFractionDigits: 4 });
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

function short(v) {
  const abs = Math.abs(v);
  if (abs >= 1e6) return +(v / 1e6).toFixed(2) + "M";
  if (abs >= 1e3) return +(v / 1e3).toFixed(1) + "k";
  return +v.toPrecision(3) + "";
}

function badge(state) {
  return el("span", { class: "badge " + state }, state);
}

function link(hash, text) {
  return el("a", { href: hash }, text);
}

function runHash(ids) {
  return "#/run/" + ids.map(encodeURIComponent).join(",");
}

// Replaces a container's children (a table body, a card) in one step.
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// Updates a table body to `rows`, keeping the rows that did not change, so a click, a hover or
// a focus on them survives the refresh.
function patch(body, ...rows) {
  const next = rows.flat().filter((r) => r !== null && r !== undefined);
  next.forEach((row, i) => {
    const old = body.children[i];
    if (!old) body.append(row);
    else if (old.outerHTML !== row.outerHTML) old.replaceWith(row);
  });
  while (body.children.length > next.length) body.lastChild.remove();
}

function setCrumbs(...parts) {
  fill(document.getElementById("crumbs"), ...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

// ---- charts --------------------------------------------------------------------------------

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  // Multiples of the step counted by index, so rounding never leaves 3e-18 where 0 belongs.
  for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9; k++) ticks.push(+(k * step).toPrecision(12));
  return ticks;
}

function extent(values, pad) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

// A chart panel: a title and a fixed-height plot area that `draw` fills.
function chartPanel(title) {
  const plot = el("div", { class: "plot" });
  const panel = el("section", { class: "panel chart", "data-chart": title }, el("h3", {}, title), plot);
  return { panel, plot };
}

// Draws lines (or points) into `plot`. series: [{name, color, points: [[x, y]], width, dots}].
// opts: {xLabel, xFormat, yFormat, xCategories, empty}.
function draw(plot, series, opts) {
  const width = Math.max(plot.clientWidth, 240), height = Math.max(plot.clientHeight, 150);
  const m = { left: 56, right: 12, top: 8, bottom: 34 };
  const all = series.flatMap((s) => s.points);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (all.length === 0) {
    const t = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" });
    t.textContent = opts.empty || "no data yet";
    root.append(t);
    plot.replaceChildren(root);
    return;
  }
  const [x0, x1] = opts.xCategories ? [-0.5, opts.xCategories.length - 0.5] : extent(all.map((p) => p[0]), 0);
  const [y0, y1] = extent(all.map((p) => p[1]), 0.06);
  const sx = (x) => m.left + ((x - x0) / (x1 - x0 || 1)) * (width - m.left - m.right);
  const sy = (y) => height - m.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - m.top - m.bottom);
  const yFormat = opts.yFormat || short, xFormat = opts.xFormat || short;
  for (const t of niceTicks(y0, y1, 5)) {
    root.append(svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: sy(t), y2: sy(t) }));
    const label = svg("text", { x: m.left - 6, y: sy(t) + 4, "text-anchor": "end" });
    label.textContent = yFormat(t);
    root.append(label);
  }
  const xTicks = opts.xCategories ? opts.xCategories.map((_, i) => i) : niceTicks(x0, x1, Math.max(2, Math.floor(width / 110)));
  for (const t of xTicks) {
    const label = svg("text", { x: sx(t), y: height - m.bottom + 16, "text-anchor": "middle" });
    label.textContent = opts.xCategories ? opts.xCategories[t] : xFormat(t);
    root.append(label);
  }
  root.append(svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom }));
  if (opts.xLabel) {
    const label = svg("text", { x: width - m.right, y: height - 4, "text-anchor": "end" });
    label.textContent = opts.xLabel;
    root.append(label);
  }
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    if (s.dots) {
      const group = svg("g", { class: "series", "data-series": s.name, "data-points": pts.length });
      for (const [x, y] of pts) {
        const dot = svg("circle", { cx: sx(x), cy: sy(y), r: s.width || 4, fill: s.color, "fill-opacity": 0.75 });
        const tip = svg("title");
        tip.textContent = `${s.name}: ${fmt(y)}`;
        dot.append(tip);
        group.append(dot);
      }
      root.append(group);
      continue;
    }
    const d = pts.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
    const path = svg("path", {
      class: "series", d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.8,
      "stroke-linejoin": "round", "data-series": s.name, "data-points": pts.length,
    });
    const tip = svg("title");
    tip.textContent = s.name;
    path.append(tip);
    root.append(path);
  }
  plot.replaceChildren(root);
}

// Points of `y` against `x` from a run's metrics (rows where both are logged).
function column(metrics, x, y) {
  const xi = metrics.columns.indexOf(x), yi = metrics.columns.indexOf(y);
  if (xi < 0 || yi < 0) return [];
  return metrics.rows.filter((r) => r[xi] !== null && r[yi] !== null).map((r) => [r[xi], r[yi]]);
}

// ---- pages ---------------------------------------------------------------------------------

// The runs and studies found under the dashboard's directories.
function runsPage() {
  const selected = new Set();
  const problems = el("div", { id: "problems" });
  const runsBody = el("tbody", { id: "runs" });
  const studiesBody = el("tbody", { id: "studies" });
  const compare = el("button", { id: "compare", disabled: true, onclick: () => (location.hash = runHash([...selected])) },
    "Overlay selected runs");
  const numeric = (label, hide) => el("th", { class: "num" + (hide ? " hide-narrow" : "") }, label);
  fill(document.getElementById("app"),
    el("h1", {}, "Runs"),
    problems,
    el("div", { class: "toolbar" }, compare, el("span", { class: "hint hide-narrow" }, "tick runs to draw their curves together")),
    el("div", { class: "panel scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "Run"), el("th", {}, "Algorithm"),
        el("th", { class: "hide-narrow" }, "Env"), numeric("Seed", true), numeric("Env steps"), numeric("Return"),
        numeric("Wall time", true), el("th", {}, "State"), el("th", { class: "hide-narrow" }, "Cluster"))),
      runsBody)),
    el("h2", {}, "Tuning studies"),
    el("div", { class: "panel scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Study"), el("th", {}, "Metric"), numeric("Trials"),
        numeric("Running"), numeric("Best"))),
      studiesBody)));
  setCrumbs(link("#/", "Runs"));
  return async () => {
    const data = await api("/api/overview");
    fill(problems, data.problems.map((p) => el("div", { class: "problem", "data-problem": p.path }, `${p.path}: ${p.error}`)));
    const rows = [];
    for (const run of data.runs) {
      const box = el("input", { type: "checkbox", "aria-label": "select " + run.name, checked: selected.has(run.id),
        onchange: (e) => { e.target.checked ? selected.add(run.id) : selected.delete(run.id); compare.disabled = selected.size === 0; } });
      rows.push(el("tr", { "data-run": run.id },
        el("td", {}, box),
        el("td", {}, el("span", { class: "swatch", style: "background:" + colorFor(run.id) }), link(runHash([run.id]), run.name)),
        el("td", {}, run.algo),
        el("td", { class: "hide-narrow" }, run.env),
        el("td", { class: "num hide-narrow" }, run.seed ?? "–"),
        el("td", { class: "num", "data-col": "env_steps", "data-value": run.env_steps ?? "" }, fmt(run.env_steps)),
        el("td", { class: "num", "data-col": "return", "data-value": run.return_mean ?? "" }, fmt(run.return_mean, 2)),
        el("td", { class: "num hide-narrow" }, fmtSeconds(run.wall_seconds)),
        el("td", { "data-col": "state" }, badge(run.state)),
        el("td", { class: "hide-narrow" }, run.cluster ? link("#/cluster/" + encodeURIComponent(run.id), run.cluster) : "–")));
      if (run.error) rows.push(el("tr", { "data-error-for": run.id }, el("td", {}), el("td", { class: "error-cell", colspan: 9 }, run.error)));
    }
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { class: "empty", colspan: 10 }, "No runs found yet.")));
    patch(runsBody, rows);
    compare.disabled = selected.size === 0;
    const studies = data.studies.map((s) => el("tr", { "data-study": s.id },
      el("td", {}, link("#/study/" + encodeURIComponent(s.id), s.name)),
      el("td", {}, s.error ? el("span", { class: "error-cell" }, s.error) : `${s.metric} (${s.mode})`),
      el("td", { class: "num" }, s.trials), el("td", { class: "num" }, s.running),
      el("td", { class: "num" }, fmt(s.best_value, 2))));
    patch(studiesBody, studies.length ? studies : [el("tr", {}, el("td", { class: "empty", colspan: 5 }, "No studies found."))]);
  };
}

const STEP_COLUMNS = new Set(["iteration", "env_steps", "wall_seconds", "episodes", "episode_return_mean"]);

// One or several runs' curves, overlaid: return against env steps and wall time, the losses and
// the diagnostics (CleanRL's approx_kl, clipfrac, entropy, explained variance, …).
function runPage(ids) {
  const facts = el("tbody", { id: "facts" });
  const errors = el("div");
  const charts = el("div", { class: "charts", id: "charts" });
  const panels = new Map();
  const panel = (title) => {
    if (!panels.has(title)) {
      const p = chartPanel(title);
      panels.set(title, p);
      charts.append(p.panel);
    }
    return panels.get(title).plot;
  };
  panel("Return vs env steps");
  panel("Return vs wall time");
  fill(document.getElementById("app"),
    el("h1", {}, ids.length === 1 ? ids[0] : `${ids.length} runs`),
    errors,
    el("div", { class: "panel scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Run"), el("th", {}, "Algorithm"), el("th", { class: "hide-narrow" }, "Env"),
        el("th", { class: "num" }, "Env steps"), el("th", { class: "num" }, "Return"), el("th", { class: "num hide-narrow" }, "Final (summary.json)"),
        el("th", { class: "num hide-narrow" }, "Wall time"), el("th", {}, "State"))),
      facts)),
    el("h2", {}, "Curves"),
    charts);
  setCrumbs(link("#/", "Runs"), ids.length === 1 ? ids[0] : "overlay");
  return async () => {
    const pages = await Promise.all(ids.map((id) => api("/api/run", { id }).catch((e) => ({ id, failed: e.message }))));
    fill(errors, pages.filter((p) => p.failed).map((p) => el("div", { class: "error" }, p.failed)));
    const runs = pages.filter((p) => !p.failed);
    patch(facts, runs.map((p) => [
      el("tr", { "data-run": p.row.id },
        el("td", {}, el("span", { class: "swatch", style: "background:" + colorFor(p.row.id) }), p.row.name),
        el("td", {}, p.row.algo), el("td", { class: "hide-narrow" }, p.row.env),
        el("td", { class: "num", "data-col": "env_steps", "data-value": p.row.env_steps ?? "" }, fmt(p.row.env_steps)),
        el("td", { class: "num", "data-col": "return", "data-value": p.row.return_mean ?? "" }, fmt(p.row.return_mean, 2)),
        el("td", { class: "num hide-narrow", "data-col": "summary_return", "data-value": p.summary?.final_episode_return_mean ?? "" },
          fmt(p.summary?.final_episode_return_mean, 2)),
        el("td", { class: "num hide-narrow" }, fmtSeconds(p.row.wall_seconds)),
        el("td", {}, badge(p.row.state), p.row.cluster ? [" ", link("#/cluster/" + encodeURIComponent(p.row.id), "cluster")] : null)),
      p.row.error ? el("tr", { "data-error-for": p.row.id }, el("td", { class: "error-cell", colspan: 8 }, p.row.error)) : null,
    ]).flat());
    const line = (p, x, y) => ({ name: p.row.name, color: colorFor(p.row.id), points: column(p.metrics, x, y) });
    draw(panel("Return vs env steps"), runs.map((p) => line(p, "env_steps", "episode_return_mean")), { xLabel: "env steps" });
    draw(panel("Return vs wall time"), runs.map((p) => line(p, "wall_seconds", "episode_return_mean")), { xLabel: "seconds" });
    // The rest in the order the runs log them (losses, then the algorithm's diagnostics).
    const names = [...new Set(runs.flatMap((p) => p.metrics.columns))].filter((c) => !STEP_COLUMNS.has(c));
    for (const name of names) {
      draw(panel(name), runs.map((p) => line(p, "env_steps", name)), { xLabel: "env steps", yFormat: (v) => fmt(v) });
    }
  };
}

// A distributed run now: every server shard, worker, learner and replay, alive or gone.
function clusterPage(id) {
  const cards = el("div", { class: "cards" });
  const body = el("tbody", { id: "members" });
  const errors = el("div");
  const returns = chartPanel("Return vs env steps");
  const staleness = chartPanel("Staleness or parameter lag");
  const card = (label) => {
    const value = el("div", { class: "value", "data-card": label });
    cards.append(el("div", { class: "panel card" }, el("div", { class: "label" }, label), value));
    return value;
  };
  const throughput = card("Env steps / s"), alive = card("Alive"), steps = card("Env steps"), state = card("Run");
  fill(document.getElementById("app"),
    el("h1", {}, id), errors, cards,
    el("h2", {}, "Members"),
    el("div", { class: "panel scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Role"), el("th", {}, "Name"), el("th", {}, "Host"), el("th", {}, "State"),
        el("th", { class: "num" }, "Env steps"), el("th", { class: "num" }, "Env steps/s"), el("th", { class: "num" }, "Last push"),
        el("th", { class: "num", title: "A worker's last push: versions behind; an actor: its mean parameter lag" }, "Staleness / lag"),
        el("th", { class: "num" }, "Version"), el("th", {}, "Detail"))),
      body)),
    el("h2", {}, "Curves"),
    el("div", { class: "charts" }, returns.panel, staleness.panel));
  setCrumbs(link("#/", "Runs"), link(runHash([id]), id), "cluster");
  return async () => {
    const page = await api("/api/cluster", { id });
    const members = page.cluster.members;
    fill(errors, [page.row.error, ...page.cluster.problems].filter(Boolean).map((e) => el("div", { class: "error" }, e)),
      members.length ? [] : [el("div", { class: "empty" }, "No cluster status yet: servers write it every half second once workers report.")]);
    fill(throughput, fmt(Math.round(page.cluster.env_steps_per_s)));
    fill(alive, `${members.filter((m) => m.alive).length} / ${members.length}`);
    fill(steps, fmt(page.row.env_steps));
    fill(state, badge(page.row.state));
    // Learners and replays take no env steps of their own.
    const acting = (m) => m.role !== "learner" && m.role !== "replay";
    patch(body, members.map((m) => el("tr", { "data-member": m.name },
      el("td", {}, m.role), el("td", {}, m.name), el("td", {}, m.host),
      el("td", { "data-col": "state" }, badge(m.alive ? "alive" : "gone"), m.alive ? "" : ` ${fmtSeconds(m.seen_ago_s)} ago`),
      el("td", { class: "num", "data-col": "env_steps", "data-value": m.env_steps }, acting(m) ? fmt(m.env_steps) : "–"),
      el("td", { class: "num", "data-col": "rate", "data-value": m.env_steps_per_s }, acting(m) ? fmt(Math.round(m.env_steps_per_s)) : "–"),
      el("td", { class: "num" }, m.push_ago_s === null ? "–" : fmtSeconds(m.push_ago_s) + " ago"),
      el("td", { class: "num" }, fmt(m.staleness)),
      el("td", { class: "num" }, fmt(m.version)),
      el("td", { class: "hint detail" }, m.detail ?? ""))));
    const color = colorFor(page.row.id);
    draw(returns.plot, [{ name: page.row.name, color, points: column(page.metrics, "env_steps", "episode_return_mean") }], { xLabel: "env steps" });
    const lag = ["ps/staleness_mean", "apex/parameter_lag", "impala/parameter_lag"].find((c) => page.metrics.columns.includes(c));
    draw(staleness.plot, [{ name: lag || page.row.name, color, points: lag ? column(page.metrics, "env_steps", lag) : [] }],
      { xLabel: "env steps", yFormat: (v) => fmt(v), empty: "no staleness logged" });
  };
}

// A tuning study: its trials (sortable), every trial's curve, the metric against each tuned
// key, and the best trial's config to copy.
function studyPage(id) {
  let sortKey = "value", ascending = null, last = null;
  const head = el("tr"), body = el("tbody", { id: "trials" });
  const errors = el("div"), cards = el("div", { class: "cards" });
  const curves = chartPanel("Metric of every trial vs env steps");
  const keyCharts = el("div", { class: "charts" });
  const keyPanels = new Map();
  const config = el("pre", { class: "config", id: "best-config" }, "");
  const copied = el("span", { class: "hint", id: "copy-status" });
  const copy = el("button", { id: "copy-best", onclick: () => copyText(config.textContent, copied) }, "Copy best config");
  const card = (label) => {
    const value = el("div", { class: "value", "data-card": label });
    cards.append(el("div", { class: "panel card" }, el("div", { class: "label" }, label), value));
    return value;
  };
  const metricCard = card("Metric"), trialsCard = card("Trials"), bestCard = card("Best");
  fill(document.getElementById("app"),
    el("h1", {}, id), errors, cards,
    el("h2", {}, "Trials"),
    el("div", { class: "panel scroll" }, el("table", {}, el("thead", {}, head), body)),
    el("h2", {}, "Curves"),
    el("div", { class: "charts" }, curves.panel),
    el("h2", {}, "Metric vs each hyperparameter"),
    keyCharts,
    el("h2", {}, "Best config"),
    el("div", { class: "toolbar" }, copy, copied),
    config);
  setCrumbs(link("#/", "Runs"), "study");

  // A trial's colour in the table and the charts; the best trial is drawn dark and thick.
  // The metric sorts best first unless asked otherwise; other columns ascending.
  const sortAscending = () => ascending ?? (sortKey === "value" ? last.row.mode === "min" : true);
  const trialColor = (id) => (last.best && last.best.trial === id ? BEST_COLOR : colorFor("trial" + id));
  const render = () => {
    const s = last;
    const dir = sortAscending();
    const value = (t) => (sortKey === "value" ? t.value : sortKey in t ? t[sortKey] : t.positions[sortKey] ?? t.params[sortKey]);
    const trials = [...s.trials].sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (dir ? 1 : -1);
    });
    // The header cells stay (a click must not land on a cell the refresh just replaced);
    // only their sort marks change.
    const columns = [["id", "Trial", true], ["state", "State"], ["steps", "Env steps", true], ["value", s.row.metric, true],
      ...s.keys.map((k) => [k.name, k.name])];
    if (head.children.length !== columns.length || head.lastChild.dataset.sort !== columns[columns.length - 1][0]) {
      fill(head, columns.map(([key, label]) => el("th", {
        "data-sort": key,
        onclick: () => { ascending = key === sortKey ? !sortAscending() : null; sortKey = key; render(); },
      }, label)));
    }
    for (const [i, [key, , num]] of columns.entries()) {
      head.children[i].className = "sortable" + (num ? " num" : "") + (key === sortKey ? " sorted" + (dir ? " asc" : "") : "");
    }
    patch(body, trials.map((t) => [
      el("tr", { "data-trial": t.id },
        el("td", { class: "num" }, el("span", { class: "swatch", style: "background:" + trialColor(t.id) }), t.id),
        el("td", {}, badge(t.state)), el("td", { class: "num" }, fmt(t.steps)),
        el("td", { class: "num", "data-col": "value", "data-value": t.value ?? "" }, fmt(t.value, 2)),
        s.keys.map((k) => el("td", {}, paramText(t.params[k.name])))),
      t.error ? el("tr", {}, el("td", { class: "error-cell", colspan: 4 + s.keys.length }, t.error)) : null,
    ]).flat());
  };

  return async () => {
    const s = await api("/api/study", { id });
    last = s;
    fill(errors, s.row.error ? [el("div", { class: "error" }, s.row.error)] : []);
    fill(metricCard, s.row.metric ? `${s.row.metric} (${s.row.mode})` : "–");
    fill(trialsCard, `${s.row.trials} (${s.row.running} running)`);
    fill(bestCard, s.best ? `${fmt(s.best.value, 2)} · trial ${s.best.trial}` : "–");
    render();
    const best = s.best ? s.best.trial : null;
    draw(curves.plot, s.trials.map((t) => ({
      name: "trial " + t.id, color: trialColor(t.id), width: best === t.id ? 3 : 1.4, points: s.curves[t.id] || [],
    })), { xLabel: "env steps" });
    for (const key of s.keys) {
      if (!keyPanels.has(key.name)) {
        const p = chartPanel(key.name + (key.scale === "log" ? " (log10)" : ""));
        keyPanels.set(key.name, p);
        keyCharts.append(p.panel);
      }
      const points = s.trials.filter((t) => t.value !== null && key.name in t.positions);
      draw(keyPanels.get(key.name).plot, points.map((t) => ({
        name: "trial " + t.id, color: trialColor(t.id), dots: true,
        width: best === t.id ? 6 : 4, points: [[t.positions[key.name], t.value]],
      })), {
        xCategories: key.scale === "categorical" ? key.labels : null,
        xFormat: key.scale === "log" ? (v) => "1e" + v.toFixed(1) : short, yFormat: (v) => fmt(v),
      });
    }
    const text = s.best ? s.best.config : "No trial has a result yet.";
    if (config.textContent !== text) config.textContent = text;
  };
}

// A parameter's value as the table shows it: long floats to four significant digits.
function paramText(text) {
  if (text === undefined) return "–";
  const x = Number(text);
  return Number.isFinite(x) && !Number.isInteger(x) && text.replace(/^-?0\.0*/, "").length > 6 ? x.toPrecision(4) : text;
}

async function copyText(text, status) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    // Without the clipboard API (a page not served from a secure origin): select and copy.
    const area = el("textarea", { style: "position:fixed;opacity:0" });
    area.value = text;
    document.body.append(area);
    area.select();
    copied = document.execCommand("copy");
    area.remove();
  }
  status.textContent = copied ? "copied" : "the browser refused: select the config and copy it";
  setTimeout(() => (status.textContent = ""), 4000);
}

// ---- routing and the live loop -------------------------------------------------------------

let refresh = null, generation = 0, busy = false;

function route() {
  const [, page, arg] = location.hash.match(/^#\/(run|cluster|study)\/(.+)$/) || [];
  const ids = (arg || "").split(",").map(decodeURIComponent);
  generation += 1;
  refresh = page === "run" ? runPage(ids) : page === "cluster" ? clusterPage(ids[0]) : page === "study" ? studyPage(ids[0]) : runsPage();
  tick();
}

// Refreshes the page; a failure (the server gone, a run deleted) shows on the page and the
// loop keeps trying.
async function tick() {
  if (busy) return;
  busy = true;
  const mine = generation;
  const live = document.getElementById("live");
  try {
    await refresh();
    live.classList.remove("stale");
    live.textContent = "live · " + new Date().toLocaleTimeString();
    document.getElementById("page-error")?.remove();
  } catch (e) {
    if (mine === generation) {
      live.classList.add("stale");
      let box = document.getElementById("page-error");
      if (!box) {
        box = el("div", { class: "error", id: "page-error" });
        document.getElementById("app").prepend(box);
      }
      box.textContent = e.message;
    }
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", route);
let resizeTimer = null;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(tick, 150); });
setInterval(tick, POLL_MS);
route();
