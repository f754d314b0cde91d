// Readers for the explorer and the HTML report. They never throw on bad data: every problem becomes an
// Issue (file + one-line problem) and whatever can still be read is returned.
import { stat } from "node:fs/promises";
import path from "node:path";
import { MAX_JSON_BYTES, isRegularFile, listDir, readTextCapped } from "../results/safeRead.js";
import { rewardOfResult } from "../results/reward.js";
import { JobConfig, TrialResultCore } from "../results/schema.js";
import { TamperReport, tamperSummary } from "../results/tamper.js";
import { Trajectory } from "../agent/schema.js";
import { TRAINER_LOGPROBS_FILE as TRAINER_LOGPROBS } from "../rl/openInstruct.js";
import { atifToView, messagesToView, trajectoryKind } from "../results/atif.js";

export interface Issue {
  file: string;
  problem: string;
}

/** One finished trial, flattened for tables and charts. Null = not recorded in the result file. */
export interface TrialRow {
  /** trial dir name (`task__attempt` for tmax) */
  trial: string;
  task: string;
  benchmark: string;
  model: string;
  attempt: number | null;
  reward: number;
  /** agent exit status, or `exception: <type>` when the trial failed before the agent finished */
  exitStatus: string;
  exception: string | null;
  /** the tamper report in one line ("clean", "flagged: path-dir 2", "zeroed: …") and its findings; null when absent */
  tamper: string | null;
  tamperFindings: { path: string; change: string; class: string }[];
  startedAt: string | null;
  /** whole trial wall time (environment setup to verifier end), seconds */
  durationSec: number | null;
  /** agent execution phase only, seconds */
  agentSec: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  nSteps: number | null;
  /** absolute path of the trajectory: agent/tmax-trajectory.json, else agent/trajectory.json (ATIF or a message list) */
  trajectory: string | null;
  dir: string;
}

export interface JobData {
  dir: string;
  name: string;
  /** dataset dir name from config.json (trials may still name their own `source`) */
  benchmark: string | null;
  model: string | null;
  agent: string | null;
  k: number | null;
  trials: TrialRow[];
  /** trial dirs without result.json (still running or interrupted) */
  pending: number;
  issues: Issue[];
}

export interface RolloutSetRef {
  /** run name: the `{run}` of `{run}_rollouts_{shard}.jsonl` */
  run: string;
  dir: string;
  /** the dir files are opened below (the explorer's root); default `dir` */
  root?: string;
  shards: string[];
  trainerLogprobs: { step: number; file: string }[];
}

export interface Discovered {
  root: string;
  jobs: string[];
  rollouts: RolloutSetRef[];
  issues: Issue[];
}

export const ROLLOUT_SHARD = /^(.+)_rollouts_(\d{6})\.jsonl$/;
export { TRAINER_LOGPROBS_FILE as TRAINER_LOGPROBS } from "../rl/openInstruct.js";
const SKIP_DIRS = new Set(["node_modules", ".git", "__pycache__"]);

/** One-line description of any thrown value. */
export function describeError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e && e.code === "ENOENT") return "file not found";
  if (e && e.code === "EACCES") return "permission denied";
  if (e && e.code === "EISDIR") return "is a directory, expected a file";
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0].slice(0, 300);
}

/** Reads and parses a JSON file below `root`; on failure records an issue and returns undefined. */
export async function readJsonFile(file: string, issues: Issue[], root: string): Promise<unknown> {
  let text: string;
  try {
    // job dirs may hold files a sandbox or a local user planted: regular files only, no link on the way, bounded size
    text = await readTextCapped(file, root, MAX_JSON_BYTES);
  } catch (err) {
    issues.push({ file, problem: `cannot read: ${describeError(err)}` });
    return undefined;
  }
  if (text.trim() === "") {
    issues.push({ file, problem: "empty file" });
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    issues.push({ file, problem: `invalid JSON (truncated or not JSON): ${describeError(err)}` });
    return undefined;
  }
}

function looksLikeJobConfig(v: unknown): boolean {
  const o = obj(v);
  if (!o) return false;
  // tmax (v1, v2) or Harbor's JobConfig (agents list, n_attempts)
  return o.schema === "tmax.job/v1" || o.schema === "tmax.job/v2" || Array.isArray(o.agents) || typeof o.n_attempts === "number";
}

/**
 * Finds job dirs (a tmax config.json, or child dirs holding result.json as Harbor writes them) and rollout
 * shard sets under `root`, descending at most `maxDepth` levels. A job dir's trials are not searched further.
 */
