// `tmax eval`: a job over a dataset with a live progress line. `--resume DIR` alone continues with the stored config.
import { readFileSync } from "node:fs";
import { stripControl } from "../util/terminal.js";
import path from "node:path";
import { readJobConfig } from "../jobs/jobDir.js";
import { INFRA_RETRY_POLICY, retryPolicyOf, retryPolicyOfConfig } from "../jobs/retryPolicy.js";
import { runJob, validateJobOptions, type JobOptions, type JobProgress } from "../jobs/runner.js";
import type { AgentName, JobConfig } from "../results/schema.js";
import { createModelClient } from "../model/client.js";
import type { ModelConfig } from "../model/types.js";
import { priceFromFlags } from "../model/price.js";
import { preflightModel, requireTrainServer } from "../model/preflight.js";
import { createTokenClient } from "../model/tokens.js";
import { parseImageMap } from "../sandbox/docker/build.js";
import { modelConfig, tokenClientConfig, TRAIN_SEED, trialSettings, type AgentCliOptions, type ModelCliOptions, type SandboxCliOptions } from "./options.js";
import { resolveDatasetArg } from "./datasets.js";
import { createLiveView } from "./liveView.js";
import { harborJobName } from "./harborFlags.js";
import { UsageError } from "./exitCodes.js";
import { preflightEngine } from "./preflight.js";
import { onStop, stopSignal } from "../sandbox/cleanup.js";
import { bold, dim, isQuiet, red, setQuiet, stepPrinter, yellow } from "./render.js";
import type { EnvironmentEvent } from "../trial/trial.js";

export interface EvalOptions extends ModelCliOptions, AgentCliOptions, SandboxCliOptions {
  dataset?: string;
  registry?: string;
  resume?: string;
  agent: AgentName;
  k: number;
  n: number;
  jobDir?: string;
  timeoutMultiplier: number;
  agentTimeoutMultiplier?: number;
  verifierTimeoutMultiplier?: number;
  buildTimeoutMultiplier?: number;
  include?: string[];
  exclude?: string[];
  category?: string;
  difficulty?: string;
  nTasks?: number;
  infraRetries: number;
  pauseAfter: number;
  maxPause: number;
  /** Harbor's --artifact paths (checked), --disable-verification, --no-delete (delete false). */
  artifact?: string[];
  disableVerification?: boolean;
  enableVerification?: boolean;
  delete?: boolean;
  /** Harbor's retry rule (set when -r/--max-retries or --retry-include/-exclude is given); else infrastructure only. */
  retryHarbor?: boolean;
  /** Harbor's --retry-include / --retry-exclude (null exclude: a -c file's `exclude_exceptions: null`). */
  retryInclude?: string[];
  retryExclude?: string[] | null;
  /** true = infrastructure errors; a comma-separated list = these exception types */
  retryErrors?: boolean | string;
  skipInvalid?: boolean;
  verbose: boolean;
  priceTable?: string;
  priceInput?: number;
  priceOutput?: number;
  priceCachedInput?: number;
  maxCost?: number;
  /** Harbor's -q: no per-trial progress. */
  quiet?: boolean;
  /** Harbor's --debug: stacks of errors. */
  debug?: boolean;
  /** Harbor's model_name as typed (`hosted_vllm/x`); `model` is the served name. */
  modelName?: string;
  agentSetupTimeoutMultiplier?: number;
  /** --override-cpus / --override-memory-mb */
  resources?: { cpus?: number; memoryMb?: number };
  extraInstructions?: string[];
  verifierEnv?: Record<string, string>;
}

/** Options that may differ on resume: where the model is served, how fast to go, how loud to be. */
const RUNTIME_OPTIONS = new Set(["baseUrl", "apiKey", "n", "infraRetries", "retryHarbor", "retryInclude", "retryExclude", "artifact", "delete", "retryErrors", "skipInvalid", "verbose", "requestTimeout", "maxRetries", "modelMaxRetries", "unsafe", "resume", "quiet", "debug", "verifierEnv"]);

