// Score statistics of a job, pure functions over trial results.
// A "run" is one attempt of every task; the score is the mean over runs of the per-run mean reward, reported with
// BOTH the sample standard deviation across runs and the standard error of the mean (std/√runs).
// Trials are assigned to runs by their attempt index (ties by trial_name), never by directory-listing order,
// so the same results always give the same "±".
import type { TrialResult } from "./schema.js";
import { seededRandom } from "../util/random.js";

/** The fields of a trial result the scores need (a full TrialResult fits). */
export type ScoredTrial = Pick<TrialResult, "task_name" | "trial_name" | "attempt" | "reward"> & {
  exception_info?: { exception_type: string } | null;
};

/** The reward a trial contributes. `reward` is already 0 when the verifier gave none; non-numbers count 0 too. */
export function trialReward(t: ScoredTrial): number {
  return typeof t.reward === "number" && Number.isFinite(t.reward) ? t.reward : 0;
}

/** Success for pass@k: the reward reaches `threshold` (1 by default: TB tasks score 0 or 1). */
export function isSuccess(t: ScoredTrial, threshold = 1): boolean {
  return trialReward(t) >= threshold;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A task's trials in run order: by attempt index, then trial_name. */
function orderTrials<T extends ScoredTrial>(trials: T[]): T[] {
  return [...trials].sort((a, b) => a.attempt - b.attempt || compare(a.trial_name, b.trial_name));
}

function groupByTask<T extends ScoredTrial>(results: readonly T[]): Map<string, T[]> {
  const by = new Map<string, T[]>();
  for (const r of results) by.set(r.task_name, [...(by.get(r.task_name) ?? []), r]);
  return by;
}

export interface RunAssignment<T extends ScoredTrial> {
  /** Every task, sorted: those in the results plus any `expectedTasks`. */
  tasks: string[];
  /** runs[i] maps task → its trial in run i (absent when the task has fewer trials). */
  runs: Array<Map<string, T>>;
}

/**
 * Run i holds the i-th trial of every task, trials ordered by attempt then trial_name, so input order never matters.
 * The number of runs is the most trials any task has (at least `nRuns` when given).
 */
export function assignRuns<T extends ScoredTrial>(
  results: readonly T[],
  opts: { expectedTasks?: readonly string[]; nRuns?: number } = {},
): RunAssignment<T> {
  const byTask = groupByTask(results);
  const tasks = [...new Set([...byTask.keys(), ...(opts.expectedTasks ?? [])])].sort(compare);
  const nRuns = Math.max(opts.nRuns ?? 0, ...[...byTask.values()].map((t) => t.length), 0);
  const runs: Array<Map<string, T>> = Array.from({ length: nRuns }, () => new Map());
  for (const [task, trials] of byTask) orderTrials(trials).forEach((t, i) => runs[i]!.set(task, t));
  return { tasks, runs };
}

export interface RunMeans {
  /** Mean reward over all tasks, one value per run. */
  means: number[];
  tasks: string[];
  /** (run, task) pairs with no trial; each counted as reward 0. */
  missing: Array<{ run: number; task: string }>;
}

/** Per-run mean reward over tasks; errored trials count their reward (0 when unverified), missing trials count 0. */
export function perRunMeans(results: readonly ScoredTrial[], opts: { expectedTasks?: readonly string[]; nRuns?: number } = {}): RunMeans {
  const { tasks, runs } = assignRuns(results, opts);
  const missing: RunMeans["missing"] = [];
  const means = runs.map((run, i) => {
    let sum = 0;
    for (const task of tasks) {
      const t = run.get(task);
      if (t) sum += trialReward(t);
      else missing.push({ run: i, task });
    }
    return tasks.length ? sum / tasks.length : Number.NaN;
  });
  return { means, tasks, missing };
}

export interface Summary {
  mean: number;
  /** Sample standard deviation (n−1); NaN when n < 2. */
  std: number;
  /** Standard error of the mean, std/√n; NaN when n < 2. */
  sem: number;
  n: number;
}

export function summarize(values: readonly number[]): Summary {
  const n = values.length;
  if (n === 0) return { mean: Number.NaN, std: Number.NaN, sem: Number.NaN, n };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, std: Number.NaN, sem: Number.NaN, n };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  const std = Math.sqrt(variance);
  return { mean, std, sem: std / Math.sqrt(n), n };
}

