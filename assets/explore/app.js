// Browser code of the web UI: a hash router over the JSON APIs of src/explore/server.ts. Runs after common.js.
// Every failed request ends up in an issues panel on the page, never in a blank page. Plain ES2020, inlined
// into the page by the server as it is.

(function () {
  var pageEl = document.getElementById("page");
  var renderToken = 0;
  var pollTimer = null;

  function api(path) {
    return fetch(path).then(function (res) {
      return res.text().then(function (text) {
        var body;
        try { body = JSON.parse(text); } catch (e) { throw new Error("server answered " + res.status + " with non-JSON for " + path); }
        if (!res.ok) throw new Error(body && body.error ? body.error : "HTTP " + res.status);
        return body;
      });
    }, function (err) { throw new Error("cannot reach the explorer server (" + err.message + ")"); });
  }
  function qs(o) {
    var parts = [];
    for (var k in o) if (o[k] !== undefined && o[k] !== null && o[k] !== "") parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(o[k]));
    return parts.join("&");
  }
  function link(hash, text, attrs) { return h("a", Object.assign({ href: "#" + hash }, attrs || {}), text); }
  function route(parts) { return "/" + parts.map(encodeURIComponent).join("/"); }
  function go(parts) { location.hash = route(parts); }

  function start() {
    var token = ++renderToken;
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    destroyCharts();
    clear(pageEl).appendChild(h("div", { class: "empty" }, "Loading…"));
    var parts = (location.hash.replace(/^#\/?/, "") || "").split("/").filter(function (p) { return p !== ""; }).map(decodeURIComponent);
    var view = parts[0] || "";
    var p;
    if (view === "") p = overview(token);
    else if (view === "job") p = jobPage(token, parts[1]);
    else if (view === "trial") p = trialPage(token, parts[1], parts[2]);
    else if (view === "rl") p = rlPage(token, parts[1]);
    else if (view === "file") p = filePage(token, parts[1]);
    else if (view === "sample") p = samplePage(token, parts[1], Number(parts[2]), Number(parts[3]));
    else p = Promise.reject(new Error("unknown page #" + location.hash.slice(1)));
    Promise.resolve(p).catch(function (err) {
      if (token !== renderToken) return;
      clear(pageEl);
      pageEl.appendChild(h("h1", null, "Something went wrong"));
      pageEl.appendChild(issuesPanel([{ file: location.hash || "#/", problem: err.message }]));
      pageEl.appendChild(h("p", null, link("/", "back to the overview")));
    });
  }
  function current(token) { return token === renderToken; }
  function table(headers, rows) {
    return h("div", { class: "table-wrap" }, h("table", null,
      h("thead", null, h("tr", null, headers.map(function (x) { return h("th", { class: x[1] || null }, x[0]); }))),
      h("tbody", null, rows)));
  }

  // ---------------------------------------------------------------- overview
  function overview(token) {
    return api("/api/sources").then(function (d) {
      if (!current(token)) return;
      document.getElementById("root-dir").textContent = d.root;
      clear(pageEl);
      pageEl.appendChild(h("h1", null, "Overview"));
      pageEl.appendChild(h("div", { class: "sub" }, d.root + " · " + d.jobs.length + " job dirs · " + d.rollouts.length + " rollout sets"));
      append(pageEl, issuesPanel(d.issues));
      if (d.jobs.length) {
        pageEl.appendChild(h("h2", null, "Jobs"));
        pageEl.appendChild(table([["job"], ["benchmark"], ["model"], ["trials", "num"], ["pending", "num"], ["mean reward", "num"], ["issues", "num"], ["path"]],
          d.jobs.map(function (j) {
            return h("tr", { class: "clickable", "data-job": j.id, onclick: function () { go(["job", j.id]); } },
              h("td", null, link(route(["job", j.id]), j.name)), h("td", null, j.benchmark || "—"), h("td", null, j.model || "—"),
              h("td", { class: "num" }, j.trials === null ? "—" : String(j.trials)), h("td", { class: "num" }, j.pending === null ? "—" : String(j.pending)),
              h("td", { class: "num" }, fmt(j.meanReward, 3)), h("td", { class: "num" }, j.issues ? h("span", { class: "badge warn" }, String(j.issues)) : j.issues === null ? "—" : "0"),
              h("td", { class: "muted small" }, j.dir));
          })));
      }
      if (d.rollouts.length) {
        pageEl.appendChild(h("h2", null, "RL rollout sets"));
        pageEl.appendChild(table([["run"], ["shards", "num"], ["trainer logprob files", "num"], ["samples", "num"], ["index"], ["path"]],
          d.rollouts.map(function (r) {
            return h("tr", { class: "clickable", "data-run": r.id, onclick: function () { go(["rl", r.id]); } },
              h("td", null, link(route(["rl", r.id]), r.run)), h("td", { class: "num" }, String(r.shards)), h("td", { class: "num" }, String(r.trainerFiles)),
              h("td", { class: "num" }, r.samples === null ? "—" : fmtInt(r.samples)), h("td", null, r.status), h("td", { class: "muted small" }, r.dir));
          })));
      }
      if (!d.jobs.length && !d.rollouts.length) pageEl.appendChild(h("div", { class: "empty card" }, "Nothing to show yet: point the explorer at a directory with job dirs (tmax run / Harbor) or *_rollouts_NNNNNN.jsonl shards."));
    });
  }

  // ---------------------------------------------------------------- job
  function jobPage(token, id) {
    return api("/api/job?" + qs({ id: id })).then(function (j) {
      if (!current(token)) return;
      clear(pageEl);
      pageEl.appendChild(h("div", { class: "small" }, link("/", "overview"), " / job"));
      pageEl.appendChild(h("h1", null, j.name));
      pageEl.appendChild(h("div", { class: "sub" }, [j.benchmark || "unknown benchmark", j.model || "unknown model", j.k ? "k = " + j.k : null, j.dir].filter(Boolean).join(" · ")));
      append(pageEl, issuesPanel(j.issues));
      var trials = j.trials;
      var solved = trials.filter(function (t) { return t.reward >= 1; }).length;
      var mean = trials.length ? trials.reduce(function (a, t) { return a + t.reward; }, 0) / trials.length : NaN;
      pageEl.appendChild(h("div", { class: "row" }, stat("trials", String(trials.length)), stat("mean reward", fmt(mean, 3)), stat("solved", solved + " / " + trials.length),
        stat("exceptions", String(trials.filter(function (t) { return t.exception; }).length)), stat("pending", String(j.pending))));
      if (!trials.length) return;
      var grid = h("div", { class: "grid" });
      pageEl.appendChild(h("h2", null, "Charts"));
      pageEl.appendChild(grid);
      var tasks = []; trials.forEach(function (t) { if (tasks.indexOf(t.task) < 0) tasks.push(t.task); }); tasks.sort();
      function perTask(field) { return tasks.map(function (k) { var s = trials.filter(function (t) { return t.task === k && isNum(t[field]); }); return s.length ? s.reduce(function (a, t) { return a + t[field]; }, 0) / s.length : null; }); }
      chartCard(grid, "Pass rate per task", { type: "bar", data: { labels: tasks, datasets: [{ label: "mean reward (%)", backgroundColor: color(0, 0.8), data: perTask("reward").map(function (x) { return x === null ? null : 100 * x; }) }] },
        options: { plugins: { legend: { display: false } }, scales: { y: axis("mean reward (%)", { min: 0, max: 100 }) } } });
      var statuses = []; trials.forEach(function (t) { if (statuses.indexOf(t.exitStatus) < 0) statuses.push(t.exitStatus); }); statuses.sort();
      chartCard(grid, "Exit status", { type: "doughnut", data: { labels: statuses, datasets: [{ data: statuses.map(function (s) { return trials.filter(function (t) { return t.exitStatus === s; }).length; }), backgroundColor: statuses.map(exitColor) }] },
        options: { plugins: { legend: { position: "right" } } } });
      var durs = trials.map(function (t) { return t.durationSec; }).filter(isNum), maxD = Math.max.apply(null, durs.concat([1])), labels = [];
      for (var i = 0; i < 10; i++) labels.push(fmtSec(i * maxD / 10) + "–" + fmtSec((i + 1) * maxD / 10));
      chartCard(grid, "Trial durations", { type: "bar", data: { labels: labels, datasets: [{ label: "trials", backgroundColor: color(2, 0.8), data: histogram(durs, 10, 0, maxD) }] },
        options: { plugins: { legend: { display: false } }, scales: { y: axis("trials", { beginAtZero: true, ticks: { precision: 0 } }), x: axis("wall time") } } });
      chartCard(grid, "Token usage per task", { type: "bar", data: { labels: tasks, datasets: [
        { label: "input", stack: "t", backgroundColor: color(0, 0.85), data: perTask("inputTokens") },
        { label: "output", stack: "t", backgroundColor: color(1, 0.85), data: perTask("outputTokens") }] },
        options: { scales: { y: axis("tokens per trial (mean)", { stacked: true, beginAtZero: true }), x: axis("", { stacked: true }) } } });

      pageEl.appendChild(h("h2", null, "Trials"));
      var fTask = h("input", { placeholder: "substring", "data-filter": "task" });
      var fExit = h("select", { "data-filter": "exit" }, h("option", { value: "" }, "all"), statuses.map(function (s) { return h("option", { value: s }, s); }));
      var fReward = h("select", { "data-filter": "reward" }, h("option", { value: "" }, "all"), h("option", { value: "1" }, "solved (1)"), h("option", { value: "0" }, "failed (< 1)"));
      var count = h("span", { class: "muted small" });
      pageEl.appendChild(h("div", { class: "filters" }, h("label", null, "task", fTask), h("label", null, "exit status", fExit), h("label", null, "reward", fReward), count));
      var rows = trials.map(function (t) {
        return h("tr", { class: "clickable", "data-trial": t.trial, onclick: function () { go(["trial", id, t.trial]); } },
          h("td", null, link(route(["trial", id, t.trial]), t.task)), h("td", { class: "num" }, t.attempt === null ? "—" : String(t.attempt)),
          h("td", { class: "num" }, rewardSpan(t.reward)), h("td", null, exitBadge(t.exitStatus)), h("td", { class: "num" }, t.nSteps === null ? "—" : String(t.nSteps)),
          h("td", { class: "num" }, fmtSec(t.durationSec)), h("td", { class: "num" }, fmtInt(t.inputTokens)), h("td", { class: "num" }, fmtInt(t.outputTokens)),
          h("td", { class: "small muted" }, t.hasTrajectory ? "trajectory" : (t.exception ? t.exception.slice(0, 80) : "no trajectory")));
      });
      pageEl.appendChild(table([["task"], ["attempt", "num"], ["reward", "num"], ["exit status"], ["turns", "num"], ["duration", "num"], ["input tokens", "num"], ["output tokens", "num"], [""]], rows));
      function apply() {
        var q = fTask.value.toLowerCase(), shown = 0;
        trials.forEach(function (t, i) {
          var ok = (!q || t.task.toLowerCase().indexOf(q) >= 0) && (!fExit.value || t.exitStatus === fExit.value) && (fReward.value === "" || (fReward.value === "1" ? t.reward >= 1 : t.reward < 1));
          rows[i].style.display = ok ? "" : "none";
          if (ok) shown++;
        });
        count.textContent = shown + " of " + trials.length + " trials";
      }
      [fTask, fExit, fReward].forEach(function (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); });
      apply();
    });
  }

  // ---------------------------------------------------------------- trial
  function trialPage(token, jobId, trialName) {
    return api("/api/trial?" + qs({ job: jobId, trial: trialName })).then(function (d) {
      if (!current(token)) return;
      var t = d.trial;
      clear(pageEl);
      pageEl.appendChild(h("div", { class: "small" }, link("/", "overview"), " / ", link(route(["job", jobId]), d.job), " / trial"));
      pageEl.appendChild(h("h1", null, t.task + (t.attempt === null ? "" : " · attempt " + t.attempt)));
      pageEl.appendChild(h("div", { class: "sub" }, t.model + " · " + t.benchmark + " · reward ", rewardSpan(t.reward), " · ", exitBadge(t.exitStatus), " · ", fmtSec(t.durationSec) + " total, agent " + fmtSec(t.agentSec)));
      if (t.exception) pageEl.appendChild(h("div", { class: "issues" }, h("h3", null, "Exception"), h("pre", null, t.exception)));
      if (t.tamper) pageEl.appendChild(h("details", { class: t.tamperFindings && t.tamperFindings.length ? "issues" : "card" }, h("summary", null, "tamper report: " + t.tamper),
        h("pre", null, (t.tamperFindings || []).map(function (f) { return f.class + "  " + f.change + "  " + f.path; }).join("\n") || "no writes to integrity-sensitive paths")));
      if (d.trajectory || d.raw || d.issues.length) pageEl.appendChild(trajectoryView(d.trajectory, d.issues, d.raw));
      else pageEl.appendChild(h("div", { class: "empty card" }, "This trial has no agent/trajectory.json (oracle/nop agent, another tool, or the agent never ran)."));
      if (d.verifier !== null) pageEl.appendChild(h("details", { class: "card" }, h("summary", null, "verifier output (test-stdout.txt)"), h("pre", { class: "obs" }, d.verifier)));
    });
  }

  function filePage(token, rel) {
    return api("/api/trajectory-file?" + qs({ path: rel })).then(function (d) {
      if (!current(token)) return;
      clear(pageEl);
      pageEl.appendChild(h("div", { class: "small" }, link("/", "overview"), " / ", h("a", { href: "#", onclick: function (e) { e.preventDefault(); history.back(); } }, "back"), " / trajectory"));
      pageEl.appendChild(h("h1", null, (d.trajectory && d.trajectory.task && d.trajectory.task.name) || rel));
      pageEl.appendChild(h("div", { class: "sub" }, d.path));
      pageEl.appendChild(trajectoryView(d.trajectory, d.issues, d.raw));
    });
  }

  // ---------------------------------------------------------------- RL run
  function rlPage(token, id) {
    return api("/api/rl/steps?" + qs({ id: id })).then(function (d) {
      if (!current(token)) return;
      if (d.status === "indexing") {
        clear(pageEl);
        pageEl.appendChild(h("h1", null, d.run));
        var p = d.progress, frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : 0;
        pageEl.appendChild(h("div", { class: "card", "data-testid": "indexing" }, h("div", null, "Indexing rollouts (one streaming pass; cached afterwards): " + fmtBytes(p.bytesDone) + " of " + fmtBytes(p.bytesTotal)),
          h("div", { class: "progress" }, h("div", { style: { width: (100 * frac).toFixed(1) + "%" } }))));
        pollTimer = setTimeout(function () { if (current(token)) rlPage(token, id).catch(function (e) { if (current(token)) { clear(pageEl); pageEl.appendChild(issuesPanel([{ file: d.dir, problem: e.message }])); } }); }, 300);
        return;
      }
      clear(pageEl);
      pageEl.appendChild(h("div", { class: "small" }, link("/", "overview"), " / rollouts"));
      pageEl.appendChild(h("h1", null, d.run));
      if (d.status === "error") { append(pageEl, issuesPanel(d.issues)); return; }
      pageEl.appendChild(h("div", { class: "sub" }, d.dir + " · " + d.shards + " shard" + (d.shards === 1 ? "" : "s") + " · " + fmtBytes(d.bytes) + " · " + d.trainerFiles + " trainer-logprob files · indexed in " + fmtMs(d.buildMs)));
      append(pageEl, issuesPanel(d.issues));
      var steps = d.steps;
      if (!steps.length) { pageEl.appendChild(h("div", { class: "empty card" }, "No readable rollout records.")); return; }
      var last = steps[steps.length - 1];
      pageEl.appendChild(h("div", { class: "row" }, stat("steps", String(steps.length)), stat("samples", fmtInt(d.samples)), stat("tasks", fmtInt(d.tasks.length)),
        stat("mean reward, first step", fmt(steps[0].meanReward, 3)), stat("mean reward, last step", fmt(last.meanReward, 3))));
      var labels = steps.map(function (s) { return s.step; });
      var grid = h("div", { class: "grid" });
      pageEl.appendChild(h("h2", null, "Across training steps"));
      pageEl.appendChild(grid);
      function line(label, values, i, extra) { return Object.assign({ label: label, data: values, borderColor: color(i), backgroundColor: color(i, 0.15), pointRadius: steps.length > 60 ? 0 : 2, cubicInterpolationMode: "monotone", borderWidth: 2 }, extra || {}); }
      var xAxis = axis("rollout step");
      chartCard(grid, "Mean reward per step", { type: "line", data: { labels: labels, datasets: [line("mean reward", steps.map(function (s) { return s.meanReward; }), 0, { fill: true })] },
        options: { plugins: { legend: { display: false } }, scales: { y: axis("mean reward", { min: 0, max: 1 }), x: xAxis } } }, "Mean reward over all samples of the step.");
      chartCard(grid, "Informative groups per step", { type: "line", data: { labels: labels, datasets: [line("informative groups (%)", steps.map(function (s) { return 100 * s.fracInformative; }), 2, { fill: true })] },
        options: { plugins: { legend: { display: false } }, scales: { y: axis("% of groups", { min: 0, max: 100 }), x: xAxis } } }, "A group is a prompt_idx within a step; informative = its rewards are not all equal (zero-advantage groups teach nothing).");
      chartCard(grid, "Turns per sample", { type: "line", data: { labels: labels, datasets: [line("turns", steps.map(function (s) { return s.meanTurns; }), 3), line("tool calls", steps.map(function (s) { return s.meanToolCalls; }), 5, { borderDash: [4, 3] })] },
        options: { scales: { y: axis("mean per sample", { beginAtZero: true }), x: xAxis } } });
      chartCard(grid, "Tokens per sample", { type: "line", data: { labels: labels, datasets: [line("response tokens", steps.map(function (s) { return s.meanResponseTokens; }), 1), line("model-generated (mask 1)", steps.map(function (s) { return s.meanModelTokens; }), 0)] },
        options: { scales: { y: axis("mean tokens per sample", { beginAtZero: true }), x: xAxis } } });
      var exits = d.exits.slice().sort();
      chartCard(grid, "Exit status per step", { type: "bar", data: { labels: labels, datasets: exits.map(function (e, i) { return { label: e, backgroundColor: exitColor(e, i), data: steps.map(function (s) { return 100 * (s.exitCounts[e] || 0) / s.samples; }) }; }) },
        options: { scales: { y: axis("% of samples", { stacked: true, min: 0, max: 100 }), x: axis("rollout step", { stacked: true }) } } });
      var dsteps = steps.filter(function (s) { return s.meanAbsDiff !== null; });
      if (dsteps.length) {
        chartCard(grid, "DPPO trust region", { type: "line", data: { labels: dsteps.map(function (s) { return s.step; }), datasets: [
          line("masked tokens (%)", dsteps.map(function (s) { return s.fracMasked === null ? null : 100 * s.fracMasked; }), 4, { yAxisID: "y" }),
          line("mean |π − μ|", dsteps.map(function (s) { return s.meanAbsDiff; }), 0, { yAxisID: "y1" })] },
          options: { scales: { y: axis("masked model tokens (%)", { beginAtZero: true, position: "left" }), y1: axis("mean |π − μ|", { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } }), x: xAxis } } },
          "From trainer-logprob files: share of model tokens the DPPO mask drops (δ = 0.1) and the mean total-variation distance between learner π and sampler μ.");
      } else grid.appendChild(h("div", { class: "card chart-card note-card" }, h("h3", null, "DPPO trust region"), h("div", { class: "empty" }, "No trainer-logprob files ({run}_trainer_logprobs_stepNNNNNN.jsonl) for this run.")));

      // samples
      pageEl.appendChild(h("h2", null, "Samples"));
      var fStep = h("select", { "data-filter": "step" }, h("option", { value: "" }, "all"), labels.map(function (s) { return h("option", { value: String(s) }, String(s)); }));
      var fTask = h("input", { placeholder: "substring", "data-filter": "task" });
      var fExit = h("select", { "data-filter": "exit" }, h("option", { value: "" }, "all"), exits.map(function (e) { return h("option", { value: e }, e); }));
      var fMin = h("input", { type: "number", step: "any", placeholder: "min", style: { width: "80px" }, "data-filter": "minReward" });
      var fMax = h("input", { type: "number", step: "any", placeholder: "max", style: { width: "80px" }, "data-filter": "maxReward" });
      var count = h("span", { class: "muted small" });
      pageEl.appendChild(h("div", { class: "filters" }, h("label", null, "step", fStep), h("label", null, "task", fTask), h("label", null, "exit status", fExit),
        h("label", null, "reward ≥", fMin), h("label", null, "reward ≤", fMax), count));
      var body = h("tbody");
      var pager = h("div", { class: "pager" });
      pageEl.appendChild(h("div", { class: "table-wrap" }, h("table", { "data-testid": "sample-table" }, h("thead", null, h("tr", null,
        [["step", "num"], ["sample", "num"], ["group", "num"], ["task"], ["reward", "num"], ["advantage", "num"], ["exit status"], ["turns", "num"], ["response tokens", "num"], ["model tokens", "num"], ["tool errors", "num"]]
          .map(function (x) { return h("th", { class: x[1] || null }, x[0]); }))), body)));
      pageEl.appendChild(pager);
      var offset = 0, limit = 100, seq = 0;
      function load() {
        var my = ++seq;
        api("/api/rl/samples?" + qs({ id: id, step: fStep.value, task: fTask.value, exit: fExit.value, minReward: fMin.value, maxReward: fMax.value, offset: offset, limit: limit })).then(function (r) {
          if (my !== seq || !current(token)) return;
          clear(body);
          r.rows.forEach(function (s) {
            body.appendChild(h("tr", { class: "clickable", "data-sample": s.step + ":" + s.sampleIdx, onclick: function () { go(["sample", id, String(s.step), String(s.sampleIdx)]); } },
              h("td", { class: "num" }, String(s.step)), h("td", { class: "num" }, link(route(["sample", id, String(s.step), String(s.sampleIdx)]), String(s.sampleIdx))), h("td", { class: "num" }, String(s.promptIdx)),
              h("td", null, s.task), h("td", { class: "num" }, rewardSpan(s.reward)), h("td", { class: "num" }, fmt(s.advantage, 3)), h("td", null, exitBadge(s.exit)),
              h("td", { class: "num" }, String(s.turns)), h("td", { class: "num" }, fmtInt(s.responseTokens)), h("td", { class: "num" }, fmtInt(s.modelTokens)), h("td", { class: "num" }, String(s.toolErrors))));
          });
          if (!r.rows.length) body.appendChild(h("tr", null, h("td", { colspan: "11", class: "empty" }, "No samples match.")));
          count.textContent = fmtInt(r.total) + " samples match";
          clear(pager);
          pager.appendChild(h("button", { type: "button", disabled: offset === 0, onclick: function () { offset = Math.max(0, offset - limit); load(); } }, "‹ previous"));
          pager.appendChild(h("span", null, r.total ? (offset + 1) + "–" + Math.min(r.total, offset + limit) + " of " + fmtInt(r.total) : ""));
          pager.appendChild(h("button", { type: "button", disabled: offset + limit >= r.total, onclick: function () { offset += limit; load(); } }, "next ›"));
        }, function (e) { if (current(token)) { clear(body); body.appendChild(h("tr", null, h("td", { colspan: "11" }, issuesPanel([{ file: "/api/rl/samples", problem: e.message }])))); } });
      }
      var debounce = null;
      [fStep, fTask, fExit, fMin, fMax].forEach(function (el) { el.addEventListener("input", function () { clearTimeout(debounce); debounce = setTimeout(function () { offset = 0; load(); }, 200); }); });
      load();
    });
  }

  // ---------------------------------------------------------------- one sample
  function samplePage(token, id, step, idx) {
    return api("/api/rl/sample?" + qs({ id: id, step: step, idx: idx })).then(function (d) {
      if (!current(token)) return;
      clear(pageEl);
      pageEl.appendChild(h("div", { class: "small" }, link("/", "overview"), " / ", link(route(["rl", id]), id.split("::").pop()), " / sample"));
      pageEl.appendChild(h("h1", null, "Step " + step + " · sample " + idx));
      append(pageEl, issuesPanel(d.issues));
      var r = d.record;
      if (!r) return;
      var info = r.request_info || {};
      pageEl.appendChild(h("div", { class: "row" }, stat("reward", rewardSpan(r.reward)), stat("advantage", fmt(r.advantage, 3)), stat("exit status", exitBadge(r.exit_status || r.finish_reason || "unknown")),
        stat("turns", String(r.num_turns)), stat("tool calls", String(info.num_calls)), stat("tool errors", String(info.tool_errors)), stat("timeouts", String(info.timeouts))));
      pageEl.appendChild(h("dl", { class: "kv card" },
        ["task_name", "prompt_idx", "dataset", "policy_version", "finish_reason", "ground_truth", "created_at"].map(function (k) { return [h("dt", null, k), h("dd", null, r[k] === null || r[k] === undefined ? "—" : String(r[k]))]; }),
        h("dt", null, "trajectory"), h("dd", null, d.trajectoryRef ? link(route(["file", d.trajectoryRef]), "open the conversation", { "data-testid": "open-trajectory" }) : (r.trajectory_path ? r.trajectory_path + " (not readable under the explorer's dir)" : "—")),
        h("dt", null, "tokens"), h("dd", null, fmtInt((r.prompt_tokens || []).length) + " prompt · " + fmtInt((r.response_tokens || []).length) + " response, of which " +
          fmtInt((r.response_mask || []).filter(function (m) { return m === 1; }).length) + " model-generated")));

      var outs = Array.isArray(info.tool_outputs) ? info.tool_outputs : [];
      pageEl.appendChild(h("h2", null, "Tool calls (" + outs.length + ")"));
      outs.forEach(function (o, i) {
        var rt = Array.isArray(info.tool_runtimes) ? info.tool_runtimes[i] : null;
        pageEl.appendChild(h("div", { class: "turn" }, h("div", { class: "turn-head" }, h("b", null, "Call " + (i + 1)), h("span", null, isNum(rt) ? fmtSec(rt) : "")),
          h("div", { class: "turn-body" }, o ? h("pre", { class: "obs" }, o) : h("div", { class: "muted small" }, "(no output)"))));
      });
      if (!outs.length) pageEl.appendChild(h("div", { class: "empty card" }, "No tool outputs recorded."));

      var toks = r.response_tokens || [], lps = r.logprobs || [], mask = r.response_mask || [];
      pageEl.appendChild(h("h2", null, "Response tokens"));
      pageEl.appendChild(h("div", { class: "muted small" }, "Token ids (the record holds no text); model-generated tokens coloured by the sampler's probability μ = exp(logprob), observation tokens grey."));
      pageEl.appendChild(heatLegend("hover a token for its logprob"));
      pageEl.appendChild(heatmap(toks.map(function (t, i) { return { text: String(t) + " ", lp: lps[i], obs: mask[i] !== 1 }; }), 3000));

      var tr = d.trainer, dp = d.dppo;
      if (tr && dp) {
        var ids = Array.isArray(tr.token_ids) ? tr.token_ids : [];
        var n = 0, masked = 0, sum = 0;
        var cells = dp.pi.map(function (pi, i) {
          var mu = dp.mu[i], D = Math.abs(pi - mu), model = dp.model[i] === 1, isMasked = dp.masked[i] === 1;
          if (model) { n++; sum += D; if (isMasked) masked++; }
          return { text: String(ids[i] !== undefined ? ids[i] : i) + " ", lp: Math.log(Math.max(1e-9, 1 - D)), obs: !model, masked: isMasked,
            title: model ? "π " + pi.toFixed(3) + " · μ " + mu.toFixed(3) + " · |π−μ| " + D.toFixed(3) + (isMasked ? " · masked" : "") : "not a model token" };
        });
        pageEl.appendChild(h("h2", null, "Learner vs sampler (trainer logprobs)"));
        pageEl.appendChild(h("div", { class: "row" }, stat("model tokens", fmtInt(n)), stat("advantage used", fmt(dp.advantage, 3)),
          stat("masked (δ = 0.1)", dp.advantage === null ? "unknown advantage" : fmtInt(masked) + " (" + fmtPct(n ? masked / n : 0) + "%)"), stat("mean |π − μ|", fmt(n ? sum / n : NaN, 4))));
        pageEl.appendChild(h("div", { class: "heat-legend" }, h("span", null, "|π − μ| = 1"), h("span", { class: "bar" }), h("span", null, "|π − μ| = 0 · tokens outlined red are DPPO-masked")));
        pageEl.appendChild(heatmap(cells, 3000));
      }
    });
  }

  window.addEventListener("hashchange", start);
  start();
})();
