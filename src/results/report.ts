// Scores of one or more job dirs (tmax's or Harbor's): per-run means, mean with sample std and SEM (labelled), pass@k,
// per-task table, errors by type — as JSON and markdown; several dirs as the model card's table (rows = model or
// --label, columns = benchmark, keyed by job); two dirs task by task (--diff).
import { scoreJob, taskLevelUncertainty, type JobScores, type TaskLevelUncertainty } from "./metrics.js";
import { readJob, type ReadJob, type ReadTrial } from "./read.js";
import { mdEscape as md } from "../util/terminal.js";
import { tamperSummary } from "./tamper.js";

export interface JobReport {
  jobDir: string;
  job: string;
  format: ReadJob["format"];
  benchmark: string; // dataset name
  model: string; // model name, or the agent for oracle/nop
  /** the row of the model card: --label, else the model */
  label: string;
  k: number;
  /** how trials were assigned to runs */
  runAssignment: string;
  scores: JobScores;
  /** Per trial with a tamper report: its one-line summary (see src/trial/tamper.ts). */
  tamper: { trial: string; summary: string }[];
  /** order-independent uncertainty (no run assignment involved) */
  uncertainty: TaskLevelUncertainty;
  /** infrastructure errors left out: each task's mean over its other trials, tasks with none left out */
  infraClean: { mean: number; trials: number; tasks: number; left_out: number };
  counts: { trials: number; errors: number; infra_errors: number; pending: number };
  /** files that could not be read or lacked fields, with why */
  issues: { file: string; problem: string }[];
}

export function reportJob(jobDir: string, label?: string): JobReport {
  const job = readJob(jobDir);
  const k = job.k;
  const ks = [...new Set([1, 2, 3, 5, k])].filter((x) => x <= k).sort((a, b) => a - b);
  const scores = scoreJob(job.trials, { ks, expectedTasks: job.expectedTasks ?? undefined, nRuns: k });
  const infra = job.trials.filter((t) => t.exception_info?.infrastructure);
  const clean = job.trials.filter((t) => !t.exception_info?.infrastructure);
  const cleanScore = taskLevelUncertainty(clean, { resamples: 0 });
  return {
    jobDir: job.dir,
    job: job.name,
    format: job.format,
    benchmark: job.benchmark,
    model: job.model,
    label: label ?? job.model,
    k,
    runAssignment: job.runAssignment,
    scores,
    tamper: job.trials.filter((t) => t.tamper).map((t) => ({ trial: t.trial_name, summary: tamperSummary(t.tamper!) })),
    uncertainty: taskLevelUncertainty(job.trials, { expectedTasks: job.expectedTasks ?? undefined }),
    infraClean: { mean: cleanScore.score, trials: clean.length, tasks: new Set(clean.map((t) => t.task_name)).size, left_out: infra.length },
    counts: { trials: job.trials.length, errors: job.trials.filter((t) => t.exception_info).length, infra_errors: infra.length, pending: job.pending },
    issues: job.issues,
  };
}

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : "—");

// ---------------------------------------------------------------------------------------------
// the model card

export interface CardCell {
  job: string;
  jobDir: string;
  mean: number;
  /** sample standard deviation of the per-run means */
  std: number;
  /** standard error of the mean over runs, std/√runs */
  sem: number;
  runs: number;
  trials: number;
  errors: number;
  /** mean with infrastructure errors left out */
  infra_clean_mean: number;
  infra_errors: number;
  /** order-independent: SEM from per-task variance across attempts (task set fixed) */
  sem_tasks_fixed: number;
  /** order-independent: seeded bootstrap over tasks, 95% interval */
  bootstrap_ci95: [number, number];
  run_assignment: string;
}

export interface ModelCard {
  rows: string[];
  columns: string[];
  /** cells[row][column] */
  cells: Record<string, Record<string, CardCell>>;
  notes: string[];
}

/**
 * Rows = --label (else the model name), columns = benchmark. Cells are keyed by job: when two jobs land on the same
 * (row, column) — every checkpoint served as `tmax-9b` — their rows get the job name appended instead of merging.
 */
