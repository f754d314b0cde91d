// A job: k attempts of every task of a dataset, n trials at a time, resumable after a crash or kill -9.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import pLimit from "p-limit";
import type { AgentEvent, AgentLimits } from "../agent/loop.js";
import { createModelClient } from "../model/client.js";
import { preflightModel } from "../model/preflight.js";
import type { TokenClient } from "../model/tokens.js";
import type { ModelClient, ModelConfig, Profile } from "../model/types.js";
import { createBackend, pruneLeftovers } from "../sandbox/index.js";
import type { SandboxBackend, SandboxBackendName } from "../sandbox/types.js";
import { checkTaskTimeouts } from "../tasks/timeouts.js";
import { loadDataset, type DatasetFilters } from "../tasks/load.js";
import type { Task } from "../tasks/types.js";
import { writeJsonAtomic } from "../util/fs.js";
import { jitteredBackoff } from "../util/backoff.js";
import { CircuitBreaker } from "./breaker.js";
import { INFRA_RETRY_POLICY, retriesTrial } from "./retryPolicy.js";
import { harborJobResult, harborLock, phaseMultipliers } from "../results/harbor.js";
import { ensureJobId } from "./identity.js";
import { lockJobDir } from "./lock.js";
import { jobConfigOf, prepareJobDir, readJobConfig, shouldRetry, storedStart, type JobConfigInput } from "./jobDir.js";
import { selectTasks, withJoined } from "./selection.js";
import { TrialResult, type AgentName, type JobConfig } from "../results/schema.js";
import { exceptionInfo, runTrial, type EnvironmentEvent, type TrialPhase, type TrialSettings } from "../trial/trial.js";

/** A job: what its config records (JobConfigInput: agent, k, model, limits, sandbox …) plus how this run goes. */
export interface JobOptions extends JobConfigInput {
  datasetDir: string;
  resume: boolean;
  /** The registry dataset behind datasetDir (tmax eval -d name@version): recorded in the job and its trials. */
  datasetSource?: { name: string; version: string; commit: string | null; registry: string };
  /** Consecutive infrastructure failures that pause the job until the model server/engine answers (default 3). */
  pauseAfter?: number;
  /** Longest such pause before the job stops (default 1800 s). */
  maxPauseSec?: number;
  /**
   * On resume, re-run finished trials that ended in an error: `true` = the infrastructure errors (engine, build,
   * model server unreachable), a list = trials whose exception_type is in it.
   */
  retryErrors?: true | string[];
  /** Leave invalid tasks out (recorded, reported, never scored) instead of refusing the job. */
  skipInvalid?: boolean;
  /** The command line, recorded in lock.json (secrets masked). */
  invocation?: string[];
  /** Train profile: token-in/token-out endpoints; attempt k samples with vLLM seed `seed + k` (open-instruct's rule). */
  train?: { tokens: TokenClient; seed: number };
}

export interface JobProgress {
  total: number;
  done: number;
  running: number;
  errors: number;
  /** Of `errors`, those on infrastructure (model server, engine) rather than the task or the agent. */
  infraErrors: number;
  rewardSum: number;
  last?: TrialResult;
}

export interface JobHooks {
  onProgress?: (p: JobProgress) => void;
  onEvent?: (trialName: string, e: AgentEvent) => void;
  /** Image pulls and notes (e.g. a pull that fell back to a build). */
  onEnvironment?: (trialName: string, e: EnvironmentEvent) => void;
  /** One-line notices: the circuit breaker pausing and resuming, retries. */
  onNotice?: (line: string) => void;
  /** Per-trial lifecycle for live views: started, phase changes, retries (the end comes through onProgress). */
  onTrial?: (e: TrialEvent) => void;
  signal?: AbortSignal;
}

export type TrialEvent =
  | { type: "start"; trial: string }
  | { type: "phase"; trial: string; phase: TrialPhase }
  | { type: "retry"; trial: string; retry: number; reason: string }
  | { type: "waiting"; trial: string }
  | { type: "dropped"; trial: string }
  | { type: "end"; trial: string };

