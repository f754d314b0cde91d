// The job dir's own files: the job config (Harbor's JobConfig + tmax's fields) and its check on resume.
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { ModelPrice } from "../model/price.js";
import type { ModelConfig, Profile } from "../model/types.js";
import type { DatasetFilters } from "../tasks/load.js";
import { writeJsonAtomic } from "../util/fs.js";
import { redactUrl } from "../util/redact.js";
import { harborAgent, harborEnvironment } from "../results/harbor.js";
import { INFRA_RETRY_POLICY, retryConfigOf, type RetryPolicy } from "./retryPolicy.js";
import { JobConfig, type AgentName, type TrialResult } from "../results/schema.js";
import type { TrialSettings } from "../trial/trial.js";

export interface JobConfigInput extends TrialSettings {
  jobDir: string;
  agent: AgentName;
  k: number;
  concurrency: number;
  model?: ModelConfig;
  profile: Profile;
  filters?: DatasetFilters;
  /** Harbor's n_tasks: only the first n tasks (by name) after the filters. */
  nTasks?: number;
  /** Harbor's -r/--max-retries: extra runs of a trial that ended in an exception the retry policy allows. */
  infraRetries: number;
  /** Which failures are retried: Harbor's rule (-r, --retry-include/-exclude) or tmax's default, infrastructure only. */
  retryPolicy?: RetryPolicy;
  /** The model's price (--price-*): each trial's cost_usd; none → null costs. A resume without one keeps the stored one. */
  price?: ModelPrice;
  /** --max-cost: no trial starts once the job's summed cost_usd reaches it (the job stays resumable). */
  maxCostUsd?: number;
  /** Harbor's model_name as given (`hosted_vllm/x`) when it differs from the served name. */
  modelName?: string;
  /** Harbor's --delete/--no-delete, recorded (tmax removes each trial's container either way; see docs/eval-and-harbor.md). */
  deleteEnvironment?: boolean;
  /** Harbor's agent setup multiplier: recorded only (tmax's agents have no setup phase). */
  agentSetupTimeoutMultiplier?: number;
}

/**
 * Fields left out of the resume check: identity, concurrency, retries (the endpoint is handled apart), and Harbor's
 * mirrors of tmax's own fields (n_attempts = k, agents = agent/model/limits, datasets = dataset/filters, environment =
 * backend), so that a change is named once, in tmax's terms.
 */
const RUNTIME_FIELDS = new Set(["job_name", "jobs_dir", "job_id", "created_at", "n_concurrent_trials", "retry", "n_attempts", "agents", "datasets", "environment", "dataset_name", "price", "max_cost_usd", "artifacts"]);

const view = (c: Record<string, unknown>, k: string) =>
  JSON.stringify(k === "model" && c.model && typeof c.model === "object" ? { ...(c.model as object), base_url: undefined } : c[k]);

/** Keys of two job configs that differ in a way that changes results. */
export function configDiff(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !RUNTIME_FIELDS.has(k));
  return keys.filter((k) => view(a, k) !== view(b, k));
}