/** The flag a user types for an option key (for messages). */
const FLAG: Record<string, string> = {
  dataset: "--dataset",
  agent: "--agent",
  k: "-k/--n-attempts",
  model: "--model",
  profile: "--profile",
  maxTokens: "--max-tokens",
  temperature: "--temperature",
  topP: "--top-p",
  logprobs: "--logprobs",
  maxSteps: "--max-steps",
  maxTotalTokens: "--max-total-tokens",
  commandTimeout: "--command-timeout",
  maxFormatErrors: "--max-format-errors",
  prompts: "--prompts",
  timeoutMultiplier: "--timeout-multiplier",
  agentTimeoutMultiplier: "--agent-timeout-multiplier",
  verifierTimeoutMultiplier: "--verifier-timeout-multiplier",
  buildTimeoutMultiplier: "--environment-build-timeout-multiplier",
  agentSetupTimeoutMultiplier: "--agent-setup-timeout-multiplier",
  resources: "--override-cpus/--override-memory-mb",
  extraInstructions: "--extra-instruction(-path)",
  modelName: "-m/--model",
  include: "--include",
  exclude: "--exclude",
  category: "--category",
  difficulty: "--difficulty",
  nTasks: "--n-tasks",
  backend: "--backend/-e",
  network: "--network",
  preferPrebuilt: "--prefer-prebuilt",
  imageMap: "--image-map",
  pull: "--pull",
  forceBuild: "--force-build",
  passEnv: "--pass-env",
  integrity: "--integrity",
  verifierIsolation: "--verifier-isolation",
  verifierHardening: "--no-verifier-hardening",
  jobDir: "--job-dir",
  disableVerification: "--disable-verification",
};

/** The options a stored job config stands for, in the CLI's terms. */
export function storedOptions(c: JobConfig, jobDir: string): Partial<EvalOptions> {
  const l = c.agent_limits ?? {};
  const f = c.filters;
  return {
    dataset: c.dataset,
    agent: c.agent,
    k: c.k,
    // how the job ran: restored too (a resume at -n 1 of a job started at -n 16 is 16× slower); may be given anew
    n: c.n_concurrent_trials,
    infraRetries: c.retry.max_retries,
    disableVerification: Boolean(c.verifier?.disable),
    ...(c.artifacts ? { artifact: c.artifacts } : {}),
    ...(c.environment.delete === false ? { delete: false } : {}),
    retryHarbor: !retryPolicyOfConfig(c.retry).infrastructureOnly,
    ...(c.retry.include_exceptions ? { retryInclude: c.retry.include_exceptions } : {}),
    ...(c.retry.exclude_exceptions !== undefined ? { retryExclude: c.retry.exclude_exceptions } : {}),
    ...(c.prompts ? { prompts: c.prompts.path } : {}),
    ...(c.model
      ? {
          model: c.model.name,
          baseUrl: c.model.base_url,
          profile: c.model.profile,
          ...(c.model.max_tokens !== undefined ? { maxTokens: c.model.max_tokens } : {}),
          ...(c.model.temperature != null ? { temperature: c.model.temperature } : {}),
          ...(c.model.top_p != null ? { topP: c.model.top_p } : {}),
          logprobs: Boolean(c.model.logprobs),
        }
      : {}),
    ...(l.maxSteps !== undefined ? { maxSteps: l.maxSteps } : {}),
    ...(l.maxTotalTokens !== undefined ? { maxTotalTokens: l.maxTotalTokens } : {}),
    ...(l.commandTimeoutSec !== undefined ? { commandTimeout: l.commandTimeoutSec } : {}),
    ...(l.maxFormatErrors !== undefined ? { maxFormatErrors: l.maxFormatErrors } : {}),
    timeoutMultiplier: c.timeout_multiplier,
    agentTimeoutMultiplier: c.agent_timeout_multiplier ?? undefined,
    verifierTimeoutMultiplier: c.verifier_timeout_multiplier ?? undefined,
    buildTimeoutMultiplier: c.environment_build_timeout_multiplier ?? undefined,
    agentSetupTimeoutMultiplier: c.agent_setup_timeout_multiplier ?? undefined,
    resources: c.environment.override_cpus != null || c.environment.override_memory_mb != null ? { ...(c.environment.override_cpus != null ? { cpus: c.environment.override_cpus } : {}), ...(c.environment.override_memory_mb != null ? { memoryMb: c.environment.override_memory_mb } : {}) } : undefined,
    extraInstructions: c.extra_instructions,
    modelName: c.model && c.agents[0]?.model_name && c.agents[0].model_name !== c.model.name ? c.agents[0].model_name : undefined,
    include: f.include,
    exclude: f.exclude,
    category: f.category,
    difficulty: f.difficulty,
    nTasks: f.n_tasks,
    backend: c.backend as EvalOptions["backend"],
    network: c.network as EvalOptions["network"],
    preferPrebuilt: c.prefer_prebuilt,
    imageMap: Object.entries(c.image_map).map(([a, b]) => `${a}=${b}`),
    ...(c.pull ? { pull: c.pull } : {}),
    ...(c.force_build !== undefined ? { forceBuild: c.force_build } : {}),
    ...(c.pass_env ? { passEnv: c.pass_env } : {}),
    ...(c.integrity ? { integrity: c.integrity } : {}),
    ...(c.verifier_isolation ? { verifierIsolation: c.verifier_isolation } : {}),
    ...(c.verifier_hardening !== undefined ? { verifierHardening: c.verifier_hardening } : {}),
    jobDir,
  };
}