export async function discoverSources(root: string, maxDepth = 3): Promise<Discovered> {
  const out: Discovered = { root: path.resolve(root), jobs: [], rollouts: [], issues: [] };
  try {
    const st = await stat(out.root);
    if (!st.isDirectory()) {
      out.issues.push({ file: out.root, problem: "not a directory" });
      return out;
    }
  } catch (err) {
    out.issues.push({ file: out.root, problem: `cannot open: ${describeError(err)}` });
    return out;
  }
  const sets = new Map<string, RolloutSetRef>();
  const trainer: { run: string; dir: string; step: number; file: string }[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await listDir(dir, out.root);
    } catch (err) {
      out.issues.push({ file: dir, problem: `cannot list: ${describeError(err)}` });
      return;
    }
    // a trial's `sandbox/` holds what the agent left in /logs: never a source (a planted config.json or
    // *_rollouts_*.jsonl there would show as a job or a rollout set when the explorer is opened on a trial)
    const isTrial = entries.some((e) => e.isFile() && e.name === "result.json");
    const subdirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith(".") && !SKIP_DIRS.has(e.name) && !(isTrial && e.name === "sandbox"));
    for (const e of entries) {
      if (!e.isFile()) continue;
      const shard = ROLLOUT_SHARD.exec(e.name);
      if (shard) {
        const key = `${dir}\0${shard[1]}`;
        let set = sets.get(key);
        if (!set) sets.set(key, (set = { run: shard[1], dir, root: out.root, shards: [], trainerLogprobs: [] }));
        set.shards.push(path.join(dir, e.name));
        continue;
      }
      const tl = TRAINER_LOGPROBS.exec(e.name);
      if (tl) trainer.push({ run: tl[1], dir, step: Number(tl[2]), file: path.join(dir, e.name) });
    }
    if (await isJobDir(out.root, dir, entries.some((e) => e.isFile() && e.name === "config.json"), subdirs.map((d) => d.name))) {
      out.jobs.push(dir);
      return;
    }
    if (depth >= maxDepth) return;
    for (const d of subdirs) await walk(path.join(dir, d.name), depth + 1);
  };
  await walk(out.root, 0);
  for (const set of sets.values()) {
    set.shards.sort();
    // trainer logprobs of the same run: same dir first, else anywhere under root
    const same = trainer.filter((t) => t.run === set.run && t.dir === set.dir);
    const chosen = same.length ? same : trainer.filter((t) => t.run === set.run);
    set.trainerLogprobs = chosen.map(({ step, file }) => ({ step, file })).sort((a, b) => a.step - b.step);
    out.rollouts.push(set);
  }
  const orphanRuns = new Set(trainer.filter((t) => !out.rollouts.some((r) => r.run === t.run)).map((t) => t.run));
  for (const run of orphanRuns) {
    out.issues.push({ file: trainer.find((t) => t.run === run)!.dir, problem: `trainer logprobs for run "${run}" but no ${run}_rollouts_*.jsonl shards` });
  }
  out.jobs.sort();
  out.rollouts.sort((a, b) => (a.dir + a.run).localeCompare(b.dir + b.run));
  if (out.jobs.length === 0 && out.rollouts.length === 0) {
    out.issues.push({
      file: out.root,
      problem: `no job directories or rollout shards (*_rollouts_NNNNNN.jsonl) found within ${maxDepth} levels`,
    });
  }
  return out;
}

