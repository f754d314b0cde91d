// Reads any job dir — tmax's (v2, or the older v1) or Harbor's — into the few fields scores need. Never refuses a
// dir that holds trials: a result.json that misses tmax's fields is read with defaults and what was missing is said.
// Harbor's trial names carry no attempt index, so runs are assigned: per task, trials ordered by started_at
// (a missing start sorts last), ties broken by trial name; trial i of that order is run i.
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { rewardOfResult } from "./reward.js";
import { TrialResultCore } from "./schema.js";
import { TamperReport } from "./tamper.js";
import { isRegularFileSync, listDirSync, readTextCappedSync } from "./safeRead.js";

export const RUN_ASSIGNMENT_BY_START = "per task by started_at, ties by trial name (the trial names carry no attempt index)";
export const RUN_ASSIGNMENT_BY_ATTEMPT = "by the attempt index tmax records (`<task>__<attempt>`)";

/** The infrastructure errors when a result does not flag them itself (Harbor's results do not). */
const INFRA_TYPE = /Environment|Build|Docker|Daytona|Modal|E2B|Runloop|Sandbox|Image|Connection|Network|CancelledError|ModelError|APIError|RateLimit|ServiceUnavailable|Engine/i;

export function isInfrastructureError(e: { exception_type: string; infrastructure?: boolean } | null | undefined): boolean {
  if (!e) return false;
  if (typeof e.infrastructure === "boolean") return e.infrastructure;
  return INFRA_TYPE.test(e.exception_type);
}

export interface ReadTrial {
  task_name: string;
  trial_name: string;
  attempt: number;
  reward: number;
  started_at: string | null;
  exception_info: { exception_type: string; exception_message: string; infrastructure: boolean } | null;
  dir: string;
  /** tmax's tamper report of the agent phase, when the result holds a valid one */
  tamper?: TamperReport;
}

export interface ReadJob {
  dir: string;
  name: string;
  format: "tmax" | "tmax-v1" | "harbor" | "unknown";
  /** dataset name (the benchmark column) */
  benchmark: string;
  model: string;
  agent: string;
  k: number;
  /** tasks the job was meant to run (absent trials count 0); null = only those seen */
  expectedTasks: string[] | null;
  trials: ReadTrial[];
  /** how trials were assigned to runs */
  runAssignment: string;
  /** trial dirs without result.json */
  pending: number;
  issues: { file: string; problem: string }[];
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : null);
const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

// A job dir may hold what a sandbox or a local user planted: every file is opened below the job dir without
// following a link (results/safeRead.ts), regular files only, size capped.
function readJson(file: string, root: string, issues: ReadJob["issues"]): unknown {
  try {
    return JSON.parse(readTextCappedSync(file, root));
  } catch (e) {
    issues.push({ file, problem: `unreadable (${(e as Error).message.split("\n")[0].slice(0, 120)})` });
    return undefined;
  }
}

/** Dotted paths of the tmax fields a result lacks (for the one-line note). */
function missingFields(r: Json): string[] {
  const parsed = TrialResultCore.safeParse(r);
  if (parsed.success) return [];
  const out = new Set<string>();
  for (const issue of parsed.error.issues) out.add(issue.path.slice(0, 2).map(String).join(".") || "(root)");
  return [...out];
}