/** The job config a run writes: Harbor's JobConfig fields first, tmax's own next to them. */
export function jobConfigOf(opts: JobConfigInput, o: { jobName: string; datasetDir: string; checksums: Record<string, string> }): JobConfig {
  const model = opts.agent === "tmax" && opts.model ? opts.model : undefined;
  const limits = opts.agent === "tmax" ? (opts.agentLimits as Record<string, number> | undefined) : undefined;
  const f = opts.filters ?? {};
  const list = (v: string | string[] | undefined) => (v === undefined ? undefined : Array.isArray(v) ? v.join(",") : v);
  return {
    job_name: o.jobName,
    jobs_dir: path.dirname(path.resolve(opts.jobDir)),
    n_attempts: opts.k,
    timeout_multiplier: opts.timeoutMultiplier,
    agent_timeout_multiplier: opts.agentTimeoutMultiplier ?? null,
    verifier_timeout_multiplier: opts.verifierTimeoutMultiplier ?? null,
    environment_build_timeout_multiplier: opts.buildTimeoutMultiplier ?? null,
    ...(opts.agentSetupTimeoutMultiplier !== undefined ? { agent_setup_timeout_multiplier: opts.agentSetupTimeoutMultiplier } : {}),
    n_concurrent_trials: opts.concurrency,
    retry: retryConfigOf(opts.infraRetries, opts.retryPolicy ?? INFRA_RETRY_POLICY),
    environment: { ...harborEnvironment(opts.backend, !opts.forceBuild, opts.deleteEnvironment ?? true), ...(opts.resources?.cpus !== undefined ? { override_cpus: opts.resources.cpus } : {}), ...(opts.resources?.memoryMb !== undefined ? { override_memory_mb: opts.resources.memoryMb } : {}) },
    agents: [harborAgent(opts.agent, model ? (opts.modelName ?? model.model) : null, opts.agent === "tmax" ? { profile: opts.profile, ...(limits ?? {}) } : {})],
    datasets: [{ path: o.datasetDir, task_names: f.include?.length ? f.include : null, exclude_task_names: f.exclude?.length ? f.exclude : null, n_tasks: opts.nTasks ?? null }],
    tasks: [],
    ...(opts.extraInstructions?.length ? { extra_instructions: opts.extraInstructions } : {}),
    ...(opts.disableVerification ? { verifier: { disable: true } } : {}),
    ...(opts.artifacts?.length ? { artifacts: opts.artifacts } : {}),
    schema: "tmax.job/v2",
    ...(opts.verifierEnv && Object.keys(opts.verifierEnv).length ? { verifier_env_keys: Object.keys(opts.verifierEnv).sort() } : {}),
    job_id: "",
    dataset: o.datasetDir,
    dataset_name: path.basename(o.datasetDir),
    task_checksums: o.checksums,
    filters: JSON.parse(JSON.stringify({ include: f.include, exclude: f.exclude, category: list(f.category), difficulty: list(f.difficulty), n_tasks: opts.nTasks })),
    agent: opts.agent,
    k: opts.k,
    model: model
      ? { name: model.model, base_url: redactUrl(model.baseUrl), profile: opts.profile, max_tokens: model.maxTokens, temperature: model.temperature, top_p: model.topP, logprobs: model.logprobs }
      : null,
    agent_limits: limits,
    // an absolute path: `--resume` reads the file again from wherever it is run
    ...(opts.agent === "tmax" && opts.prompts?.source ? { prompts: { ...opts.prompts.source, path: path.resolve(opts.prompts.source.path) } } : {}),
    image_map: opts.imageMap,
    backend: opts.backend,
    network: opts.network,
    prefer_prebuilt: Boolean(opts.preferPrebuilt),
    pull: opts.pull ?? null,
    force_build: Boolean(opts.forceBuild),
    pass_env: opts.passEnv ?? [],
    integrity: opts.integrity ?? null,
    verifier_isolation: opts.verifierIsolation ?? null,
    verifier_hardening: opts.verifierHardening ?? true,
    price: opts.price ?? null,
    max_cost_usd: opts.maxCostUsd ?? null,
    created_at: new Date().toISOString(),
  };
}

/** Reads a job dir's tmax config; null when there is none, an error naming the file when it is not tmax's. */
export function readJobConfig(jobDir: string): JobConfig | null {
  const file = path.join(jobDir, "config.json");
  if (!existsSync(file)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message.split("\n")[0]})`);
  }
  const parsed = JobConfig.safeParse(raw);
  if (parsed.success) return parsed.data;
  const schema = (raw as { schema?: unknown })?.schema;
  const what = schema === "tmax.job/v1" ? "a job of an older tmax (tmax.job/v1), which cannot be resumed" : schema ? `not a tmax.job/v2 config` : "not a tmax job config (another tool's job?)";
  throw new Error(`${file} is ${what}`);
}

/** Creates the job dir with its config, or (resume) checks the stored one; returns the job's UUID. */
/**
 * Creates the job dir with its config, or (resume) checks the stored one; returns the job's UUID. `accepted` maps
 * the stored config to what this run may change in it (tasks that joined after a fix), written back when it differs.
 */
export async function prepareJobDir(jobDir: string, config: JobConfig, resume: boolean, accepted: (stored: JobConfig) => JobConfig = (c) => c): Promise<string> {
  const file = path.join(jobDir, "config.json");
  if (existsSync(file)) {
    if (!resume) throw new Error(`job dir ${jobDir} already holds a job; pass --resume to finish it, or choose another --job-dir`);
    let original: JobConfig;
    try {
      original = readJobConfig(jobDir)!;
    } catch (e) {
      throw new Error(`cannot resume: ${(e as Error).message}`);
    }
    let stored = accepted(original);
    const diff = configDiff(stored, config);
    if (diff.length) throw new Error(`cannot resume ${jobDir}: the job config changed (${diff.join(", ")}); start a new job instead`);
    // the endpoint may move between runs: record the one in use now
    if (stored.model && config.model && stored.model.base_url !== config.model.base_url) stored = { ...stored, model: { ...stored.model, base_url: config.model.base_url } };
    if (JSON.stringify(stored) !== JSON.stringify(original)) await writeJsonAtomic(file, stored);
    return stored.job_id;
  }
  if (resume) throw new Error(`cannot resume: ${jobDir} holds no job (config.json missing)`);
  await mkdir(jobDir, { recursive: true });
  const jobId = randomUUID();
  await writeJsonAtomic(file, { ...config, job_id: jobId });
  return jobId;
}

/** A finished trial that --retry-errors asks to run again: `true` = infrastructure errors, a list = these exception types. */
export function shouldRetry(r: TrialResult, retry: true | string[] | undefined): boolean {
  if (!retry || !r.exception_info) return false;
  return retry === true ? Boolean(r.exception_info.infrastructure) : retry.includes(r.exception_info.exception_type);
}

/** started_at of an earlier run of this job, so that a resumed job keeps its start. */
export function storedStart(jobDir: string): string | undefined {
  try {
    const v = JSON.parse(readFileSync(path.join(jobDir, "result.json"), "utf8")).started_at;
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}