async function isJobDir(root: string, dir: string, hasConfig: boolean, subdirs: string[]): Promise<boolean> {
  if (hasConfig) {
    const cfg = await readJsonFile(path.join(dir, "config.json"), [], root);
    if (looksLikeJobConfig(cfg)) return true;
  }
  // Harbor-style job dir: trial dirs whose result.json names a task (a job's own result.json names a job).
  // Check a few, not all, to stay shallow.
  for (const name of subdirs.slice(0, 20)) {
    const file = path.join(dir, name, "result.json");
    if (!(await isRegularFile(file, root))) continue;
    const r = obj(await readJsonFile(file, [], root));
    if (r ? "task_name" in r || "trial_name" in r : /__/.test(name)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// jobs

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
const obj = (v: unknown): Record<string, unknown> | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

function seconds(start: unknown, end: unknown): number | null {
  const a = typeof start === "string" ? Date.parse(start) : NaN;
  const b = typeof end === "string" ? Date.parse(end) : NaN;
  return Number.isFinite(a) && Number.isFinite(b) && b >= a ? (b - a) / 1000 : null;
}

/** Dotted paths of fields the zod schema rejected, "missing x" for absent ones. */
function schemaProblems(error: { issues: { path: PropertyKey[]; message: string }[] }, value: unknown, max = 6): string {
  const missing: string[] = [];
  const invalid: string[] = [];
  for (const issue of error.issues) {
    const p = issue.path.map(String).join(".");
    let cur: unknown = value;
    for (const k of issue.path) cur = obj(cur)?.[k as string];
    (cur === undefined ? missing : invalid).push(p || "(root)");
  }
  const parts: string[] = [];
  if (missing.length) parts.push(`missing ${missing.slice(0, max).join(", ")}${missing.length > max ? ` (+${missing.length - max} more)` : ""}`);
  if (invalid.length) parts.push(`invalid ${invalid.slice(0, max).join(", ")}${invalid.length > max ? ` (+${invalid.length - max} more)` : ""}`);
  return parts.join("; ");
}

/** Turns one parsed result.json (tmax or Harbor) into a row, recording what was missing. */
export function trialRowFromResult(
  raw: unknown,
  trialDir: string,
  defaults: { benchmark: string | null; model: string | null },
  issues: Issue[],
): TrialRow | null {
  const file = path.join(trialDir, "result.json");
  const r = obj(raw);
  if (!r) {
    issues.push({ file, problem: "not a JSON object" });
    return null;
  }
  const parsed = TrialResultCore.safeParse(r);
  if (!parsed.success) {
    issues.push({ file, problem: `not a complete tmax trial result (${schemaProblems(parsed.error, r)}); shown with defaults` });
  }
  const trialName = path.basename(trialDir);
  const task = str(r.task_name) ?? trialName.replace(/__[^_]*$/, "");
  const agentInfo = obj(r.agent_info);
  const modelInfo = obj(agentInfo?.model_info);
  const agentResult = obj(r.agent_result);
  const exc = obj(r.exception_info);
  const excType = exc ? str(exc.exception_type) ?? "Exception" : null;
  let attempt = num(r.attempt);
  if (attempt === null) {
    const m = /__(\d+)$/.exec(str(r.trial_name) ?? trialName);
    if (m && m[1]!.length < 7) attempt = Number(m[1]); // Harbor's 7-char random suffixes are not attempts
  }
  const source = str(r.source);
  const execPhase = obj(r.agent_execution);
  const trajectory = path.join(trialDir, "agent", "tmax-trajectory.json");
  return {
    trial: trialName,
    task,
    benchmark: defaults.benchmark ?? (source ? path.basename(source) : "unknown"),
    model: defaults.model ?? str(modelInfo?.name) ?? str(agentInfo?.name) ?? "unknown",
    attempt,
    reward: rewardOfResult(r),
    exitStatus: str(agentResult?.exit_status) ?? (excType ? `exception: ${excType}` : "unknown"),
    exception: exc ? `${excType}: ${str(exc.exception_message) ?? ""}`.slice(0, 500) : null,
    ...tamperOf(r.tamper),
    startedAt: str(r.started_at),
    durationSec: seconds(r.started_at, r.finished_at),
    agentSec: seconds(execPhase?.started_at, execPhase?.finished_at),
    inputTokens: num(agentResult?.n_input_tokens),
    outputTokens: num(agentResult?.n_output_tokens),
    nSteps: num(agentResult?.n_steps),
    trajectory,
    dir: trialDir,
  };
}

/** The optional tamper report of a result.json, read defensively (untrusted file). */
function tamperOf(raw: unknown): Pick<TrialRow, "tamper" | "tamperFindings"> {
  const parsed = TamperReport.safeParse(raw);
  if (!parsed.success) return { tamper: null, tamperFindings: [] };
  const findings = parsed.data.findings.slice(0, 50).map((f) => ({ path: f.path.slice(0, 300), change: f.change, class: f.class.slice(0, 40) }));
  return { tamper: tamperSummary(parsed.data).slice(0, 300), tamperFindings: findings };
}

/** Reads a job dir below `root` (default: the job dir itself): config.json (optional for Harbor dirs) and every trial's result.json. */
export async function loadJob(jobDir: string, root = jobDir): Promise<JobData> {
  const dir = path.resolve(jobDir);
  const isFile = (file: string) => isRegularFile(file, root);
  const issues: Issue[] = [];
  const job: JobData = { dir, name: path.basename(dir), benchmark: null, model: null, agent: null, k: null, trials: [], pending: 0, issues };
  let entries;
  try {
    entries = await listDir(dir, root);
  } catch (err) {
    issues.push({ file: dir, problem: `cannot open job dir: ${describeError(err)}` });
    return job;
  }
  const configFile = path.join(dir, "config.json");
  if (entries.some((e) => e.name === "config.json")) {
    const raw = await readJsonFile(configFile, issues, root);
    if (raw !== undefined) {
      const cfg = JobConfig.safeParse(raw);
      const o = obj(raw) ?? {};
      if (!cfg.success && o.schema === "tmax.job/v2") {
        issues.push({ file: configFile, problem: `job config does not match tmax.job/v2 (${schemaProblems(cfg.error, raw)})` });
      }
      // tmax's fields first, Harbor's JobConfig (agents[0], datasets[0], n_attempts) otherwise
      const agent0 = obj(Array.isArray(o.agents) ? o.agents[0] : null);
      const dataset0 = obj(Array.isArray(o.datasets) ? o.datasets[0] : null);
      job.name = str(o.job_name) ?? job.name;
      const dataset = str(o.dataset) ?? str(dataset0?.path);
      const named = str(dataset0?.name) ? `${dataset0!.name}${str(dataset0!.version) ? `@${dataset0!.version}` : ""}` : null;
      job.benchmark = str(o.dataset_name) ?? named ?? (dataset ? path.basename(dataset) : null);
      job.model = str(obj(o.model)?.name) ?? str(agent0?.model_name);
      job.agent = str(o.agent) ?? str(agent0?.name) ?? str(agent0?.import_path);
      job.k = num(o.k) ?? num(o.n_attempts);
      // agents without a model (oracle, nop) are a column of their own
      if (!job.model && job.agent && job.agent !== "tmax") job.model = job.agent;
    }
  }
  const trialDirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith(".")).map((e) => e.name).sort();
  const rows = await Promise.all(
    trialDirs.map(async (name) => {
      const trialDir = path.join(dir, name);
      const resultFile = path.join(trialDir, "result.json");
      if (!(await isFile(resultFile))) {
        if (await isFile(path.join(trialDir, "config.json"))) job.pending++;
        return null;
      }
      const raw = await readJsonFile(resultFile, issues, root);
      if (raw === undefined) return null;
      const row = trialRowFromResult(raw, trialDir, { benchmark: job.benchmark, model: job.model }, issues);
      if (row && !(await isFile(row.trajectory!))) {
        const atif = path.join(trialDir, "agent", "trajectory.json");
        row.trajectory = (await isFile(atif)) ? atif : null;
      }
      return row;
    }),
  );
  job.trials = rows.filter((r): r is TrialRow => r !== null);
  if (job.trials.length === 0) issues.push({ file: dir, problem: job.pending ? `no finished trials yet (${job.pending} pending)` : "no trials with result.json" });
  return job;
}

/** A trajectory file below `root` (default: its own dir), raw (so partial files still render) plus what is wrong with it. */
export async function loadTrajectory(
  file: string,
  root = path.dirname(file),
): Promise<{ trajectory: Record<string, unknown> | null; issues: Issue[]; raw?: string }> {
  const issues: Issue[] = [];
  const raw = await readJsonFile(file, issues, root);
  if (raw === undefined) return { trajectory: null, issues };
  // Harbor's ATIF and a plain list of chat messages (custom Harbor agents) are drawn as turns too
  const kind = trajectoryKind(raw);
  if (kind === "atif") return { trajectory: atifToView(raw as Record<string, unknown>), issues };
  if (kind === "messages") {
    issues.push({ file, problem: "a plain list of chat messages (no token counts or exit codes); shown as turns" });
    return { trajectory: messagesToView(raw), issues };
  }
  const o = obj(raw);
  if (!o) {
    issues.push({ file, problem: "not a JSON object" });
    return { trajectory: null, issues };
  }
  // another tool's trajectory: show it as JSON rather than as an empty conversation
  const schema = o.schema ?? o.schema_version;
  if (schema !== "tmax.trajectory/v1") {
    issues.push({ file, problem: `not a tmax.trajectory/v1 file${typeof schema === "string" ? ` (schema ${schema})` : ""}; shown as raw JSON` });
    return { trajectory: null, issues, raw: JSON.stringify(o, null, 2).slice(0, 200_000) };
  }
  const parsed = Trajectory.safeParse(o);
  if (!parsed.success) issues.push({ file, problem: `not a complete tmax.trajectory/v1 (${schemaProblems(parsed.error, o)}); showing what is there` });
  if (!Array.isArray(o.steps)) o.steps = [];
  return { trajectory: o, issues };
}
