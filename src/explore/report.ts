// `tmax report <job-dir>... --html out.html`: one self-contained HTML file (Chart.js, CSS, data and
// trajectories inlined; nothing fetched at view time) with a model-card score table, charts, per-task
// results and every trial linked to its trajectory.
import { writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { redactAll } from "../util/redact.js";
import { perRunMeans, summarize, type Summary } from "../results/metrics.js";
import { modelCard, reportJob, type JobDiff, type ModelCard } from "../results/report.js";
import { discoverSources, loadJob, loadTrajectory, type Issue, type JobData, type TrialRow } from "./load.js";
import { chartJsSource } from "./ui/chartjs.js";
import { COMMON_JS, REPORT_JS, STYLE_CSS } from "./ui/assets.js";

export interface ReportOptions {
  /** dir the HTML file will be written to: trajectory links are relative to it (default: cwd) */
  baseDir?: string;
  /** inline readable trajectories up to this many characters in total (default 40 MB) */
  maxInlineChars?: number;
  title?: string;
  /** the model card `tmax report` printed (so markdown, JSON and HTML show the same numbers); computed when absent */
  card?: ModelCard;
  /** the A-vs-B view of `tmax report A B --diff` */
  diff?: JobDiff;
}

export interface ScoreCell extends Summary {
  trials: number;
  tasks: number;
  /** (run, task) pairs without a trial (counted 0 by the score) */
  missing: number;
}

export interface ReportData {
  title: string;
  generatedAt: string;
  benchmarks: string[];
  models: string[];
  /** cells[benchmark][model] */
  cells: Record<string, Record<string, ScoreCell>>;
  trials: ReportTrial[];
  jobs: { name: string; dir: string; benchmark: string | null; model: string | null; trials: number; pending: number }[];
  issues: Issue[];
  /** the model card, identical to `tmax report --json`'s `card` */
  card: ModelCard;
  diff?: JobDiff;
}

export interface ReportTrial extends Omit<TrialRow, "dir" | "trajectory"> {
  job: string;
  /** link to agent/trajectory.json relative to the report file, or null */
  trajectoryHref: string | null;
  /** index into the inlined trajectories, or -1 */
  trajectoryRef: number;
}

/** Escape for HTML text and attribute values. */
export function esc(s: unknown): string {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/**
 * A link to `file` relative to the report's dir `fromDir`: every segment percent-encoded and the whole starting
 * with `./` or `../`, so that no name becomes a scheme, a host, a query or a fragment (a trial dir named
 * `javascript:alert(1)%2F%2F__0` was a live `javascript:` link in the report).
 */
export function fileHref(fromDir: string, file: string): string {
  const rel = path.relative(fromDir, file).split(path.sep).map(encodeURIComponent).join("/");
  return rel.startsWith("../") ? rel : `./${rel}`;
}

/** JSON that is safe inside <script>: no `</script>`, no HTML comment openers. */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/** Runs are attempts; trials without an attempt index (e.g. Harbor's random trial names) are ranked by start time. */
function withAttempts(rows: TrialRow[]): (TrialRow & { attemptIdx: number })[] {
  const byTask = new Map<string, TrialRow[]>();
  for (const r of rows) byTask.set(r.task, [...(byTask.get(r.task) ?? []), r]);
  const out: (TrialRow & { attemptIdx: number })[] = [];
  for (const trials of byTask.values()) {
    const known = trials.filter((t) => t.attempt !== null);
    const unknown = trials.filter((t) => t.attempt === null).sort((a, b) => (a.startedAt ?? "").localeCompare(b.startedAt ?? "") || a.trial.localeCompare(b.trial));
    const used = new Set(known.map((t) => t.attempt!));
    for (const t of known) out.push({ ...t, attemptIdx: t.attempt! });
    let next = 0;
    for (const t of unknown) {
      while (used.has(next)) next++;
      used.add(next);
      out.push({ ...t, attemptIdx: next });
    }
  }
  return out;
}

/** Score cell of one (benchmark, model): mean over runs of the per-run mean reward, with std and SEM. */
export function scoreCell(rows: TrialRow[]): ScoreCell {
  const scored = withAttempts(rows).map((r) => ({ task_name: r.task, trial_name: r.trial, attempt: r.attemptIdx, reward: r.reward }));
  const runs = perRunMeans(scored);
  return { ...summarize(runs.means), trials: rows.length, tasks: runs.tasks.length, missing: runs.missing.length };
}

/** A given dir that is not itself a job dir but holds some (e.g. `jobs/`) stands for those job dirs. */
async function expandJobDirs(dirs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const dir of dirs) {
    const abs = path.resolve(dir);
    const found = await discoverSources(abs, 2);
    if (found.jobs.length && !found.jobs.includes(abs)) out.push(...found.jobs);
    else out.push(abs);
  }
  return [...new Set(out)];
}

/** Loads the jobs and computes everything the report shows (also used by tests). */
export async function buildReportData(jobDirs: string[], opts: ReportOptions = {}): Promise<{ data: ReportData; trajectories: unknown[] }> {
  const baseDir = path.resolve(opts.baseDir ?? process.cwd());
  const budget = opts.maxInlineChars ?? 40_000_000;
  const issues: Issue[] = [];
  if (jobDirs.length === 0) issues.push({ file: "(arguments)", problem: "no job directories given" });
  const jobs: JobData[] = [];
  const expanded = await expandJobDirs(jobDirs);
  let card = opts.card;
  if (!card) {
    const reports = [];
    for (const dir of expanded) {
      try {
        reports.push(reportJob(dir));
      } catch (e) {
        issues.push({ file: dir, problem: (e as Error).message.split("\n")[0] });
      }
    }
    card = modelCard(reports);
  }
  for (const dir of expanded) {
    const job = await loadJob(dir);
    jobs.push(job);
    issues.push(...job.issues);
  }
  // Several jobs of one model (every checkpoint served as `tmax-9b`) are never pooled: each gets its own series,
  // `model (job)`, in the score table, the charts and the trial filter.
  const series = seriesOfJobs(jobs);
  for (const job of jobs) job.trials = job.trials.map((t) => ({ ...t, model: series.get(job)!.get(t.model) ?? t.model }));
  const cells: ReportData["cells"] = {};
  const groups = new Map<string, TrialRow[]>();
  for (const job of jobs) for (const t of job.trials) {
    const k = JSON.stringify([t.benchmark, t.model]);
    groups.set(k, [...(groups.get(k) ?? []), t]);
  }
  for (const [k, rows] of groups) {
    const [bench, model] = JSON.parse(k) as [string, string];
    (cells[bench] ??= {})[model] = scoreCell(rows);
  }
  const benchmarks = Object.keys(cells).sort();
  const models = [...new Set(jobs.flatMap((j) => j.trials.map((t) => t.model)))].sort();

  const trajectories: unknown[] = [];
  let used = 0;
  let skipped = 0;
  const trials: ReportTrial[] = [];
  for (const job of jobs) {
    for (const t of job.trials) {
      let ref = -1;
      if (t.trajectory) {
        if (used < budget) {
          const { trajectory, issues: tIssues, raw } = await loadTrajectory(t.trajectory, job.dir);
          issues.push(...tIssues);
          if (trajectory || raw) {
            const compact = trajectory ? compactTrajectory(trajectory) : { raw: raw!.slice(0, 20_000) };
            used += JSON.stringify(compact).length;
            ref = trajectories.push(compact) - 1;
          }
        } else skipped++;
      }
      const { dir: _dir, trajectory: _t, ...rest } = t;
      trials.push({
        ...rest,
        job: job.name,
        trajectoryHref: t.trajectory ? fileHref(baseDir, t.trajectory) : null,
        trajectoryRef: ref,
      });
    }
  }
  if (skipped) issues.push({ file: "(report)", problem: `${skipped} trajectories not inlined (over ${budget} characters); their file links still work` });
  const data: ReportData = {
    title: opts.title ?? "tmax evaluation report",
    generatedAt: new Date().toISOString(),
    benchmarks,
    models,
    cells,
    trials,
    jobs: jobs.map((j) => ({ name: j.name, dir: j.dir, benchmark: j.benchmark, model: j.model, trials: j.trials.length, pending: j.pending })),
    issues,
    card,
    ...(opts.diff ? { diff: opts.diff } : {}),
  };
  return { data, trajectories };
}

/** Per job, its trials' model name → the series it is shown as: the model, or `model (job)` when jobs share it. */
function seriesOfJobs(jobs: JobData[]): Map<JobData, Map<string, string>> {
  const jobsOfModel = new Map<string, JobData[]>();
  for (const job of jobs) for (const m of new Set(job.trials.map((t) => t.model))) jobsOfModel.set(m, [...new Set([...(jobsOfModel.get(m) ?? []), job])]);
  const taken = new Set<string>();
  const out = new Map<JobData, Map<string, string>>();
  for (const job of jobs) {
    const names = new Map<string, string>();
    for (const m of new Set(job.trials.map((t) => t.model))) {
      if (jobsOfModel.get(m)!.length < 2) continue;
      let name = `${m} (${job.name})`;
      for (let i = 2; taken.has(name); i++) name = `${m} (${job.name} #${i})`; // two dirs of one name in different places
      taken.add(name);
      names.set(m, name);
    }
    out.set(job, names);
  }
  return out;
}

const cut = (s: unknown, n: number) => (typeof s === "string" && s.length > n ? `${s.slice(0, n)}\n… [${s.length - n} more characters in trajectory.json]` : s);

/** The readable part of a trajectory, long texts cut: messages and token ids are left to the file. */
export function compactTrajectory(t: Record<string, unknown>): Record<string, unknown> {
  const { messages: _m, ...rest } = t;
  const steps = Array.isArray(t.steps) ? t.steps : [];
  return {
    ...rest,
    task: typeof t.task === "object" && t.task ? { ...(t.task as object), instruction: cut((t.task as { instruction?: unknown }).instruction, 6000) } : t.task,
    steps: steps.map((s: Record<string, unknown>) => {
      const m = (s.model ?? {}) as Record<string, unknown>;
      const { promptTokenIds: _p, completionTokenIds: _c, ...model } = m;
      return {
        ...s,
        model: {
          ...model,
          content: cut(m.content, 6000),
          reasoning: cut(m.reasoning, 6000),
          logprobs: Array.isArray(m.logprobs) ? m.logprobs.slice(0, 2000) : undefined,
        },
        executions: Array.isArray(s.executions)
          ? s.executions.map((e: Record<string, unknown>) => ({ ...e, observation: cut(e.observation, 6000) }))
          : s.executions,
      };
    }),
  };
}

function pct(x: number, d = 1): string {
  return Number.isFinite(x) ? (100 * x).toFixed(d) : "—";
}

/** The model card as `tmax report` prints it: rows = model (or --label), two columns per benchmark (all, infra errors left out). */
export function cardTableHtml(card: ModelCard): string {
  if (!card.rows.length) return `<div class="empty">No finished trials to score.</div>`;
  const head = card.columns.map((c) => `<th>${esc(c)}</th><th>${esc(c)} excl. infra</th>`).join("");
  const body = card.rows
    .map((row) => {
      const cols = card.columns
        .map((c) => {
          const x = card.cells[row]?.[c];
          if (!x) return `<td class="cell muted">—</td><td class="cell muted">—</td>`;
          const sem = Number.isFinite(x.sem) ? ` ± ${pct(x.sem)}` : "";
          return (
            `<td class="cell" data-row="${esc(row)}" data-benchmark="${esc(c)}" data-job="${esc(x.job)}" data-mean="${pct(x.mean)}" data-sem="${pct(x.sem)}">` +
            `<div class="mean">${pct(x.mean)}${sem} <span class="muted small">SEM</span></div>` +
            `<div class="detail">std ${pct(x.std)} · ${x.runs} run${x.runs === 1 ? "" : "s"} · ${x.trials} trials · ${x.errors} errors</div>` +
            `<div class="detail">order-independent: SEM tasks fixed ${pct(x.sem_tasks_fixed)} · bootstrap 95% [${pct(x.bootstrap_ci95[0])}, ${pct(x.bootstrap_ci95[1])}]</div>` +
            `<div class="detail muted">job ${esc(x.job)}</div></td>` +
            `<td class="cell" data-infra-clean="${pct(x.infra_clean_mean)}"><div class="mean">${pct(x.infra_clean_mean)}</div><div class="detail">${x.infra_errors} infra errors left out</div></td>`
          );
        })
        .join("");
      return `<tr><td><b>${esc(row)}</b></td>${cols}</tr>`;
    })
    .join("");
  return (
    `<table class="model-card" data-testid="model-card"><thead><tr><th>model</th>${head}</tr></thead><tbody>${body}</tbody></table>` +
    `<div class="legend">${card.notes.map(esc).join("<br>")}</div>`
  );
}

function diffHtml(d: JobDiff): string {
  const cell = (s: JobDiff["tasks"][number]["a"]) => (s ? `${s.solved}/${s.trials}` : "—");
  const rows = d.tasks
    .filter((t) => t.change !== "same")
    .map((t) => `<tr><td>${esc(t.task)}</td><td class="num">${cell(t.a)}</td><td class="num">${cell(t.b)}</td><td>${esc(t.change)}</td></tr>`)
    .join("");
  return (
    `<div class="sub" data-testid="diff">A = <code>${esc(d.a)}</code> · B = <code>${esc(d.b)}</code> — solved→failed ${d.counts["solved→failed"]} · failed→solved ${d.counts["failed→solved"]} · same ${d.counts.same}</div>` +
    `<table><thead><tr><th>task</th><th class="num">A solved/trials</th><th class="num">B solved/trials</th><th>change</th></tr></thead><tbody>${rows || `<tr><td colspan=4 class=muted>no flips</td></tr>`}</tbody></table>`
  );
}

function taskTableHtml(d: ReportData): string {
  const key = (t: ReportTrial) => JSON.stringify([t.benchmark, t.task]);
  const tasks = [...new Set(d.trials.map(key))].sort().map((k) => JSON.parse(k) as [string, string]);
  if (!tasks.length) return `<div class="empty">No trials.</div>`;
  const multi = d.benchmarks.length > 1;
  const head = d.models.map((m) => `<th class="num">${esc(m)}</th>`).join("");
  const rows = tasks
    .map(([b, task]) => {
      const cols = d.models
        .map((m) => {
          const ts = d.trials.filter((t) => t.benchmark === b && t.task === task && t.model === m);
          if (!ts.length) return `<td class="num muted">—</td>`;
          const solved = ts.filter((t) => t.reward >= 1).length;
          const mean = ts.reduce((a, t) => a + t.reward, 0) / ts.length;
          return `<td class="num">${pct(mean, 0)}% <span class="muted small">(${solved}/${ts.length})</span></td>`;
        })
        .join("");
      return `<tr><td>${multi ? `<span class="muted">${esc(b)} / </span>` : ""}${esc(task)}</td>${cols}</tr>`;
    })
    .join("");
  return `<div class="table-wrap"><table data-testid="task-table"><thead><tr><th>task</th>${head}</tr></thead><tbody>${rows}</tbody></table></div>` +
    `<div class="legend">Mean reward over the task's trials (solved / trials, solved = reward 1).</div>`;
}

function trialTableHtml(d: ReportData): string {
  if (!d.trials.length) return `<div class="empty">No trials.</div>`;
  const rows = d.trials
    .map((t, i) => {
      const link = t.trajectoryHref ? `<a href="${esc(t.trajectoryHref)}" onclick="event.stopPropagation()">trajectory.json</a>` : `<span class="muted">none</span>`;
      const cls = t.exitStatus === "submitted" ? "ok" : t.exitStatus.startsWith("exception") || t.exitStatus === "error" || t.exitStatus === "timeout" ? "bad" : "warn";
      return (
        `<tr class="clickable" data-trial="${i}" title="${esc(t.exception ?? "")}">` +
        `<td>${esc(t.task)}</td><td>${esc(t.model)}</td><td class="num">${t.attempt ?? "—"}</td>` +
        `<td class="num"><span class="${t.reward >= 1 ? "reward-1" : t.reward <= 0 ? "reward-0" : ""}">${t.reward}</span></td>` +
        `<td><span class="badge ${cls}">${esc(t.exitStatus)}</span></td>` +
        `<td class="num">${t.durationSec === null ? "—" : t.durationSec.toFixed(1)}</td>` +
        `<td class="num">${t.nSteps ?? "—"}</td>` +
        `<td class="num">${t.inputTokens?.toLocaleString("en-US") ?? "—"}</td><td class="num">${t.outputTokens?.toLocaleString("en-US") ?? "—"}</td>` +
        `<td>${link}</td></tr>`
      );
    })
    .join("");
  return (
    `<div class="filters"><label>task<input id="f-task" placeholder="substring"></label>` +
    `<label>model<select id="f-model"><option value="">all</option>${d.models.map((m) => `<option>${esc(m)}</option>`).join("")}</select></label>` +
    `<label>exit status<select id="f-exit"><option value="">all</option>${[...new Set(d.trials.map((t) => t.exitStatus))].sort().map((s) => `<option>${esc(s)}</option>`).join("")}</select></label>` +
    `<label>reward<select id="f-reward"><option value="">all</option><option value="1">solved (1)</option><option value="0">failed (&lt; 1)</option></select></label>` +
    `<span class="muted small" id="f-count"></span></div>` +
    `<div class="table-wrap"><table id="trials" data-testid="trial-table"><thead><tr><th>task</th><th>model</th><th class="num">attempt</th><th class="num">reward</th><th>exit status</th>` +
    `<th class="num">duration (s)</th><th class="num">turns</th><th class="num">input tokens</th><th class="num">output tokens</th><th>file</th></tr></thead><tbody>${rows}</tbody></table></div>` +
    `<div class="legend">Click a trial to read its trajectory below.</div>`
  );
}

/** The whole report as one HTML string. */
export async function renderReportHtml(jobDirs: string[], opts: ReportOptions = {}): Promise<string> {
  const { data, trajectories } = await buildReportData(jobDirs, opts);
  const chartJs = await chartJsSource();
  const issues = data.issues.length
    ? `<section class="issues" data-testid="issues"><h3>Issues (${data.issues.length})</h3><ul>${data.issues
        .map((i) => `<li><code>${esc(i.file)}</code> — ${esc(i.problem)}</li>`)
        .join("")}</ul></section>`
    : "";
  const jobsList = data.jobs
    .map((j) => `<li><b>${esc(j.name)}</b> <span class="muted">${esc(j.dir)}</span> — ${j.trials} trials${j.pending ? `, ${j.pending} pending` : ""}</li>`)
    .join("");
  // secrets (known values, key shapes) are masked in everything taken from the job dirs
  const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<title>${esc(data.title)}</title>
<style>${STYLE_CSS}</style>
</head><body>
<header class="top"><span class="brand">tmax</span><span>report</span><span class="where">${esc(data.generatedAt)}</span></header>
<main>
<h1>${esc(data.title)}</h1>
<div class="sub">${data.jobs.length} job${data.jobs.length === 1 ? "" : "s"} · ${data.trials.length} trials · ${data.benchmarks.length} benchmark${data.benchmarks.length === 1 ? "" : "s"} · ${data.models.length} model${data.models.length === 1 ? "" : "s"}</div>
${issues}
<h2>Scores</h2>
${cardTableHtml(data.card)}
${data.diff ? `<h2>A vs B</h2>\n${diffHtml(data.diff)}` : ""}
<h2>Charts</h2>
<div class="grid" id="charts"></div>
<h2>Per-task results</h2>
${taskTableHtml(data)}
<h2>Trials</h2>
${trialTableHtml(data)}
<div id="trajectory-view"></div>
<h2>Jobs</h2>
<ul>${jobsList || "<li class=muted>none</li>"}</ul>
</main>
<script type="application/json" id="report-data">${scriptJson(data)}</script>
<script type="application/json" id="report-trajectories">${scriptJson(trajectories)}</script>
<script>@@CHARTJS@@</script>
<script>${COMMON_JS}
${REPORT_JS}</script>
</body></html>
`;
  return redactAll(page).replace("@@CHARTJS@@", () => chartJs.replace(/<\/script/gi, "<\\/script"));
}

/** Renders and writes the report; links are relative to the output file's directory. */
export async function writeReportHtml(jobDirs: string[], outFile: string, opts: Omit<ReportOptions, "baseDir"> = {}): Promise<void> {
  const out = path.resolve(outFile);
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, await renderReportHtml(jobDirs, { ...opts, baseDir: path.dirname(out) }));
}
