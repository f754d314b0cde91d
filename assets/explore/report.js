// Browser code of the static HTML report: charts from the inlined data, trial filters, and the inline
// trajectory reader. Runs after common.js.

(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var trajectories = JSON.parse(document.getElementById("report-trajectories").textContent);
  var trials = data.trials;
  var models = data.models;
  var multiBench = data.benchmarks.length > 1;
  var grid = document.getElementById("charts");

  function byModel(fn) { return models.map(function (m, i) { return fn(m, i, trials.filter(function (t) { return t.model === m; })); }); }

  if (!trials.length) {
    grid.appendChild(h("div", { class: "empty card" }, "No trials to chart."));
  } else {
    // 1. pass rate per task
    var taskKeys = [];
    trials.forEach(function (t) { var k = multiBench ? t.benchmark + " / " + t.task : t.task; if (taskKeys.indexOf(k) < 0) taskKeys.push(k); });
    taskKeys.sort();
    chartCard(grid, "Pass rate per task", {
      type: "bar",
      data: { labels: taskKeys, datasets: byModel(function (m, i, ts) {
        return { label: m, backgroundColor: color(i, 0.8), data: taskKeys.map(function (k) {
          var sel = ts.filter(function (t) { return (multiBench ? t.benchmark + " / " + t.task : t.task) === k; });
          return sel.length ? 100 * sel.reduce(function (a, t) { return a + t.reward; }, 0) / sel.length : null;
        }) };
      }) },
      options: { scales: { y: axis("mean reward (%)", { min: 0, max: 100 }), x: axis("") } },
    }, "Mean reward over each task's trials.");

    // 2. reward distribution
    var rlabels = []; for (var b = 0; b < 10; b++) rlabels.push((b / 10).toFixed(1) + "–" + ((b + 1) / 10).toFixed(1));
    chartCard(grid, "Reward distribution", {
      type: "bar",
      data: { labels: rlabels, datasets: byModel(function (m, i, ts) {
        return { label: m, backgroundColor: color(i, 0.8), data: histogram(ts.map(function (t) { return t.reward; }), 10, 0, 1) };
      }) },
      options: { scales: { y: axis("trials", { beginAtZero: true, ticks: { precision: 0 } }), x: axis("reward") } },
    }, "Trials per reward bin (the last bin includes 1.0).");

    // 3. trial durations
    var durs = trials.map(function (t) { return t.durationSec; }).filter(isNum);
    var maxD = Math.max.apply(null, durs.concat([1]));
    var nb = 12, w = maxD / nb, dlabels = [];
    for (var j = 0; j < nb; j++) dlabels.push(fmtSec(j * w) + "–" + fmtSec((j + 1) * w));
    chartCard(grid, "Trial durations", {
      type: "bar",
      data: { labels: dlabels, datasets: byModel(function (m, i, ts) {
        return { label: m, backgroundColor: color(i, 0.8), data: histogram(ts.map(function (t) { return t.durationSec; }), nb, 0, maxD) };
      }) },
      options: { scales: { y: axis("trials", { beginAtZero: true, ticks: { precision: 0 } }), x: axis("wall time (environment setup to verifier end)") } },
    }, durs.length + " of " + trials.length + " trials recorded their start and end time.");

    // 4. exit statuses
    var statuses = [];
    trials.forEach(function (t) { if (statuses.indexOf(t.exitStatus) < 0) statuses.push(t.exitStatus); });
    statuses.sort();
    chartCard(grid, "Exit status", {
      type: "bar",
      data: { labels: models, datasets: statuses.map(function (s, i) {
        return { label: s, backgroundColor: exitColor(s, i), data: models.map(function (m) { return trials.filter(function (t) { return t.model === m && t.exitStatus === s; }).length; }) };
      }) },
      options: { indexAxis: "y", scales: { x: axis("trials", { stacked: true, ticks: { precision: 0 } }), y: axis("", { stacked: true }) } },
    }, "How each trial ended: the agent's exit status, or the exception that stopped the trial.");

    // 5. token usage per task
    var tokenSets = [];
    models.forEach(function (m, i) {
      var ts = trials.filter(function (t) { return t.model === m; });
      function meanOf(k, field) {
        var sel = ts.filter(function (t) { return (multiBench ? t.benchmark + " / " + t.task : t.task) === k && isNum(t[field]); });
        return sel.length ? sel.reduce(function (a, t) { return a + t[field]; }, 0) / sel.length : null;
      }
      tokenSets.push({ label: m + " · input", stack: m, backgroundColor: color(i, 0.85), data: taskKeys.map(function (k) { return meanOf(k, "inputTokens"); }) });
      tokenSets.push({ label: m + " · output", stack: m, backgroundColor: color(i, 0.4), data: taskKeys.map(function (k) { return meanOf(k, "outputTokens"); }) });
    });
    chartCard(grid, "Token usage per task", {
      type: "bar",
      data: { labels: taskKeys, datasets: tokenSets },
      options: { scales: { y: axis("tokens per trial (mean)", { stacked: true, beginAtZero: true }), x: axis("", { stacked: true }) } },
    }, "Input (prompt) tokens summed over turns, and output tokens, averaged over each task's trials.");
  }

  // ---- filters
  var rows = Array.prototype.slice.call(document.querySelectorAll("#trials tbody tr"));
  var fTask = document.getElementById("f-task"), fModel = document.getElementById("f-model"), fExit = document.getElementById("f-exit"), fReward = document.getElementById("f-reward"), fCount = document.getElementById("f-count");
  function applyFilters() {
    var q = (fTask.value || "").toLowerCase(), shown = 0;
    rows.forEach(function (tr) {
      var t = trials[Number(tr.getAttribute("data-trial"))];
      var ok = (!q || t.task.toLowerCase().indexOf(q) >= 0) && (!fModel.value || t.model === fModel.value) && (!fExit.value || t.exitStatus === fExit.value) &&
        (fReward.value === "" || (fReward.value === "1" ? t.reward >= 1 : t.reward < 1));
      tr.style.display = ok ? "" : "none";
      if (ok) shown++;
    });
    fCount.textContent = shown + " of " + rows.length + " trials";
  }
  if (fTask) {
    [fTask, fModel, fExit, fReward].forEach(function (el) { el.addEventListener("input", applyFilters); el.addEventListener("change", applyFilters); });
    applyFilters();
  }

  // ---- trajectory reader
  var view = document.getElementById("trajectory-view");
  rows.forEach(function (tr) {
    tr.addEventListener("click", function () {
      rows.forEach(function (r) { r.classList.remove("selected"); });
      tr.classList.add("selected");
      var t = trials[Number(tr.getAttribute("data-trial"))];
      clear(view);
      view.appendChild(h("h2", null, "Trajectory: " + t.task + " · " + t.model + " · attempt " + (t.attempt === null ? "?" : t.attempt)));
      view.appendChild(h("div", { class: "sub" }, "job " + t.job + " · reward ", rewardSpan(t.reward), " · ", exitBadge(t.exitStatus),
        isRelativeHref(t.trajectoryHref) ? h("span", null, " · ", h("a", { href: t.trajectoryHref }, "open trajectory.json")) : null));
      if (t.exception) view.appendChild(h("div", { class: "issues" }, h("h3", null, "Exception"), h("pre", null, t.exception)));
      var tj = t.trajectoryRef >= 0 ? trajectories[t.trajectoryRef] : null;
      if (tj && tj.raw !== undefined) view.appendChild(trajectoryView(null, [{ file: t.trajectoryHref || t.trial, problem: "not a tmax trajectory; shown as raw JSON (first 20,000 characters)" }], tj.raw));
      else if (tj) view.appendChild(trajectoryView(tj, []));
      else view.appendChild(h("div", { class: "empty card" }, t.trajectoryHref ? "Trajectory not inlined (size budget); open the file link." : "This trial has no trajectory (not a tmax-agent trial, or it failed before the agent ran)."));
      view.scrollIntoView({ behavior: "auto", block: "start" });
    });
  });
})();