export function readJob(jobDir: string): ReadJob {
  const dir = path.resolve(jobDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`job dir not found: ${dir}`);
  const issues: ReadJob["issues"] = [];
  const configFile = path.join(dir, "config.json");
  const isFile = (file: string) => isRegularFileSync(file, dir);
  const config = existsSync(configFile) ? obj(readJson(configFile, dir, issues)) : null;
  const format: ReadJob["format"] =
    config?.schema === "tmax.job/v2" ? "tmax" : config?.schema === "tmax.job/v1" ? "tmax-v1" : config && (Array.isArray(config.agents) || "n_attempts" in config) ? "harbor" : "unknown";

  const trials: (Omit<ReadTrial, "attempt"> & { attempt: number | null })[] = [];
  let pending = 0;
  const incomplete: { trial: string; missing: string[] }[] = [];
  for (const entry of listDirSync(dir, dir).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!entry.isDirectory() || entry.name.startsWith(".")) continue;
    const trialDir = path.join(dir, entry.name);
    const file = path.join(trialDir, "result.json");
    if (!isFile(file)) {
      if (isFile(path.join(trialDir, "config.json"))) pending++;
      continue;
    }
    const r = obj(readJson(file, dir, issues));
    if (!r) continue;
    if (!str(r.task_name) && !str(r.trial_name) && !obj(r.verifier_result) && !("exception_info" in r)) continue; // not a trial
    const missing = missingFields(r);
    if (missing.length) incomplete.push({ trial: entry.name, missing });
    const cfg = obj(r.config);
    const taskPath = str(obj(cfg?.task)?.path) ?? str(obj(r.task_id)?.path);
    const task = str(r.task_name) ?? (taskPath ? path.basename(taskPath) : entry.name.replace(/__[^_]+$/, ""));
    const exc = obj(r.exception_info);
    let excType = exc ? str(exc.exception_type) ?? "Exception" : null;
    let excMessage = exc ? str(exc.exception_message) ?? "" : "";
    // Harbor also leaves exception.txt next to a failed trial's result
    if (!exc && isFile(path.join(trialDir, "exception.txt"))) {
      let text = "";
      try {
        text = readTextCappedSync(path.join(trialDir, "exception.txt"), dir);
      } catch (e) {
        issues.push({ file: path.join(trialDir, "exception.txt"), problem: `unreadable (${(e as Error).message.split("\n")[0].slice(0, 120)})` });
      }
      excType = /^(\w+(Error|Exception))\b/m.exec(text)?.[1] ?? "Exception";
      excMessage = text.trim().split("\n").pop()?.slice(0, 300) ?? "";
    }
    const exception = excType ? { exception_type: excType, exception_message: excMessage, infrastructure: isInfrastructureError({ exception_type: excType, infrastructure: typeof exc?.infrastructure === "boolean" ? (exc.infrastructure as boolean) : undefined }) } : null;
    let attempt = num(r.attempt) ?? num(cfg?.attempt);
    if (attempt === null && format !== "harbor") {
      const m = /__(\d+)$/.exec(entry.name);
      if (m) attempt = Number(m[1]);
    }
    trials.push({ task_name: task, trial_name: str(r.trial_name) ?? entry.name, attempt, reward: rewardOfResult(r), started_at: str(r.started_at), exception_info: exception, dir: trialDir, ...tamperOf(r.tamper) });
  }
  if (incomplete.length) {
    const fields = [...new Set(incomplete.flatMap((i) => i.missing))];
    issues.push({
      file: dir,
      problem: `${incomplete.length} trial result(s) lack tmax fields (${fields.slice(0, 8).join(", ")}${fields.length > 8 ? ", …" : ""}); read with defaults: reward from verifier_result (0 without), run from start time`,
    });
  }
  if (trials.length === 0 && !config) throw new Error(`${dir} holds no job: no config.json and no trial dir with a result.json`);

  // runs: trust recorded attempts only when every trial has a distinct one per task
  const byTask = new Map<string, typeof trials>();
  for (const t of trials) byTask.set(t.task_name, [...(byTask.get(t.task_name) ?? []), t]);
  let byStart = false;
  for (const ts of byTask.values()) {
    const attempts = ts.map((t) => t.attempt);
    if (attempts.some((a) => a === null) || new Set(attempts).size !== attempts.length) byStart = true;
  }
  const assigned: ReadTrial[] = [];
  for (const ts of byTask.values()) {
    const ordered = byStart
      ? [...ts].sort((a, b) => (a.started_at ?? "\uffff").localeCompare(b.started_at ?? "\uffff") || (a.trial_name < b.trial_name ? -1 : a.trial_name > b.trial_name ? 1 : 0))
      : [...ts].sort((a, b) => a.attempt! - b.attempt!);
    ordered.forEach((t, i) => assigned.push({ ...t, attempt: byStart ? i : t.attempt! }));
  }

  const first = trials.length ? readFirstResult(trials[0]!.dir, dir) : null;
  const agentCfg = obj(Array.isArray(config?.agents) ? config!.agents[0] : null);
  const datasetCfg = obj(Array.isArray(config?.datasets) ? config!.datasets[0] : null);
  const model =
    str(obj(config?.model)?.name) ??
    str(agentCfg?.model_name) ??
    str(obj(obj(first?.agent_info)?.model_info)?.name) ??
    str(config?.agent) ??
    str(agentCfg?.name) ??
    str(obj(first?.agent_info)?.name) ??
    "unknown";
  const datasetPath = str(config?.dataset) ?? str(datasetCfg?.path);
  const benchmark =
    str(config?.dataset_name) ??
    (datasetCfg ? (str(datasetCfg.name) ? `${datasetCfg.name}${str(datasetCfg.version) ? `@${datasetCfg.version}` : ""}` : null) : null) ??
    (datasetPath ? path.basename(datasetPath) : null) ??
    (first && str(first.source) ? path.basename(str(first.source)!) : null) ??
    path.basename(dir);
  const maxPerTask = Math.max(0, ...[...byTask.values()].map((t) => t.length));
  const k = num(config?.k) ?? num(config?.n_attempts) ?? Math.max(1, maxPerTask);
  const expectedTasks =
    obj(config?.task_checksums) ? Object.keys(obj(config!.task_checksums)!) : Array.isArray(config?.tasks) && format === "tmax-v1" ? (config!.tasks as Json[]).map((t) => String(t.name)) : null;
  if (format === "unknown" && config) issues.push({ file: configFile, problem: "neither a tmax nor a Harbor job config; model and benchmark taken from the trials" });
  if (obj(config?.verifier)?.disable === true) issues.push({ file: configFile, problem: "run with --disable-verification: no test ran, its rewards (0) are not scores" });
  return {
    dir,
    name: str(config?.job_name) ?? path.basename(dir),
    format,
    benchmark,
    model,
    agent: str(config?.agent) ?? str(agentCfg?.name) ?? str(obj(first?.agent_info)?.name) ?? "unknown",
    k,
    expectedTasks,
    trials: assigned.sort((a, b) => (a.trial_name < b.trial_name ? -1 : a.trial_name > b.trial_name ? 1 : 0)),
    runAssignment: byStart ? RUN_ASSIGNMENT_BY_START : RUN_ASSIGNMENT_BY_ATTEMPT,
    pending,
    issues,
  };
}

function readFirstResult(trialDir: string, root: string): Json | null {
  try {
    return obj(JSON.parse(readTextCappedSync(path.join(trialDir, "result.json"), root)));
  } catch {
    return null;
  }
}

function tamperOf(value: unknown): { tamper?: TamperReport } {
  const parsed = TamperReport.safeParse(value);
  return parsed.success ? { tamper: parsed.data } : {};
}
