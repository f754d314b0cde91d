// Browser code shared by the HTML report and the web UI: a tiny DOM builder (text is always inserted as text,
// never as HTML, so observations cannot inject markup), number formats, Chart.js helpers, the issues panel, the
// trajectory conversation view and the token heat-map. Plain ES2020, inlined into both pages as it is.

"use strict";
function h(tag, attrs) {
  var el = document.createElement(tag);
  if (attrs) for (var k in attrs) {
    var v = attrs[k];
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.slice(0, 2) === "on" && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "open" || k === "selected" || k === "disabled") { if (v) el.setAttribute(k, ""); }
    else el.setAttribute(k, String(v));
  }
  for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
  return el;
}
function append(el, kid) {
  if (kid === null || kid === undefined || kid === false) return;
  if (Array.isArray(kid)) { kid.forEach(function (k) { append(el, k); }); return; }
  el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
}
function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
// links to files are built server-side as encoded relative paths (./… or ../…); anything else is not linked
function isRelativeHref(href) { return typeof href === "string" && /^\.\.?\//.test(href); }

var PALETTE = ["#0969da", "#e16f24", "#1a7f37", "#8250df", "#cf222e", "#bf8700", "#1b7c83", "#d1246f", "#57606a", "#6e7781"];
function color(i, alpha) {
  var c = PALETTE[i % PALETTE.length];
  if (alpha === undefined) return c;
  var n = parseInt(c.slice(1), 16);
  return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
}
var EXIT_COLORS = { submitted: "#1a7f37", step_limit: "#bf8700", token_limit: "#e16f24", format_errors: "#8250df", timeout: "#cf222e", error: "#a40e26", unknown: "#8c959f" };
function exitColor(s, i) { return EXIT_COLORS[s] || (String(s).indexOf("exception") === 0 ? "#82071e" : color(i + 3)); }

function isNum(x) { return typeof x === "number" && isFinite(x); }
function fmt(x, d) { return isNum(x) ? x.toFixed(d === undefined ? 2 : d) : "—"; }
function fmtPct(x, d) { return isNum(x) ? (100 * x).toFixed(d === undefined ? 1 : d) : "—"; }
function fmtInt(x) { return isNum(x) ? Math.round(x).toLocaleString("en-US") : "—"; }
function fmtSec(s) {
  if (!isNum(s)) return "—";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  var m = Math.floor(s / 60), r = Math.round(s % 60);
  if (m < 60) return m + "m " + (r < 10 ? "0" : "") + r + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}
function fmtMs(ms) { return isNum(ms) ? (ms < 1000 ? Math.round(ms) + " ms" : fmtSec(ms / 1000)) : "—"; }
function fmtBytes(b) {
  if (!isNum(b)) return "—";
  var u = ["B", "KB", "MB", "GB", "TB"], i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
}
function rewardSpan(r) {
  return h("span", { class: r >= 1 ? "reward-1" : r <= 0 ? "reward-0" : "" }, isNum(r) ? (Math.round(r * 1000) / 1000).toString() : "—");
}
function exitBadge(s) {
  var cls = s === "submitted" ? "ok" : (s === "error" || s === "timeout" || String(s).indexOf("exception") === 0) ? "bad" : "warn";
  return h("span", { class: "badge " + cls }, s);
}

function issuesPanel(issues, title) {
  if (!issues || !issues.length) return null;
  return h("section", { class: "issues", "data-testid": "issues" },
    h("h3", null, (title || "Issues") + " (" + issues.length + ")"),
    h("ul", null, issues.map(function (i) { return h("li", null, h("code", null, i.file), " — ", i.problem); })));
}

// ---- charts (Chart.js, loaded as the UMD global "Chart")
var charts = [];
function destroyCharts() { charts.forEach(function (c) { c.destroy(); }); charts = []; }
function chartCard(parent, title, config, note) {
  var canvas = h("canvas", { "aria-label": title, role: "img" });
  var card = h("div", { class: "card chart-card", "data-chart": title }, h("h3", null, title), h("div", { class: "chart-box" }, canvas), note ? h("div", { class: "note" }, note) : null);
  parent.appendChild(card);
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  config.options.plugins = Object.assign({ legend: { position: "bottom", labels: { boxWidth: 12 } } }, config.options.plugins || {});
  if (typeof Chart === "undefined") { card.appendChild(h("div", { class: "empty" }, "Chart.js did not load")); return null; }
  var c = new Chart(canvas, config);
  charts.push(c);
  return c;
}
function axis(title, extra) { return Object.assign({ title: { display: !!title, text: title }, grid: { color: "#eaeef2" } }, extra || {}); }
/** Histogram bins over [lo, hi] */
function histogram(values, bins, lo, hi) {
  var counts = new Array(bins).fill(0);
  var w = (hi - lo) / bins || 1;
  values.forEach(function (v) { if (!isNum(v)) return; var b = Math.floor((v - lo) / w); if (b >= bins) b = bins - 1; if (b < 0) b = 0; counts[b]++; });
  return counts;
}

// ---- trajectory conversation
function stripToolCall(s) {
  return String(s || "").replace(/<tool_call>[\s\S]*?(<\/tool_call>|$)/g, "").trim();
}
function heatColor(lp) {
  // probability 1 → white, 0.5 → yellow, ~0 → red
  var p = Math.exp(Math.max(-30, Math.min(0, lp)));
  var r = 255, g, b;
  if (p > 0.5) { var t = (p - 0.5) / 0.5; g = Math.round(223 + 32 * t); b = Math.round(93 + 162 * t); }
  else { var u = p / 0.5; r = Math.round(248 + 7 * u); g = Math.round(81 + 142 * u); b = Math.round(73 + 20 * u); }
  return "rgb(" + r + "," + g + "," + b + ")";
}
function heatLegend(label) {
  return h("div", { class: "heat-legend" }, h("span", null, "p ≈ 0"), h("span", { class: "bar" }), h("span", null, "p = 1"), label ? h("span", null, " · " + label) : null);
}
/** tokens: [{text, lp, obs?, masked?, title?}] */
function heatmap(tokens, limit) {
  var box = h("div", { class: "heatmap" });
  var shown = 0;
  function more(n) {
    var end = Math.min(tokens.length, shown + n);
    var frag = document.createDocumentFragment();
    for (var i = shown; i < end; i++) {
      var t = tokens[i];
      var s = document.createElement("span");
      s.textContent = t.text;
      if (t.obs) s.className = "obs";
      else { s.style.background = heatColor(t.lp); if (t.masked) s.className = "masked"; }
      s.title = t.title || (t.obs ? "observation" : "logprob " + (isNum(t.lp) ? t.lp.toFixed(3) : "?"));
      frag.appendChild(s);
    }
    shown = end;
    if (btn.parentNode) btn.parentNode.removeChild(btn);
    box.appendChild(frag);
    if (shown < tokens.length) { btn.textContent = "show " + Math.min(n, tokens.length - shown) + " more of " + (tokens.length - shown) + " tokens"; box.appendChild(btn); }
  }
  var btn = h("button", { type: "button", onclick: function () { more(limit || 3000); } });
  more(limit || 3000);
  return box;
}

function trajectoryView(t, issues, raw) {
  var wrap = h("div", { class: "trajectory", "data-testid": "trajectory" });
  append(wrap, issuesPanel(issues, "Problems in this trajectory"));
  if (!t && raw) { wrap.appendChild(h("pre", { class: "obs", style: { maxHeight: "none" } }, raw)); return wrap; }
  if (!t) { wrap.appendChild(h("div", { class: "empty" }, "No readable trajectory.")); return wrap; }
  var task = t.task || {}, model = t.model || {}, usage = t.usage || {}, limits = t.limits || {};
  var steps = Array.isArray(t.steps) ? t.steps : [];
  wrap.appendChild(h("div", { class: "row" },
    stat("exit status", exitBadge(t.exitStatus || "unknown")),
    stat("turns", String(steps.length)),
    stat("duration", fmtMs(t.durationMs)),
    stat("prompt tokens", fmtInt(usage.promptTokens)),
    stat("completion tokens", fmtInt(usage.completionTokens)),
    stat("final context", fmtInt(usage.contextTokens))));
  wrap.appendChild(h("dl", { class: "kv card" },
    h("dt", null, "task"), h("dd", null, task.name || "—"),
    h("dt", null, "model"), h("dd", null, (model.name || "—") + (isNum(model.temperature) ? "  (T=" + model.temperature + ", top-p=" + model.topP + ")" : "")),
    h("dt", null, "agent"), h("dd", null, t.agent ? (t.agent.name + " " + t.agent.version + " · " + t.agent.profile + " profile") : "—"),
    h("dt", null, "sandbox"), h("dd", null, t.sandbox ? (t.sandbox.backend + " · " + t.sandbox.image) : "—"),
    h("dt", null, "limits"), h("dd", null, limits.maxSteps !== undefined ? ("steps " + limits.maxSteps + " · tokens " + fmtInt(limits.maxTotalTokens) + " · command timeout " + limits.commandTimeoutSec + " s") : "—"),
    t.error ? h("dt", null, "error") : null, t.error ? h("dd", { class: "reward-0" }, t.error) : null));
  if (task.instruction) wrap.appendChild(h("details", { class: "card" }, h("summary", null, "Task instruction (" + task.instruction.length + " chars)"), h("pre", null, task.instruction)));
  steps.forEach(function (s, i) { wrap.appendChild(turnView(s, i)); });
  if (!steps.length) wrap.appendChild(h("div", { class: "empty" }, "This trajectory has no steps."));
  return wrap;
}
function stat(k, v) { return h("div", { class: "stat" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k)); }
function turnView(s, i) {
  var m = s.model || {};
  var u = m.usage || {};
  var body = h("div", { class: "turn-body" });
  if (m.reasoning) body.appendChild(h("details", { class: "thinking" }, h("summary", null, "thinking (" + m.reasoning.length + " chars)"), h("pre", null, m.reasoning)));
  var text = stripToolCall(m.content);
  if (text) body.appendChild(h("pre", { class: "text" }, text));
  if (Array.isArray(m.logprobs) && m.logprobs.length) {
    var toks = m.logprobs.map(function (x) { return { text: x.token, lp: x.logprob }; });
    var mean = toks.reduce(function (a, x) { return a + x.lp; }, 0) / toks.length;
    body.appendChild(h("details", null, h("summary", null, "token logprobs (" + toks.length + " tokens, mean " + mean.toFixed(3) + ")"), heatLegend(), heatmap(toks, 2000)));
  }
  var calls = [];
  if (s.toolCall) calls.push(s.toolCall);
  if (Array.isArray(s.extraCalls)) calls = calls.concat(s.extraCalls);
  var execs = Array.isArray(s.executions) ? s.executions : [];
  if (execs.length) execs.forEach(function (e) { body.appendChild(execView(e)); });
  else calls.forEach(function (c) { body.appendChild(h("pre", { class: "cmd" }, "$ " + c.command)); body.appendChild(h("div", { class: "muted small" }, "not executed")); });
  if (s.formatError) body.appendChild(h("div", null, h("span", { class: "badge warn" }, "format error"), " ", s.formatError));
  return h("div", { class: "turn", "data-step": i },
    h("div", { class: "turn-head" }, h("b", null, "Turn " + ((isNum(s.index) ? s.index : i) + 1)),
      h("span", null, "model " + fmtMs(m.latencyMs)),
      h("span", null, fmtInt(u.promptTokens) + " prompt / " + fmtInt(u.completionTokens) + " completion tokens"),
      m.finishReason && m.finishReason !== "stop" ? h("span", { class: "badge warn" }, m.finishReason) : null,
      m.retries ? h("span", null, m.retries + " retries") : null,
      s.startedAt ? h("span", { style: { marginLeft: "auto" } }, String(s.startedAt).replace("T", " ").replace(/\.\d+Z$/, "Z")) : null),
    body);
}
function execView(e) {
  var code = isNum(e.exitCode) ? e.exitCode : "?";
  var obs = String(e.observation || "");
  return h("div", { class: "exec" },
    h("pre", { class: "cmd" }, "$ " + e.command),
    h("div", { class: "exec-head" },
      h("span", { class: "badge " + (e.timedOut ? "bad" : code === 0 ? "ok" : "bad") }, e.timedOut ? "timed out" : "exit " + code),
      h("span", null, fmtMs(e.durationMs)),
      e.outputTruncated ? h("span", { class: "badge warn" }, "output truncated") : null),
    obs ? h("pre", { class: "obs" }, obs) : h("div", { class: "muted small" }, "(no output)"));
}