const same = (key: string, a: unknown, b: unknown): boolean => {
  if (key === "dataset" || key === "jobDir" || key === "prompts") return typeof a === "string" && typeof b === "string" && path.resolve(a) === path.resolve(b);
  if (key === "resources") return JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
  if (key === "imageMap") return JSON.stringify(parseImageMap((a as string[]) ?? [])) === JSON.stringify(parseImageMap((b as string[]) ?? []));
  if (Array.isArray(a) || Array.isArray(b)) return JSON.stringify([...((a as string[]) ?? [])].sort()) === JSON.stringify([...((b as string[]) ?? [])].sort());
  return a === b || (a == null && b == null);
};

/**
 * `--resume DIR` as typed: every result-affecting option comes from the stored config; one the user gave again
 * must equal it (else refused, naming the flag), except the endpoint and the run-time knobs (RUNTIME_OPTIONS).
 * The endpoint: --base-url, else $TMAX_BASE_URL, else the stored one.
 */
export function resolveResume(o: EvalOptions, given: ReadonlySet<string>): EvalOptions {
  const jobDir = path.resolve(o.resume!);
  const stored = readJobConfig(jobDir);
  if (!stored) throw new Error(`cannot resume: ${jobDir} holds no tmax job (config.json missing)`);
  const s = storedOptions(stored, jobDir);
  const differing = Object.keys(s).filter((k) => given.has(k) && !RUNTIME_OPTIONS.has(k) && !same(k, (o as unknown as Record<string, unknown>)[k], (s as Record<string, unknown>)[k]));
  if (differing.length) {
    const what = differing.map((k) => `${FLAG[k] ?? k} (stored ${JSON.stringify((s as Record<string, unknown>)[k])}, given ${JSON.stringify((o as unknown as Record<string, unknown>)[k])})`);
    throw new UsageError(`cannot resume ${jobDir}: ${what.join("; ")} differ from the job's stored config; drop the flag to keep the stored value, or start a new job`);
  }
  const baseUrl = given.has("baseUrl") ? o.baseUrl : process.env.TMAX_BASE_URL ?? s.baseUrl ?? o.baseUrl;
  // a run-time knob given again (-n, --infra-retries) wins over the stored one
  const typedKnobs = Object.fromEntries([...RUNTIME_OPTIONS].filter((k) => given.has(k)).map((k) => [k, (o as unknown as Record<string, unknown>)[k]]));
  // options the job never stored (e.g. --temperature when the profile default was used) are left as typed
  return { ...o, ...Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)), ...typedKnobs, baseUrl, temperature: s.temperature ?? o.temperature, topP: s.topP ?? o.topP } as EvalOptions;
}

/** The model the agent talks to (none for oracle and nop). */
export const modelConfigOf = (o: EvalOptions): ModelConfig | undefined => (o.agent === "tmax" ? modelConfig(o) : undefined);

/** The job a command line stands for (its config.json is jobConfigOf these): one mapping for a new job and a resume. */
export function jobOptionsOf(o: EvalOptions, at: { datasetDir: string; jobDir: string; model: ModelConfig | undefined }): Omit<JobOptions, "resume"> {
  return {
    datasetDir: at.datasetDir,
    jobDir: at.jobDir,
    agent: o.agent,
    k: o.k,
    concurrency: o.n,
    model: at.model,
    profile: o.profile,
    ...trialSettings(o),
    agentTimeoutMultiplier: o.agentTimeoutMultiplier,
    verifierTimeoutMultiplier: o.verifierTimeoutMultiplier,
    buildTimeoutMultiplier: o.buildTimeoutMultiplier,
    agentSetupTimeoutMultiplier: o.agentSetupTimeoutMultiplier,
    modelName: o.modelName,
    ...(o.resources ? { resources: o.resources } : {}),
    ...(o.extraInstructions?.length ? { extraInstructions: o.extraInstructions } : {}),
    ...(o.verifierEnv ? { verifierEnv: o.verifierEnv } : {}),
    ...(o.disableVerification ? { disableVerification: true } : {}),
    ...(o.artifact?.length ? { artifacts: o.artifact } : {}),
    ...(o.delete === false ? { deleteEnvironment: false } : {}),
    filters: { include: o.include, exclude: o.exclude, category: o.category, difficulty: o.difficulty },
    nTasks: o.nTasks,
    infraRetries: o.infraRetries,
    retryPolicy: o.retryHarbor ? retryPolicyOf(o.retryInclude, o.retryExclude) : INFRA_RETRY_POLICY,
    pauseAfter: o.pauseAfter,
    maxPauseSec: o.maxPause,
    skipInvalid: o.skipInvalid,
    price: at.model ? priceFromFlags(o, at.model.model) : undefined,
    maxCostUsd: o.maxCost,
  };
}

