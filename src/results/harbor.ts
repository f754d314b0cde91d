// Harbor's shapes of the files tmax writes: trial config, job config, job result (stats per eval key) and lock.
// Pure builders; the runner and the trial write what they return.
import path from "node:path";
import type { SandboxBackendName } from "../sandbox/types.js";
import { TMAX_VERSION } from "../util/version.js";
import { passAtK } from "./metrics.js";
import type { AgentName, EvalStats, JobConfig, JobResult, TrialConfig, TrialResult } from "./schema.js";

/** Per-phase timeout multipliers; a phase's own multiplier replaces the overall one (Harbor's rule). */
export interface TimeoutMultipliers {
  timeoutMultiplier: number;
  agentTimeoutMultiplier?: number;
  verifierTimeoutMultiplier?: number;
  buildTimeoutMultiplier?: number;
}

export function phaseMultipliers(m: TimeoutMultipliers): { agent: number; verifier: number; build: number } {
  return {
    agent: m.agentTimeoutMultiplier ?? m.timeoutMultiplier,
    verifier: m.verifierTimeoutMultiplier ?? m.timeoutMultiplier,
    build: m.buildTimeoutMultiplier ?? m.timeoutMultiplier,
  };
}

/** Harbor's EnvironmentType for a tmax backend; the local backend has none, so it is named by import_path. */
export function harborEnvironment(backend: SandboxBackendName, preferPrebuilt = false, deleteAfter = true) {
  const known = backend === "docker" || backend === "daytona";
  return {
    type: known ? backend : null,
    import_path: known ? null : `tmax:${backend}`,
    force_build: !preferPrebuilt,
    delete: deleteAfter,
    kwargs: {},
  };
}

export function harborAgent(agent: AgentName, model: string | null, kwargs: Record<string, unknown> = {}) {
  return { name: agent, import_path: null, model_name: agent === "tmax" ? model : null, kwargs, env: {} };
}

export interface TrialConfigInput extends TimeoutMultipliers {
  taskName: string;
  taskDir: string;
  trialDir: string;
  attempt: number;
  jobName: string;
  jobId: string | null;
  datasetName: string | null;
  agent: AgentName;
  model: string | null;
  backend: SandboxBackendName;
  preferPrebuilt?: boolean;
  agentKwargs?: Record<string, unknown>;
  disableVerification?: boolean;
}

export function harborTrialConfig(i: TrialConfigInput): TrialConfig {
  return {
    task: { path: i.taskDir, source: i.datasetName },
    trial_name: path.basename(i.trialDir),
    trials_dir: path.dirname(path.resolve(i.trialDir)),
    timeout_multiplier: i.timeoutMultiplier,
    agent_timeout_multiplier: i.agentTimeoutMultiplier ?? null,
    verifier_timeout_multiplier: i.verifierTimeoutMultiplier ?? null,
    environment_build_timeout_multiplier: i.buildTimeoutMultiplier ?? null,
    agent: harborAgent(i.agent, i.model, i.agentKwargs),
    environment: harborEnvironment(i.backend, i.preferPrebuilt),
    verifier: { override_timeout_sec: null, disable: Boolean(i.disableVerification) },
    job_id: i.jobId,
    task_name: i.taskName,
    attempt: i.attempt,
    job_name: i.jobName,
    tmax_agent: i.agent,
  };
}

/** Harbor's RetryConfig.exclude_exceptions default (harbor/models/job/config.py). */
export const HARBOR_RETRY_EXCLUDE: readonly string[] = [
  "AgentTimeoutError",
  "VerifierTimeoutError",
  "RewardFileNotFoundError",
  "RewardFileEmptyError",
  "VerifierOutputParseError",
  "ApiUsageLimitError",
  "AgentSafetyRefusalError",
  "AgentAuthenticationError",
  "ModelNotFoundError",
];

/**
 * tmax's exception names mapped to Harbor's where Harbor has one (its retry config and viewer know these);
 * the rest keep tmax's name (BuildError, ModelError, EnvironmentError, TaskError, AgentError).
 */
const HARBOR_EXCEPTION_NAMES: Record<string, string> = {
  RewardFileError: "VerifierOutputParseError",
  AbortError: "CancelledError",
};
export const harborExceptionType = (type: string) => HARBOR_EXCEPTION_NAMES[type] ?? type;