/** Deterministic, so resume never duplicates a trial; `org/name` task names become `org-name`. */
export const trialName = (task: string, attempt: number) => `${task.replace(/[^\w.-]+/g, "-")}__${attempt}`;

/** Options that make no sense are refused with one line, before anything is created. */
export function validateJobOptions(opts: Pick<JobOptions, "k" | "concurrency" | "timeoutMultiplier" | "agentTimeoutMultiplier" | "verifierTimeoutMultiplier" | "buildTimeoutMultiplier" | "nTasks" | "maxCostUsd">): void {
  if (opts.maxCostUsd !== undefined && !(Number.isFinite(opts.maxCostUsd) && opts.maxCostUsd >= 0)) throw new Error(`--max-cost must be a number of USD ≥ 0 (got ${opts.maxCostUsd})`);
  if (!Number.isInteger(opts.k) || opts.k < 1) throw new Error(`-k/--n-attempts must be an integer ≥ 1 (got ${opts.k})`);
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new Error(`-n/--n-concurrent must be an integer ≥ 1 (got ${opts.concurrency})`);
  if (opts.nTasks !== undefined && (!Number.isInteger(opts.nTasks) || opts.nTasks < 1)) throw new Error(`--n-tasks must be an integer ≥ 1 (got ${opts.nTasks})`);
  const mults: [string, number | undefined][] = [
    ["--timeout-multiplier", opts.timeoutMultiplier],
    ["--agent-timeout-multiplier", opts.agentTimeoutMultiplier],
    ["--verifier-timeout-multiplier", opts.verifierTimeoutMultiplier],
    ["--build-timeout-multiplier", opts.buildTimeoutMultiplier],
  ];
  for (const [flag, v] of mults) if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new Error(`${flag} must be a finite number > 0 (got ${v})`);
}