export function modelCard(reports: JobReport[]): ModelCard {
  const rowOf = new Map<JobReport, string>();
  const taken = new Map<string, JobReport[]>();
  for (const r of reports) taken.set(JSON.stringify([r.label, r.benchmark]), [...(taken.get(JSON.stringify([r.label, r.benchmark])) ?? []), r]);
  for (const r of reports) rowOf.set(r, taken.get(JSON.stringify([r.label, r.benchmark]))!.length > 1 ? `${r.label} (${r.job})` : r.label);
  const rows = [...new Set(reports.map((r) => rowOf.get(r)!))];
  const columns = [...new Set(reports.map((r) => r.benchmark))];
  const cells: ModelCard["cells"] = {};
  for (const r of reports) {
    const s = r.scores.score;
    (cells[rowOf.get(r)!] ??= {})[r.benchmark] = {
      job: r.job,
      jobDir: r.jobDir,
      mean: s.mean,
      std: s.std,
      sem: s.sem,
      runs: s.n,
      trials: r.counts.trials,
      errors: r.counts.errors,
      infra_clean_mean: r.infraClean.mean,
      infra_errors: r.counts.infra_errors,
      sem_tasks_fixed: r.uncertainty.semTasksFixed,
      bootstrap_ci95: r.uncertainty.bootstrap.ci95,
      run_assignment: r.runAssignment,
    };
  }
  return {
    rows,
    columns,
    cells,
    notes: [
      "mean: mean over runs of the per-run mean reward over tasks (errored and missing trials count 0), in %.",
      "± is the SEM over runs (sample std of the per-run means / √runs); std is that sample std; runs = attempts per task.",
      "excl. infra: each task's mean over its trials without an infrastructure error (engine, build, model server unreachable), averaged over tasks.",
      `order-independent: "SEM tasks fixed" = √(Σ_t s_t²/n_t)/T from each task's variance across its attempts; "bootstrap 95%" resamples tasks (seed 0, 2000 draws).`,
      ...[...new Set(reports.map((r) => r.runAssignment))].map((a) => `runs assigned ${a}.`),
    ],
  };
}