/** Harbor's eval key: `<agent>__<model>__<dataset>` (`<agent>__<dataset>` without a model), "/" → "-" in each part. */
export function evalKey(agent: string, model: string | null | undefined, dataset: string | null | undefined): string {
  const clean = (s: string) => s.replace(/\//g, "-");
  const d = clean(dataset || "adhoc");
  return model ? `${clean(agent)}__${clean(model)}__${d}` : `${clean(agent)}__${d}`;
}

/** Which k's Harbor-style pass@k is given for: 2, 4, 8, … up to the attempts per task, plus that number itself. */
export function passAtKs(nAttempts: number): number[] {
  const ks = new Set<number>();
  for (let k = 2; k <= nAttempts; k *= 2) ks.add(k);
  if (nAttempts >= 2) ks.add(nAttempts);
  return [...ks].sort((a, b) => a - b);
}

/** JobStats.evals from trial results: mean (errored trials count 0), pass@k per task averaged, reward and exception stats. */
export function evalStats(results: readonly TrialResult[], nAttempts: number): Record<string, EvalStats> {
  const groups = new Map<string, TrialResult[]>();
  for (const r of results) {
    const key = evalKey(r.agent_info.name, r.agent_info.model_info?.name, r.source);
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out: Record<string, EvalStats> = {};
  for (const [key, trials] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const reward_stats: EvalStats["reward_stats"] = {};
    const exception_stats: EvalStats["exception_stats"] = {};
    let withRewards = 0;
    for (const t of [...trials].sort((a, b) => (a.trial_name < b.trial_name ? -1 : 1))) {
      if (t.verifier_result) {
        withRewards++;
        for (const [name, value] of Object.entries(t.verifier_result.rewards)) {
          const byValue = (reward_stats[name] ??= {});
          (byValue[String(value)] ??= []).push(t.trial_name);
        }
      }
      if (t.exception_info) (exception_stats[t.exception_info.exception_type] ??= []).push(t.trial_name);
    }
    const byTask = new Map<string, TrialResult[]>();
    for (const t of trials) byTask.set(t.task_name, [...(byTask.get(t.task_name) ?? []), t]);
    const pass_at_k: Record<string, number> = {};
    for (const k of passAtKs(nAttempts)) {
      const eligible = [...byTask.values()].filter((ts) => ts.length >= k);
      if (eligible.length === 0) continue;
      pass_at_k[String(k)] = eligible.reduce((s, ts) => s + passAtK(ts.length, ts.filter((t) => t.reward >= 1).length, k), 0) / eligible.length;
    }
    out[key] = {
      n_trials: withRewards,
      n_errors: trials.filter((t) => t.exception_info).length,
      metrics: [{ mean: trials.reduce((s, t) => s + (Number.isFinite(t.reward) ? t.reward : 0), 0) / trials.length }],
      pass_at_k,
      reward_stats,
      exception_stats,
    };
  }
  return out;
}

export interface JobResultInput {
  jobId: string;
  jobName: string;
  nTotal: number;
  nAttempts: number;
  running: number;
  retries: number;
  startedAt: string;
  finished: boolean;
}

export function harborJobResult(results: readonly TrialResult[], i: JobResultInput): JobResult {
  const now = new Date().toISOString();
  const sum = (f: (r: TrialResult) => number | null | undefined) => {
    const values = results.map(f).filter((v): v is number => typeof v === "number");
    return values.length ? values.reduce((a, b) => a + b, 0) : null;
  };
  const errored = results.filter((r) => r.exception_info).length;
  return {
    id: i.jobId,
    started_at: i.startedAt,
    updated_at: now,
    finished_at: i.finished ? now : null,
    n_total_trials: i.nTotal,
    stats: {
      n_completed_trials: results.length,
      n_errored_trials: errored,
      n_running_trials: i.running,
      n_pending_trials: Math.max(0, i.nTotal - results.length - i.running),
      n_cancelled_trials: results.filter((r) => r.exception_info?.exception_type === "CancelledError").length,
      n_retries: i.retries,
      evals: evalStats(results, i.nAttempts),
      n_input_tokens: sum((r) => r.agent_result?.n_input_tokens),
      n_cache_tokens: sum((r) => r.agent_result?.n_cache_tokens),
      n_output_tokens: sum((r) => r.agent_result?.n_output_tokens),
      cost_usd: sum((r) => r.agent_result?.cost_usd),
    },
    job_name: i.jobName,
    mean_reward: results.length ? results.reduce((s, r) => s + r.reward, 0) / results.length : null,
    n_infra_errors: results.filter((r) => r.exception_info?.infrastructure).length,
  };
}

/** Flags whose next argument is a secret: never written to lock.json. */
const SECRET_FLAGS = new Set(["--api-key"]);

export function sanitizeInvocation(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag] = a.split("=", 1);
    if (SECRET_FLAGS.has(flag!) && a.includes("=")) out.push(`${flag}=***`);
    else if (SECRET_FLAGS.has(a)) {
      out.push(a, "***");
      i++;
    } else out.push(a);
  }
  return out;
}

/** Harbor's JobLock: the resolved run input, one TrialLock per trial with the task's content digest. */
export function harborLock(config: JobConfig, tasks: { name: string; dir: string; checksum: string }[], invocation: readonly string[]) {
  const agent = config.agents[0]!;
  const trials = [];
  for (let attempt = 0; attempt < config.n_attempts; attempt++) {
    for (const t of tasks) {
      trials.push({
        task: {
          name: t.name,
          type: "local",
          // tasks that failed to load have no checksum; a digest of zeros says so without breaking the format
          digest: `sha256:${/^[0-9a-f]{64}$/.test(t.checksum) ? t.checksum : "0".repeat(64)}`,
          source: config.dataset_name,
          path: t.dir,
          git_url: null,
          git_commit_id: null,
        },
        timeout_multiplier: config.timeout_multiplier,
        agent_timeout_multiplier: config.agent_timeout_multiplier,
        verifier_timeout_multiplier: config.verifier_timeout_multiplier,
        agent_setup_timeout_multiplier: null,
        environment_build_timeout_multiplier: config.environment_build_timeout_multiplier,
        agent,
        skills: [],
        environment: config.environment,
        verifier: { override_timeout_sec: null, disable: Boolean(config.verifier?.disable) },
      });
    }
  }
  return {
    schema_version: 1,
    created_at: config.created_at,
    harbor: { version: null, git_commit_hash: null, is_editable: null },
    invocation: sanitizeInvocation(invocation),
    n_concurrent_trials: config.n_concurrent_trials,
    retry: {
      max_retries: config.retry.max_retries,
      include_exceptions: config.retry.include_exceptions ?? null,
      exclude_exceptions: config.retry.exclude_exceptions === undefined ? [...HARBOR_RETRY_EXCLUDE] : config.retry.exclude_exceptions,
      wait_multiplier: 1,
      min_wait_sec: 1,
      max_wait_sec: 60,
    },
    trials,
    tmax: { version: TMAX_VERSION },
  };
}