/**
 * Unbiased pass@k from n samples with c successes: 1 − C(n−c, k)/C(n, k), computed as
 * 1 − ∏_{i=n−c+1..n} (1 − k/i), which never forms the (huge) binomials.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (![n, c, k].every(Number.isInteger) || n < 1 || k < 1 || c < 0 || c > n) {
    throw new RangeError(`pass@k needs integers n ≥ 1, 0 ≤ c ≤ n, k ≥ 1 (got n=${n}, c=${c}, k=${k})`);
  }
  if (k > n) throw new RangeError(`pass@${k} needs at least ${k} trials per task (got n=${n})`);
  if (c === 0) return 0;
  if (n - c < k) return 1;
  let failAll = 1;
  for (let i = n - c + 1; i <= n; i++) failAll *= 1 - k / i;
  return 1 - failAll;
}

export interface PassAtKResult {
  k: number;
  /** Mean of the per-task pass@k over the tasks that have at least k trials; NaN when none has. */
  value: number;
  /** Tasks averaged. */
  tasks: number;
  /** Tasks left out because they have fewer than k trials. */
  skipped: string[];
}

export function passAtKOverTasks(results: readonly ScoredTrial[], k: number, opts: { threshold?: number } = {}): PassAtKResult {
  let sum = 0;
  let tasks = 0;
  const skipped: string[] = [];
  for (const [task, trials] of [...groupByTask(results)].sort((a, b) => compare(a[0], b[0]))) {
    if (trials.length < k) {
      skipped.push(task);
      continue;
    }
    sum += passAtK(trials.length, trials.filter((t) => isSuccess(t, opts.threshold)).length, k);
    tasks++;
  }
  return { k, value: tasks ? sum / tasks : Number.NaN, tasks, skipped };
}

export interface TaskRow {
  task: string;
  /** Trials of the task. */
  n: number;
  successes: number;
  meanReward: number;
  /** Trials that recorded an exception (their reward still counts as recorded). */
  errors: number;
  /** pass@k for each requested k; null when the task has fewer than k trials. */
  passAtK: Record<string, number | null>;
}

/** One row per task, sorted by task name. */
export function taskTable(results: readonly ScoredTrial[], ks: readonly number[] = [1], opts: { threshold?: number } = {}): TaskRow[] {
  return [...groupByTask(results)]
    .sort((a, b) => compare(a[0], b[0]))
    .map(([task, trials]) => {
      const n = trials.length;
      const successes = trials.filter((t) => isSuccess(t, opts.threshold)).length;
      const passAt: Record<string, number | null> = {};
      for (const k of ks) passAt[String(k)] = n >= k ? passAtK(n, successes, k) : null;
      return {
        task,
        n,
        successes,
        meanReward: trials.reduce((a, t) => a + trialReward(t), 0) / n,
        errors: trials.filter((t) => t.exception_info).length,
        passAtK: passAt,
      };
    });
}

export interface ErrorCount {
  exception_type: string;
  count: number;
  /** trial_name of each, sorted. */
  trials: string[];
}

/** Exceptions by type, most frequent first (ties by type name). */
export function errorsByType(results: readonly ScoredTrial[]): ErrorCount[] {
  const by = new Map<string, string[]>();
  for (const r of results) {
    const type = r.exception_info?.exception_type;
    if (type) by.set(type, [...(by.get(type) ?? []), r.trial_name]);
  }
  return [...by]
    .map(([exception_type, trials]) => ({ exception_type, count: trials.length, trials: trials.sort(compare) }))
    .sort((a, b) => b.count - a.count || compare(a.exception_type, b.exception_type));
}