export async function runJob(opts: JobOptions, hooks: JobHooks = {}): Promise<TrialResult[]> {
  validateJobOptions(opts);
  const datasetDir = path.resolve(opts.datasetDir);
  const jobDir = path.resolve(opts.jobDir);
  const jobName = path.basename(jobDir);
  const dataset = await loadDataset(datasetDir, opts.filters);
  const tasks = dataset.tasks;
  if (tasks.length === 0 && dataset.broken.length === 0) throw new Error(`no tasks found in ${datasetDir}${opts.filters ? " (after filters)" : ""}`);
  const stored = opts.resume ? storedConfig(jobDir) : null;
  // price and cost cap: as given, else as the job stored them
  const price = opts.price ?? stored?.price ?? undefined;
  const maxCostUsd = opts.maxCostUsd ?? stored?.max_cost_usd ?? undefined;
  if (maxCostUsd !== undefined && !price && opts.agent === "tmax") {
    throw new Error(`--max-cost needs the model's price: --price-input and --price-output (USD per million tokens), or a --price-table that lists '${opts.model?.model ?? "the model"}'`);
  }
  // invalid tasks: refused here, one line each, or left out (--skip-invalid) — never run, never scored
  const selection = await selectTasks(dataset, { nTasks: opts.nTasks, skipInvalid: opts.skipInvalid, retryErrors: opts.retryErrors, stored });
  const taskNames = selection.names;
  for (const t of tasks) if (taskNames.includes(t.name)) checkTaskTimeouts(t, phaseMultipliers(opts), opts.agentLimits?.commandTimeoutSec); // one line, before anything starts
  const checksums = Object.fromEntries(taskNames.map((name) => [name, tasks.find((t) => t.name === name)!.checksum]));
  const config = jobConfigOf({ ...opts, price, maxCostUsd }, { jobName, datasetDir, checksums });
  if (selection.leftOut.size) config.invalid_tasks = [...selection.leftOut.keys()];
  if (opts.datasetSource) {
    config.dataset_source = opts.datasetSource;
    config.dataset_name = `${opts.datasetSource.name}@${opts.datasetSource.version}`;
  }
  // everything that can refuse the run does so before the job dir exists, so a failed start never blocks it
  const backend = createBackend(opts.backend, { unsafe: opts.unsafe });
  // one id for the job: Harbor's job_id in config.json, and the label of every container it starts
  const joined = Object.fromEntries(selection.joined.map((n) => [n, checksums[n]!]));
  // the lock comes first: of two runs starting on one dir, the one without it changes nothing there
  if (!opts.resume) await mkdir(jobDir, { recursive: true });
  const release = existsSync(jobDir) ? await lockJobDir(jobDir) : async () => undefined;
  let jobId: string;
  try {
    jobId = await ensureJobId(jobDir, await prepareJobDir(jobDir, config, opts.resume, (c) => ({ ...withJoined(c, joined), price: price ?? null, max_cost_usd: maxCostUsd ?? null })));
  } catch (err) {
    await release();
    throw err;
  }
  for (const line of selection.leftOut.values()) hooks.onNotice?.(line);
  for (const name of selection.joined) hooks.onNotice?.(`${name} is valid now: it joins the job`);
  config.job_id = jobId;
  try {
    // leftovers of a killed run of this job only: containers, then verifier snapshot images
    if (opts.resume) await pruneLeftovers(backend, { job: jobId }).catch(() => undefined);

    // Keep finished trials; a trial dir without result.json was interrupted: remove and redo it.
    // A trial that ended on infrastructure is not a result of the task: resume runs it again;
    // --retry-errors TYPES also redoes finished trials that ended in the chosen errors.
    const results = new Map<string, TrialResult>();
    let retried = storedRetries(jobDir); // Harbor's n_retries: every re-run of a trial, over all runs of the job
    for (const entry of readdirSync(jobDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const done = readResult(path.join(jobDir, entry.name));
      // a trial cancelled by a stop whose dir the stopping process had no time to drop is no result either
      const cancelled = done?.exception_info?.exception_type === "CancelledError";
      // a task that joined after a fix: its trials of an older tmax (TaskError, never run) are no results
      const invalidBefore = done ? selection.joined.includes(done.task_name) : false;
      if (done && !done.exception_info?.infrastructure && !cancelled && !invalidBefore && !(opts.resume && shouldRetry(done, opts.retryErrors))) results.set(entry.name, done);
      else {
        if (done && !cancelled) retried++;
        await rm(path.join(jobDir, entry.name), { recursive: true, force: true });
      }
    }
    const lockTasks = taskNames.map((name) => ({ name, dir: tasks.find((t) => t.name === name)!.dir, checksum: checksums[name]! }));
    await writeJsonAtomic(path.join(jobDir, "lock.json"), harborLock(config, lockTasks, opts.invocation ?? process.argv.slice(1)));

    const pending: { task: Task; name: string; attempt: number }[] = [];
    for (let attempt = 0; attempt < opts.k; attempt++) {
      for (const name of taskNames) {
        if (!results.has(trialName(name, attempt))) pending.push({ task: tasks.find((x) => x.name === name)!, name, attempt });
      }
    }

    const model = opts.agent === "tmax" && opts.model ? createModelClient(opts.model) : undefined;
    const progress: JobProgress = { total: taskNames.length * opts.k, done: 0, running: 0, errors: 0, infraErrors: 0, rewardSum: 0 };
    for (const r of results.values()) count(progress, r);
    // the job's cost so far (earlier runs included); at --max-cost no trial starts, the running ones finish
    let spent = [...results.values()].reduce((s, r) => s + (r.agent_result?.cost_usd ?? 0), 0);
    let notStarted = 0;
    const startedAt = storedStart(jobDir) ?? new Date().toISOString();
    const writeSummary = (finished: boolean) =>
      writeJsonAtomic(
        path.join(jobDir, "result.json"),
        harborJobResult([...results.values()], { jobId, jobName, nTotal: progress.total, nAttempts: opts.k, running: progress.running, retries: retried, startedAt, finished }),
      );
    hooks.onProgress?.(progress);

    // The breaker pauses new trials after consecutive infrastructure failures; `stop` ends the job when it gives up.
    const stop = new AbortController();
    const signal = hooks.signal ? AbortSignal.any([hooks.signal, stop.signal]) : stop.signal;
    const breaker = new CircuitBreaker({
      threshold: opts.pauseAfter,
      maxPauseMs: (opts.maxPauseSec ?? 1800) * 1000,
      probe: (s) => probeInfrastructure(backend, model, s),
      onPause: hooks.onNotice,
      onResume: hooks.onNotice,
      signal,
    });
    let stopped: Error | undefined;
    const retry = opts.retryPolicy ?? INFRA_RETRY_POLICY;

    const limit = pLimit(Math.max(1, opts.concurrency));
    await Promise.all(
      pending.map((p) =>
        limit(async () => {
          if (signal.aborted) return;
          if (maxCostUsd !== undefined && spent >= maxCostUsd) {
            if (notStarted++ === 0) hooks.onNotice?.(`cost cap reached: $${spent.toFixed(4)} spent of --max-cost $${maxCostUsd}; no more trials start (resume with a higher --max-cost to continue)`);
            return;
          }
          const dir = path.join(jobDir, trialName(p.name, p.attempt));
          const tname = path.basename(dir);
          hooks.onTrial?.({ type: "start", trial: tname });
          progress.running++;
          hooks.onProgress?.(progress);
          let result: TrialResult | undefined;
          for (let tries = 0, runs = 0; ; ) {
            try {
              if (breaker.paused) hooks.onTrial?.({ type: "waiting", trial: tname });
              await breaker.gate();
            } catch (e) {
              stopped ??= e as Error;
              stop.abort(e);
            }
            if (signal.aborted) break;
            const pausesBefore = breaker.pauses;
            if (runs++ > 0) retried++; // an infrastructure retry, or a re-run after an outage
            result = await runTrial({
              task: p.task,
              attempt: p.attempt,
              trialDir: dir,
              jobName,
              jobId,
              agent: opts.agent,
              backend,
              model,
              profile: opts.profile,
              ...(opts.train ? { tokens: opts.train.tokens, seed: opts.train.seed + p.attempt } : {}),
              agentLimits: opts.agentLimits,
              prompts: opts.prompts,
              timeoutMultiplier: opts.timeoutMultiplier,
              agentTimeoutMultiplier: opts.agentTimeoutMultiplier,
              verifierTimeoutMultiplier: opts.verifierTimeoutMultiplier,
              buildTimeoutMultiplier: opts.buildTimeoutMultiplier,
              imageMap: opts.imageMap,
              network: opts.network,
              pull: opts.pull,
              forceBuild: opts.forceBuild,
              integrity: opts.integrity,
              price,
              verifierIsolation: opts.verifierIsolation,
              verifierHardening: opts.verifierHardening,
              source: datasetDir,
              datasetName: config.dataset_name,
              ...(opts.datasetSource ? { dataset: { name: opts.datasetSource.name, version: opts.datasetSource.version, commit: opts.datasetSource.commit } } : {}),
              onEnvironment: hooks.onEnvironment ? (e) => hooks.onEnvironment!(tname, e) : undefined,
              passEnv: opts.passEnv,
              resources: opts.resources,
              extraInstructions: opts.extraInstructions,
              verifierEnv: opts.verifierEnv,
              disableVerification: opts.disableVerification,
              artifacts: opts.artifacts,
              signal,
              onEvent: hooks.onEvent ? (e) => hooks.onEvent!(tname, e) : undefined,
              onPhase: hooks.onTrial ? (phase) => hooks.onTrial!({ type: "phase", trial: tname, phase }) : undefined,
            });
            const info = result.exception_info;
            const retryable = info !== null && retriesTrial(info, retry);
            if (!info?.infrastructure) {
              breaker.success();
              // the task's or the agent's failure: retried as Harbor does (-r, --retry-include/-exclude), after 1 s
              if (!retryable || tries >= opts.infraRetries || signal.aborted) break;
              await new Promise((r) => setTimeout(r, 1000));
              if (signal.aborted) break;
              tries++;
              hooks.onNotice?.(`retry ${tries}/${opts.infraRetries} of ${tname}: ${info!.exception_type}: ${info!.exception_message}`);
              hooks.onTrial?.({ type: "retry", trial: tname, retry: tries, reason: info!.exception_message });
              await rm(dir, { recursive: true, force: true });
              continue;
            }
            breaker.failure(info.exception_message);
            if (signal.aborted) break;
            // Back off (exponential, jittered) before deciding: other trials' failures may pause the job meanwhile.
            // A failure during an outage is the outage's, not the trial's: it waits at the gate and runs again.
            // Isolated failures use the retry budget, when the retry policy allows their type.
            const wait = jitteredBackoff(tries, 2000, 60_000);
            await new Promise((r) => setTimeout(r, wait));
            if (!breaker.paused && breaker.pauses === pausesBefore) {
              if (!retryable || tries >= opts.infraRetries) break;
              tries++;
              hooks.onNotice?.(`retry ${tries}/${opts.infraRetries} of ${tname}: ${info.exception_message}`);
              hooks.onTrial?.({ type: "retry", trial: tname, retry: tries, reason: info.exception_message });
            }
            await rm(dir, { recursive: true, force: true });
          }
          progress.running--;
          // A trial cut short by the abort (or never started) is not a result: drop it so that --resume runs it again.
          if (!result || (signal.aborted && result.exception_info)) {
            hooks.onTrial?.({ type: "dropped", trial: tname });
            await rm(dir, { recursive: true, force: true });
            hooks.onProgress?.(progress);
            return;
          }
          results.set(result.trial_name, result);
          spent += result.agent_result?.cost_usd ?? 0;
          count(progress, result);
          progress.last = result;
          hooks.onProgress?.(progress);
          await writeSummary(false);
        }),
      ),
    );
    if (stopped) {
      await writeSummary(false);
      throw stopped;
    }
    await writeSummary(!hooks.signal?.aborted && notStarted === 0);
    return [...results.values()].sort((a, b) => a.trial_name.localeCompare(b.trial_name));
  } finally {
    // Every trial has ended: whatever of this job is still on the engine is a leftover (e.g. a container whose
    // removal failed while the engine restarted, or a snapshot image of a trial cut short). Chosen by the job's label.
    await pruneLeftovers(backend, { job: jobId }, { attempts: 3 }).catch(() => undefined);
    await release();
  }
}

function count(p: JobProgress, r: TrialResult) {
  p.done++;
  p.rewardSum += r.reward;
  if (r.exception_info) p.errors++;
  if (r.exception_info?.infrastructure) p.infraErrors++;
}

/** null when the engine and the model server (if any) answer; else why not, in one line. */
async function probeInfrastructure(backend: SandboxBackend, model: ModelClient | undefined, signal: AbortSignal): Promise<string | null> {
  const engine = await backend.check();
  if (!engine.ok) return engine.detail;
  if (model) await preflightModel(model, signal);
  return null;
}

/** The config of the job being resumed; null when unreadable (prepareJobDir then says why, in one line). */
function storedConfig(jobDir: string): JobConfig | null {
  try {
    return readJobConfig(jobDir);
  } catch {
    return null;
  }
}

/** n_retries of the job's earlier runs (its result.json), so that a resume adds to them. */
function storedRetries(jobDir: string): number {
  try {
    const n = JSON.parse(readFileSync(path.join(jobDir, "result.json"), "utf8")).stats?.n_retries;
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

function readResult(trialDir: string): TrialResult | null {
  const file = path.join(trialDir, "result.json");
  if (!existsSync(file)) return null;
  try {
    return TrialResult.parse(JSON.parse(readFileSync(file, "utf8")));
  } catch {
    return null; // unreadable: treat as not done
  }
}