/** The command that continues this job, exactly as to type it. */
export function resumeCommand(jobDir: string, o: Pick<EvalOptions, "backend">): string {
  const quoted = /^[\w./-]+$/.test(jobDir) ? jobDir : `'${jobDir.replace(/'/g, `'\\''`)}'`;
  return `tmax eval --resume ${quoted}${o.backend === "local" ? " --unsafe" : ""}`;
}

export async function evalCommand(typed: EvalOptions, given: ReadonlySet<string> = new Set()): Promise<number> {
  const o = typed.resume ? resolveResume(typed, given) : typed;
  const resume = Boolean(o.resume);
  const jobDir = path.resolve(o.resume ?? o.jobDir ?? path.join("jobs", harborJobName()));
  if (resume) {
    const stored = readJobConfig(jobDir)?.verifier_env_keys ?? [];
    const missing = stored.filter((k) => !o.verifierEnv || !(k in o.verifierEnv));
    if (missing.length) throw new UsageError(`cannot resume ${jobDir}: the job ran with --ve ${missing.join(", ")}, whose values are never stored: give --ve ${missing[0]}=… again`);
  }
  let dataset = o.dataset;
  if (!dataset) throw new Error("--dataset <dir|name@version> is required (or --resume <job-dir>)");
  // On resume, a registry dataset is reused from the dir the job recorded (no registry access needed).
  const stored = resume ? storedSource(jobDir) : undefined;
  const resolved = stored ? { dir: dataset, source: stored } : await resolveDatasetArg(dataset, o.registry);
  dataset = resolved.dir;

  // every refusal happens before the job dir is created
  const retryErrors = o.retryErrors === undefined || o.retryErrors === false ? undefined : o.retryErrors === true ? (true as const) : o.retryErrors.split(",").map((s) => s.trim()).filter(Boolean);
  if (retryErrors && !resume) throw new Error("--retry-errors needs --resume <job-dir> (it re-runs finished trials of that job)");
  validateJobOptions({ ...o, concurrency: o.n, maxCostUsd: o.maxCost });
  if (o.backend === "local" && !o.unsafe) throw new Error("the local backend runs commands directly on this machine without isolation; pass --unsafe to allow it");
  if (o.backend === "daytona" && !process.env.DAYTONA_API_KEY) throw new Error("the daytona backend needs an API key: set DAYTONA_API_KEY");
  const model = modelConfigOf(o);
  const job = jobOptionsOf(o, { datasetDir: dataset, jobDir, model }); // a bad --prompts or --pass-env is one line here
  if (model) await preflightModel(createModelClient(model));
  // train is training's harness, token-in/token-out, as in `tmax run` and `tmax rollout`; eval keeps chat completions
  const tokens = model && o.profile === "train" ? createTokenClient(tokenClientConfig(model)) : undefined;
  if (tokens) await requireTrainServer(tokens);
  await preflightEngine(o.backend, o.unsafe);
  const started = Date.now();
  if (o.quiet) setQuiet(); // Harbor's -q after the command: the same quiet as tmax's global -q
  const view = createLiveView();
  if (!isQuiet()) console.log(`${bold("tmax eval")} ${dim(`${dataset} · agent ${o.agent} · k=${o.k} · n=${o.n} · job ${jobDir}${resume ? " · resumed" : ""}`)}`);
  // a fault (Ctrl-C, SIGTERM, a closed terminal, `| head`) stops the job: finished trials are kept, in-flight ones
  // dropped (resume runs them), containers removed; the process exits with the fault's code (docs/eval.md)
  const stop = stopSignal();
  const unsubscribe = onStop((fault) => {
    const hint = `\n${bold("interrupted")} (${fault}): finished trials are kept; continue with\n  ${resumeCommand(jobDir, o)}`;
    if (fault === "EPIPE") process.stderr.write(`${hint}\n`);
    else view.log(hint, true);
  });
  let results;
  let planned = 0; // trials the job holds (tasks × k); fewer results means some never started (--max-cost)
  try {
    results = await runJob(
      { ...job, ...(resolved.source ? { datasetSource: resolved.source } : {}), ...(tokens ? { train: { tokens, seed: TRAIN_SEED } } : {}), resume, retryErrors, invocation: process.argv.slice(1) },
      {
        signal: stop,
        onProgress: (p) => {
          planned = p.total;
          view.progress(p);
        },
        onNotice: (line) => view.log(yellow(stripControl(line))), // engine/task text inside (retries, pauses)
        onTrial: view.trial,
        onEvent: o.verbose
          ? (trial, e) => {
              view.agent(trial, e);
              stepPrinter((l) => view.log(l), trial)(e);
            }
          : view.agent,
        onEnvironment: environmentPrinter((l) => view.log(l)),
      },
    );
  } finally {
    unsubscribe();
    view.done();
  }
  if (stop.aborted) return 1; // the exit code is the fault's (FAULT_EXIT_CODES), set by the caller
  const mean = results.length ? results.reduce((s, r) => s + r.reward, 0) / results.length : 0;
  const errors = results.filter((r) => r.exception_info);
  const infra = errors.filter((r) => r.exception_info!.infrastructure);
  if (o.disableVerification) console.log(`${bold("not verified")} (--disable-verification): ${results.length} trials, no rewards ${dim(`(${((Date.now() - started) / 1000).toFixed(1)}s)`)}`);
  else console.log(`${bold("mean reward")} ${mean.toFixed(3)} over ${results.length} trials ${dim(`(${((Date.now() - started) / 1000).toFixed(1)}s)`)}`);
  if (errors.length) console.log(`errors: ${infra.length} infrastructure (model server, engine; \`--resume\` runs them again), ${errors.length - infra.length} task/agent`);
  for (const r of errors) console.log(`  ${red(stripControl(r.exception_info!.exception_type))}${r.exception_info!.infrastructure ? " (infrastructure)" : ""} ${stripControl(r.trial_name)}: ${stripControl(r.exception_info!.exception_message)}`);
  if (errors.some((r) => r.exception_info?.infrastructure)) console.log(dim(`infrastructure errors can be re-run: ${resumeCommand(jobDir, o)} --retry-errors`));
  if (results.length < planned) console.log(`${bold("incomplete")}: ${planned - results.length} of ${planned} trials did not start (the --max-cost cap); continue with a higher cap: ${resumeCommand(jobDir, o)} --max-cost USD`);
  console.log(dim(`job dir: ${jobDir}   scores: tmax report ${jobDir}`));
  return exitCodeOf(results, planned);
}