export function renderCardMarkdown(card: ModelCard): string {
  const head = card.columns.flatMap((c) => [c, `${c} excl. infra`]);
  const lines = [`| model | ${head.join(" | ")} |`, `|---|${head.map(() => "---").join("|")}|`];
  for (const row of card.rows) {
    const cells = card.columns.flatMap((c) => {
      const x = card.cells[row]?.[c];
      if (!x) return ["—", "—"];
      const spread = Number.isFinite(x.sem) ? ` ± ${pct(x.sem)} SEM (std ${pct(x.std)}, ${x.runs} runs)` : ` (${x.runs} run)`;
      return [`${pct(x.mean)}${spread}; ${x.trials} trials, ${x.errors} errors`, `${pct(x.infra_clean_mean)} (${x.infra_errors} infra errors left out)`];
    });
    lines.push(`| ${row} | ${cells.join(" | ")} |`);
  }
  lines.push("", "| model | benchmark | job | SEM tasks fixed | bootstrap 95% over tasks |", "|---|---|---|---|---|");
  for (const row of card.rows) {
    for (const c of card.columns) {
      const x = card.cells[row]?.[c];
      if (x) lines.push(`| ${row} | ${c} | ${x.job} | ${pct(x.sem_tasks_fixed)} | [${pct(x.bootstrap_ci95[0])}, ${pct(x.bootstrap_ci95[1])}] |`);
    }
  }
  lines.push("", ...card.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// one job in detail

export function renderMarkdown(reports: JobReport[]): string {
  const out: string[] = [];
  if (reports.length > 1) out.push(renderCardMarkdown(modelCard(reports)), "");
  for (const r of reports) {
    const s = r.scores;
    out.push(`## ${md(r.benchmark)} · ${md(r.label)}`, "", `job: ${md(r.jobDir)} (${r.format}) · ${s.nTasks} tasks · ${s.nTrials} trials · ${s.nRuns} run(s)`, "");
    out.push(`**score: ${pct(s.score.mean)}%** — sample std ${pct(s.score.std)} · SEM ${pct(s.score.sem)} (std/√${s.nRuns} runs)`, "");
    out.push(`order-independent: SEM tasks fixed ${pct(r.uncertainty.semTasksFixed)} · bootstrap over tasks 95% [${pct(r.uncertainty.bootstrap.ci95[0])}, ${pct(r.uncertainty.bootstrap.ci95[1])}] (seed ${r.uncertainty.bootstrap.seed})`, "");
    out.push(`infrastructure errors left out: ${pct(r.infraClean.mean)}% (${r.infraClean.left_out} trial(s) left out)`, "");
    out.push(`per-run means (runs assigned ${r.runAssignment}): ${s.runMeans.map(pct).join(", ")}`, "");
    const ks = Object.keys(s.passAtK);
    out.push(ks.map((k) => `pass@${k} ${pct(s.passAtK[k]!.value)}%`).join(" · "), "");
    out.push(`| task | trials | successes | mean reward | ${ks.map((k) => `pass@${k}`).join(" | ")} | errors |`);
    out.push(`|---|---|---|---|${ks.map(() => "---").join("|")}|---|`);
    for (const t of s.tasks) {
      out.push(`| ${md(t.task)} | ${t.n} | ${t.successes} | ${t.meanReward.toFixed(3)} | ${ks.map((k) => (t.passAtK[k] == null ? "—" : t.passAtK[k]!.toFixed(3))).join(" | ")} | ${t.errors} |`);
    }
    if (s.errors.length) {
      out.push("", "errors by type:");
      for (const e of s.errors) out.push(`- ${md(e.exception_type)}: ${e.count} (${e.trials.slice(0, 5).map(md).join(", ")}${e.trials.length > 5 ? ", …" : ""})`);
    }
    const tampered = r.tamper.filter((t) => t.summary !== "clean");
    if (tampered.length) {
      out.push("", "tamper report (writes the verifier could trust; `zeroed` = reward set to 0 by --integrity strict):");
      for (const t of tampered) out.push(`- ${md(t.trial)}: ${md(t.summary)}`);
    }
    if (s.missing.length) out.push("", `missing trials counted as 0: ${s.missing.slice(0, 20).map((m) => `run ${m.run} ${md(m.task)}`).join(", ")}${s.missing.length > 20 ? ` (+${s.missing.length - 20} more)` : ""}`);
    if (r.counts.pending) out.push("", `${r.counts.pending} trial dir(s) without result.json (running or interrupted)`);
    for (const u of r.issues) out.push("", `note: ${md(u.file)}: ${md(u.problem)}`);
    out.push("");
  }
  return out.join("\n");
}

/** Kept for callers of the old name: the model card's table. */
export const renderComparison = (reports: JobReport[]) => renderCardMarkdown(modelCard(reports));

// ---------------------------------------------------------------------------------------------
// A vs B

export interface TaskDiff {
  task: string;
  a: { solved: number; trials: number; mean: number } | null;
  b: { solved: number; trials: number; mean: number } | null;
  /** solved = mean reward ≥ 0.5 over the task's trials (a majority of attempts for 0/1 rewards) */
  change: "solved→failed" | "failed→solved" | "same" | "only in A" | "only in B";
}

export interface JobDiff {
  a: string;
  b: string;
  tasks: TaskDiff[];
  counts: Record<TaskDiff["change"], number>;
}

export function diffJobs(a: JobReport, b: JobReport): JobDiff {
  const ja = readJob(a.jobDir);
  const jb = readJob(b.jobDir);
  const stats = (ts: ReadTrial[]) => ({ solved: ts.filter((t) => t.reward >= 1).length, trials: ts.length, mean: ts.reduce((s, t) => s + t.reward, 0) / ts.length });
  const group = (j: ReadJob) => {
    const m = new Map<string, ReadTrial[]>();
    for (const t of j.trials) m.set(t.task_name, [...(m.get(t.task_name) ?? []), t]);
    return m;
  };
  const ga = group(ja);
  const gb = group(jb);
  const tasks = [...new Set([...ga.keys(), ...gb.keys()])].sort();
  const counts: JobDiff["counts"] = { "solved→failed": 0, "failed→solved": 0, same: 0, "only in A": 0, "only in B": 0 };
  const rows = tasks.map((task) => {
    const sa = ga.has(task) ? stats(ga.get(task)!) : null;
    const sb = gb.has(task) ? stats(gb.get(task)!) : null;
    const change: TaskDiff["change"] = !sa ? "only in B" : !sb ? "only in A" : sa.mean >= 0.5 && sb.mean < 0.5 ? "solved→failed" : sa.mean < 0.5 && sb.mean >= 0.5 ? "failed→solved" : "same";
    counts[change]++;
    return { task, a: sa, b: sb, change };
  });
  return { a: a.jobDir, b: b.jobDir, tasks: rows, counts };
}

export function renderDiffMarkdown(d: JobDiff, a: JobReport, b: JobReport): string {
  const cell = (s: TaskDiff["a"]) => (s ? `${s.solved}/${s.trials} (${pct(s.mean)}%)` : "—");
  const lines = [
    `## A vs B`,
    "",
    `A = ${md(a.label)} · ${md(a.benchmark)} · ${md(a.jobDir)} (${pct(a.scores.score.mean)}%)`,
    `B = ${md(b.label)} · ${md(b.benchmark)} · ${md(b.jobDir)} (${pct(b.scores.score.mean)}%)`,
    "",
    `solved→failed ${d.counts["solved→failed"]} · failed→solved ${d.counts["failed→solved"]} · same ${d.counts.same}` +
      (d.counts["only in A"] || d.counts["only in B"] ? ` · only in A ${d.counts["only in A"]} · only in B ${d.counts["only in B"]}` : ""),
    "",
    "| task | A solved/trials | B solved/trials | change |",
    "|---|---|---|---|",
    ...d.tasks.filter((t) => t.change !== "same").map((t) => `| ${md(t.task)} | ${cell(t.a)} | ${cell(t.b)} | ${t.change} |`),
    ...d.tasks.filter((t) => t.change === "same").map((t) => `| ${md(t.task)} | ${cell(t.a)} | ${cell(t.b)} | same |`),
    "",
    "A task counts as solved when its mean reward over its trials is at least 0.5 (a majority of attempts for 0/1 rewards).",
  ];
  return lines.join("\n");
}

/** Everything `tmax report --json` prints: the card (several dirs), each job's report, the diff when asked. */
export function reportJson(reports: JobReport[], diff?: JobDiff): unknown {
  return { card: modelCard(reports), jobs: reports, ...(diff ? { diff } : {}) };
}