export interface JobScores {
  nTasks: number;
  nTrials: number;
  nRuns: number;
  /** Mean reward over tasks, per run (run i = i-th attempt of every task). */
  runMeans: number[];
  /** Over runs: mean, std = sample std of the run means, sem = std/√runs. */
  score: Summary;
  /** pass@k by k, averaged over tasks with ≥ k trials. */
  passAtK: Record<string, PassAtKResult>;
  tasks: TaskRow[];
  errors: ErrorCount[];
  /** (run, task) pairs with no trial, each counted 0. */
  missing: Array<{ run: number; task: string }>;
}

/** Everything a report shows, from trial results. `expectedTasks`/`nRuns` make absent trials count 0 (and listed). */
export function scoreJob(
  results: readonly ScoredTrial[],
  opts: { ks?: readonly number[]; expectedTasks?: readonly string[]; nRuns?: number; threshold?: number } = {},
): JobScores {
  const ks = opts.ks ?? [1];
  const runs = perRunMeans(results, opts);
  const passAt: Record<string, PassAtKResult> = {};
  for (const k of ks) passAt[String(k)] = passAtKOverTasks(results, k, opts);
  return {
    nTasks: runs.tasks.length,
    nTrials: results.length,
    nRuns: runs.means.length,
    runMeans: runs.means,
    score: summarize(runs.means),
    passAtK: passAt,
    tasks: taskTable(results, ks, opts),
    errors: errorsByType(results),
    missing: runs.missing,
  };
}

/**
 * Order-independent uncertainty of a job's score, from each task's own trials (no run assignment involved).
 * score = mean over tasks of the task's mean reward (equals the mean over runs when every task has k trials);
 * semTasksFixed = √(Σ_t s_t²/n_t) / T, the standard error from the attempts' randomness with the task set held fixed
 * (s_t² = sample variance of task t's rewards over its n_t trials; a task with one trial contributes 0);
 * bootstrap = seeded resampling of tasks with replacement: how much the score moves with another draw of tasks.
 */
export interface TaskLevelUncertainty {
  score: number;
  semTasksFixed: number;
  bootstrap: { seed: number; resamples: number; std: number; ci95: [number, number] };
}


export function taskLevelUncertainty(results: readonly ScoredTrial[], opts: { expectedTasks?: readonly string[]; seed?: number; resamples?: number } = {}): TaskLevelUncertainty {
  const byTask = groupByTask(results);
  for (const t of opts.expectedTasks ?? []) if (!byTask.has(t)) byTask.set(t, []);
  const tasks = [...byTask.keys()].sort(compare);
  const means = tasks.map((t) => {
    const rs = byTask.get(t)!.map(trialReward);
    return rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : 0; // a task without trials counts 0
  });
  const T = tasks.length;
  const score = T ? means.reduce((a, b) => a + b, 0) / T : Number.NaN;
  let varSum = 0;
  for (const t of tasks) {
    const rs = byTask.get(t)!.map(trialReward);
    if (rs.length < 2) continue;
    const m = rs.reduce((a, b) => a + b, 0) / rs.length;
    varSum += rs.reduce((a, v) => a + (v - m) ** 2, 0) / (rs.length - 1) / rs.length;
  }
  const seed = opts.seed ?? 0;
  const resamples = opts.resamples ?? 2000;
  const rand = seededRandom(seed);
  const draws: number[] = [];
  if (T) {
    for (let b = 0; b < resamples; b++) {
      let s = 0;
      for (let i = 0; i < T; i++) s += means[Math.floor(rand() * T)]!;
      draws.push(s / T);
    }
  }
  draws.sort((a, b) => a - b);
  const q = (p: number) => (draws.length ? draws[Math.min(draws.length - 1, Math.max(0, Math.round(p * (draws.length - 1))))]! : Number.NaN);
  return { score, semTasksFixed: T ? Math.sqrt(varSum) / T : Number.NaN, bootstrap: { seed, resamples, std: summarize(draws).std, ci95: [q(0.025), q(0.975)] } };
}