/**
 * 0 when every trial of the job has a result; 1 when any trial errored or did not start (a job stopped by
 * --max-cost). An agent timeout is a scored outcome in Terminal-Bench (reward 0), not an error of the run, so it
 * alone does not fail the job.
 */
export function exitCodeOf(results: { exception_info: { exception_type: string } | null }[], planned = results.length): number {
  if (results.length < planned) return 1;
  return results.some((r) => r.exception_info && r.exception_info.exception_type !== "AgentTimeoutError") ? 1 : 0;
}

function storedDataset(jobDir: string): string | undefined {
  try {
    return JSON.parse(readFileSync(path.join(jobDir, "config.json"), "utf8")).dataset;
  } catch {
    return undefined;
  }
}

function storedSource(jobDir: string): { name: string; version: string; commit: string | null; registry: string } | undefined {
  try {
    return JSON.parse(readFileSync(path.join(jobDir, "config.json"), "utf8")).dataset_source ?? undefined;
  } catch {
    return undefined;
  }
}

/** Pull starts/ends and notes, one line each (layer progress would flood a log). */
export function environmentPrinter(log: (line: string) => void): (trial: string, e: EnvironmentEvent) => void {
  const seen = new Set<string>();
  return (trial, e) => {
    // notes and pull statuses carry task text (image names) and registry/engine messages
    if (e.type === "note") log(yellow(stripControl(`note: ${trial}: ${e.message}`)));
    else if (/^(Pulling from|Trying to pull|Status:|Digest:|registry busy)/.test(e.progress.status) || !seen.has(e.progress.image)) {
      seen.add(e.progress.image);
      log(dim(stripControl(`pull ${e.progress.image}: ${e.progress.status}`)));
    }
  };
}
