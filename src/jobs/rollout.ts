// `tmax rollout`: DPPO's data plane per step — U informative groups of G samples, each sample a train-profile
// episode whose reward comes from the task's verifier; centered advantages; records for the learner.
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import pLimit from "p-limit";
import type { AgentEvent, AgentLimits } from "../agent/loop.js";
import type { TrialEvent } from "./runner.js";
import type { Trajectory } from "../agent/schema.js";
import { ensureJobId } from "./identity.js";
import { isLockEntry, lockJobDir } from "./lock.js";
import { runTrial, type TrialSettings } from "../trial/trial.js";
import type { TrialResult } from "../results/schema.js";
import { createModelClient } from "../model/client.js";
import { createTokenClient } from "../model/tokens.js";
import type { TokenStream } from "../agent/tokenProtocol.js";
import type { ModelConfig } from "../model/types.js";
import { createBackend } from "../sandbox/index.js";
import type { SandboxBackendName } from "../sandbox/types.js";
import { loadDataset, type DatasetFilters } from "../tasks/load.js";
import { checkTaskTimeouts } from "../tasks/timeouts.js";
import type { Task } from "../tasks/types.js";
import { writeJsonAtomic } from "../util/fs.js";
import { clampReward, groupAdvantages, isInformative } from "../rl/advantages.js";
import { createRolloutWriter, writeLearnerBatch } from "../rl/records.js";
import type { RolloutRecord } from "../rl/schema.js";
import { streamProblem, tokenCounts } from "../rl/tokens.js";
import { seededRandom } from "../util/random.js";
import { dropStaleGroups } from "../rl/staleness.js";
import { chooseIsolation, taskIsolation, type VerifierIsolation } from "../trial/verifier.js";
import { cachedIncompatible } from "./isolationCheck.js";

export interface RolloutOptions extends TrialSettings {
  datasetDir: string;
  outDir: string;
  runName: string;
  steps: number;
  /** Number of the first step; default 1, or (with `continue`) the step after the last one in outDir. */
  startStep?: number;
  /** Add steps to a non-empty outDir (otherwise refused: two runs would mix their steps and trial dirs). */
  continue?: boolean;
  uniqueTasks: number; // U
  samplesPerTask: number; // G
  concurrency: number;
  /** Most groups drawn in one step (informative or not) before giving up on filling U. */
  maxGroupsPerStep: number;
  model: ModelConfig;
  filters?: DatasetFilters;
  /** Seed of task sampling; sample i of a group is generated with vLLM seed `seed + i` (as open-instruct). */
  seed: number;
  maxStaleness: number;
  /** A file the learner rewrites with its current policy version (an integer); absent = version 0. */
  policyVersionFile?: string;
  shardSize?: number;
  learnerBatch?: boolean;
  /** Pack the learner batch into sequences of at most this many tokens (first-fit decreasing); unpacked when absent. */
  packTokens?: number;
  onSample?: (s: { step: number; task: string; reward: number; exitStatus: string; trial: string; infra: boolean }) => void;
  /** Per-sample lifecycle for live views (start, phases; "end" when it finished). */
  onTrial?: (e: TrialEvent) => void;
  onEvent?: (trial: string, e: AgentEvent) => void;
  onGroup?: (g: { step: number; task: string; rewards: number[]; kept: boolean }) => void;
  /** One-line notices (e.g. a missing policy-version file). */
  onNotice?: (line: string) => void;
  signal?: AbortSignal;
}

export interface StepSummary {
  step: number;
  groups_drawn: number;
  groups_kept: number;
  groups_dropped_uniform: number;
  groups_dropped_stale: number;
  cap_reached: boolean;
  samples: number;
  samples_dropped_stale: number;
  /** Samples whose token stream could not stand as an exact record (never patched; the group is dropped), with the reason. */
  samples_rejected: number;
  rejections: { task: string; reason: string }[];
  infra_errors: number;
  /** Samples whose tamper report flagged them, and of those the ones whose reward strict mode set to 0. */
  tamper_flagged?: number;
  tamper_zeroed?: number;
  /**
   * Samples whose verifier ran with Harbor's semantics (shared, agent processes alive, under watch) because
   * their task needs it (task.toml `[verifier] tmax_isolation = "shared"`, or a cached `tmax tasks check
   * --isolation`), and those tasks; the others ran under the strong default (snapshot on docker).
   */
  verifier_shared_samples?: number;
  verifier_shared_tasks?: string[];
  mean_reward: number | null;
  policy_version: number;
  started_at: string;
  finished_at: string;
}

interface Sample {
  task: Task;
  result: TrialResult;
  trajectory: Trajectory | null;
  trajectoryPath: string | null;
  reward: number;
  version: number;
  stream: TokenStream | null;
}

/**
 * Rollout keeps strong isolation (snapshot on docker) by default but never silently fails an honest task:
 * the user's flag, else the task's `tmax_isolation`, else Harbor's semantics (shared) for a task whose cached
 * isolation check says its oracle scores less under the strong default; undefined = the strong default.
 */
export function isolationFor(opts: Pick<RolloutOptions, "verifierIsolation" | "backend">, task: Task): VerifierIsolation | undefined {
  if (opts.verifierIsolation) return opts.verifierIsolation;
  const fromTask = taskIsolation(task);
  if (fromTask) return fromTask;
  return cachedIncompatible(task, chooseIsolation(task, opts.backend, undefined, "strong")) ? "shared" : undefined;
}

export async function runRollout(opts: RolloutOptions): Promise<StepSummary[]> {
  checkGroupSize(opts.samplesPerTask);
  const outDir = path.resolve(opts.outDir);
  await firstFreeStep(outDir, opts); // refused before anything is made
  const { tasks } = await loadDataset(path.resolve(opts.datasetDir), opts.filters);
  for (const t of tasks) checkTaskTimeouts(t, opts.timeoutMultiplier, opts.agentLimits?.commandTimeoutSec); // one line, before anything starts
  if (tasks.length === 0) throw new Error(`no loadable tasks in ${opts.datasetDir}`);
  // One live run per --out dir (the eval runner's lock): of two runs on one dir, the second is refused in one
  // line, and the step numbers are decided again under the lock, so no step is written twice.
  await mkdir(outDir, { recursive: true });
  const release = await lockJobDir(outDir);
  try {
    return await rolloutSteps(opts, outDir, tasks, await firstFreeStep(outDir, opts));
  } finally {
    await release();
  }
}

async function rolloutSteps(opts: RolloutOptions, outDir: string, tasks: Task[], firstStep: number): Promise<StepSummary[]> {
  if (opts.policyVersionFile && !existsSync(opts.policyVersionFile)) {
    opts.onNotice?.(`warning: --policy-version-file ${opts.policyVersionFile} does not exist; policy version 0 is assumed until it appears, so no sample is dropped as stale`);
  }
  const model = createModelClient({ ...opts.model, logprobs: true, tokenIds: true });
  // sampling is token-in/token-out with training's pinned parameters; temperature/top_p overrides still apply
  const tokens = createTokenClient({
    baseUrl: opts.model.baseUrl,
    model: opts.model.model,
    apiKey: opts.model.apiKey,
    timeoutMs: opts.model.timeoutMs,
    maxRetries: opts.model.maxRetries,
    retryBaseMs: opts.model.retryBaseMs,
    temperature: opts.model.temperature,
    topP: opts.model.topP,
  });
  const backend = createBackend(opts.backend, { unsafe: opts.unsafe });
  const limit = pLimit(Math.max(1, opts.concurrency));
  const writer = await createRolloutWriter(outDir, opts.runName, { shardSize: opts.shardSize });
  const draw = taskSampler(tasks, opts.seed);
  const runId = await ensureJobId(outDir);
  let missingWarned = opts.policyVersionFile ? !existsSync(opts.policyVersionFile) : true;
  const policyVersion = async () => {
    const v = await readPolicyVersion(opts.policyVersionFile);
    if (v.missing && !missingWarned) {
      missingWarned = true;
      opts.onNotice?.(`warning: --policy-version-file ${opts.policyVersionFile} disappeared; policy version 0 is assumed while it is missing`);
    }
    return v;
  };
  await writeJsonAtomic(path.join(outDir, "rollout.json"), {
    schema: "tmax.rollout/v1",
    run_name: opts.runName,
    dataset: path.resolve(opts.datasetDir),
    model: { name: opts.model.model, temperature: opts.model.temperature, top_p: opts.model.topP },
    unique_tasks: opts.uniqueTasks,
    samples_per_task: opts.samplesPerTask,
    max_groups_per_step: opts.maxGroupsPerStep,
    max_staleness: opts.maxStaleness,
    seed: opts.seed,
    ...(opts.prompts?.source ? { prompts: opts.prompts.source } : {}),
  });

  const summaries: StepSummary[] = [];
  try {
    for (let step = firstStep; step < firstStep + opts.steps; step++) {
      if (opts.signal?.aborted) break;
      const startedAt = new Date().toISOString();
      const stepDir = path.join(outDir, "trials", `step_${String(step).padStart(6, "0")}`);

      // One group: G episodes of one task, run through the shared concurrency limit.
      let groupSeq = 0;
      let infraErrors = 0;
      let tamperFlagged = 0;
      let tamperZeroed = 0;
      let sharedSamples = 0;
      const sharedTasks = new Set<string>();
      const runGroup = async (task: Task): Promise<Sample[]> => {
        const g = groupSeq++;
        return Promise.all(
          Array.from({ length: opts.samplesPerTask }, (_, i) =>
            limit(async (): Promise<Sample> => {
              const version = (await policyVersion()).version;
              const trialDir = path.join(stepDir, `${task.name}__g${g}_s${i}`);
              let stream: TokenStream | null = null;
              let trajectory = null as Trajectory | null; // from memory only: files in the trial dir are never re-read
              const tname = path.basename(trialDir);
              opts.onTrial?.({ type: "start", trial: tname });
              const result = await runTrial({
                onTrajectory: (t) => {
                  trajectory = t;
                },
                task,
                attempt: i,
                trialDir,
                jobName: opts.runName,
                jobId: runId,
                agent: "tmax",
                backend,
                model,
                profile: "train",
                tokens,
                seed: opts.seed + i, // open-instruct: the run's seed + the sample's index in its group
                onTokenStream: (s) => (stream = s),
                agentTimeout: opts.agentTimeout ?? "none",
                resources: opts.resources,
                agentLimits: opts.agentLimits,
                prompts: opts.prompts,
                timeoutMultiplier: opts.timeoutMultiplier,
                imageMap: opts.imageMap,
                network: opts.network,
                pull: opts.pull,
                forceBuild: opts.forceBuild,
                passEnv: opts.passEnv,
                integrity: opts.integrity ?? "strict", // a flagged sample earns 0 in RL
                verifierIsolation: isolationFor(opts, task),
                verifierIsolationDefault: "strong",
                verifierHardening: opts.verifierHardening,
                source: opts.datasetDir,
                signal: opts.signal,
                onPhase: opts.onTrial ? (phase) => opts.onTrial!({ type: "phase", trial: tname, phase }) : undefined,
                onEvent: opts.onEvent ? (e) => opts.onEvent!(tname, e) : undefined,
              });
              opts.onTrial?.({ type: "end", trial: tname });
              if (result.exception_info?.infrastructure) infraErrors++;
              if (result.tamper?.flagged) tamperFlagged++;
              if (result.tamper?.zeroed) tamperZeroed++;
              if (!opts.verifierIsolation && result.tamper?.verifier_isolation === "shared" && chooseIsolation(task, opts.backend, undefined, "strong") !== "shared") {
                sharedSamples++;
                sharedTasks.add(task.name);
              }
              const trajectoryPath = path.join(trialDir, "agent", "tmax-trajectory.json");
              // any failure path is reward 0: no verifier result, an exception, or an episode that did not submit
              const submitted = trajectory?.exitStatus === "submitted";
              const reward = result.verifier_result && !result.exception_info && submitted ? clampReward(result.reward) : 0;
              opts.onSample?.({ step, task: task.name, reward, exitStatus: trajectory?.exitStatus ?? "error", trial: tname, infra: Boolean(result.exception_info?.infrastructure) });
              return { task, result, trajectory, trajectoryPath: trajectory ? trajectoryPath : null, reward, version, stream };
            }),
          ),
        );
      };

      // Active sampling: keep U groups in flight; a group whose rewards are all equal is dropped and replaced.
      const kept: Sample[][] = [];
      let drawn = 0;
      let droppedUniform = 0;
      await new Promise<void>((resolve, reject) => {
        let inFlight = 0;
        let failed = false; // once the step has failed, groups still in flight must not start new ones
        const launch = () => {
          while (!failed && !opts.signal?.aborted && kept.length + inFlight < opts.uniqueTasks && drawn < opts.maxGroupsPerStep) {
            const task = draw();
            drawn++;
            inFlight++;
            runGroup(task).then((samples) => {
              inFlight--;
              if (failed) return;
              const rewards = samples.map((s) => s.reward);
              const informative = isInformative(rewards);
              if (samples.every((s) => s.result.exception_info?.infrastructure)) {
                failed = true;
                reject(new Error(`every sample of ${task.name} failed on infrastructure: ${samples[0].result.exception_info!.exception_message}`));
                return;
              }
              if (informative && kept.length < opts.uniqueTasks) kept.push(samples);
              else droppedUniform++;
              opts.onGroup?.({ step, task: task.name, rewards, kept: informative });
              if (inFlight === 0 && (kept.length >= opts.uniqueTasks || drawn >= opts.maxGroupsPerStep || opts.signal?.aborted)) resolve();
              else launch();
            }, (e) => {
              failed = true;
              reject(e);
            });
          }
          if (inFlight === 0) resolve();
        };
        launch();
      });

      // Staleness: a group sampled more than maxStaleness versions behind the learner is dropped whole (staleness.ts).
      const current = (await policyVersion()).version;
      const { fresh: groups, dropped: droppedStale, droppedSamples: staleSamples } = dropStaleGroups(kept, current, opts.maxStaleness);

      // A sample whose token stream is not exact is rejected with its reason, and its group with it: dropping
      // the sample alone would change the other samples' advantages (as with staleness).
      const rejections: { task: string; reason: string }[] = [];
      const exactGroups: Sample[][] = [];
      for (const samples of groups) {
        const problems = samples.map((s) => ({ task: s.task.name, reason: streamProblem(s.stream) }));
        const rejected = problems.filter((p): p is { task: string; reason: string } => p.reason !== null);
        rejections.push(...rejected);
        if (rejected.length === 0) exactGroups.push(samples);
      }

      const records: RolloutRecord[] = [];
      let sampleIdx = 0;
      exactGroups.forEach((samples, promptIdx) => {
        const advantages = groupAdvantages(samples.map((s) => s.reward));
        samples.forEach((s, i) => records.push(toRecord(s, { step, sampleIdx: sampleIdx++, promptIdx, advantage: advantages[i], dataset: path.basename(path.resolve(opts.datasetDir)), model: opts.model.model })));
      });
      for (const r of records) await writer.write(r);
      if (opts.learnerBatch) {
        await writeLearnerBatch(path.join(outDir, "learner"), step, records, { run: opts.runName, ...(opts.packTokens ? { pack: true, maxTokens: opts.packTokens } : {}) });
      }

      const rewards = records.map((r) => r.reward);
      const summary: StepSummary = {
        step,
        groups_drawn: drawn,
        groups_kept: exactGroups.length,
        groups_dropped_uniform: droppedUniform,
        groups_dropped_stale: droppedStale,
        cap_reached: kept.length < opts.uniqueTasks,
        samples: records.length,
        samples_dropped_stale: staleSamples,
        samples_rejected: rejections.length,
        rejections,
        infra_errors: infraErrors,
        tamper_flagged: tamperFlagged,
        tamper_zeroed: tamperZeroed,
        verifier_shared_samples: sharedSamples,
        verifier_shared_tasks: [...sharedTasks].sort(),
        mean_reward: rewards.length ? rewards.reduce((a, b) => a + b, 0) / rewards.length : null,
        policy_version: current,
        started_at: startedAt,
        finished_at: new Date().toISOString(),
      };
      await writeJsonAtomic(path.join(outDir, "steps", `step_${String(step).padStart(6, "0")}.json`), summary);
      summaries.push(summary);
    }
  } finally {
    await writer.close();
  }
  return summaries;
}

function toRecord(s: Sample, at: { step: number; sampleIdx: number; promptIdx: number; advantage: number; dataset: string; model: string }): RolloutRecord {
  const t = s.trajectory;
  // exactly the in-memory stream the model conditioned on (checked by streamProblem before)
  const stream = s.stream!;
  const tokens = { promptTokens: stream.promptIds, responseTokens: stream.responseIds, logprobs: stream.logprobs, responseMask: stream.mask };
  const executions = t?.steps.flatMap((st) => st.executions ?? []) ?? [];
  const lastTurn = t?.steps.at(-1)?.model;
  return {
    step: at.step,
    sample_idx: at.sampleIdx,
    prompt_idx: at.promptIdx,
    task_name: s.task.name,
    dataset: at.dataset,
    ground_truth: null,
    policy_version: `${at.model}@${s.version}`,
    prompt_tokens: tokens.promptTokens,
    response_tokens: tokens.responseTokens,
    logprobs: tokens.logprobs,
    response_mask: tokens.responseMask,
    ...tokenCounts(tokens.promptTokens, tokens.responseMask),
    reward: s.reward,
    advantage: at.advantage,
    finish_reason: lastTurn?.finishReason ?? "error",
    request_info: {
      num_calls: executions.length,
      timeouts: executions.filter((e) => e.timedOut).length,
      tool_errors: executions.filter((e) => e.exitCode !== 0).length,
      tool_outputs: executions.map((e) => e.observation),
      tool_runtimes: executions.map((e) => e.durationMs / 1000),
      tool_calleds: t?.steps.map((st) => Boolean(st.executions?.length)) ?? [],
    },
    num_turns: t?.steps.length ?? 0,
    exit_status: t?.exitStatus ?? s.result.exception_info?.exception_type ?? "error",
    trajectory_path: s.trajectoryPath,
    created_at: s.result.finished_at,
  };
}

/** Draws tasks in a seeded random order, reshuffling after each pass over the set (an epoch). */
export function taskSampler<T>(items: T[], seed: number): () => T {
  const rand = seededRandom(seed);
  let order: T[] = [];
  return () => {
    if (order.length === 0) {
      order = [...items];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
    }
    return order.shift()!;
  };
}


async function readPolicyVersion(file?: string): Promise<{ version: number; missing?: boolean }> {
  if (!file) return { version: 0 };
  try {
    const v = Number.parseInt((await readFile(file, "utf8")).trim(), 10);
    return { version: Number.isFinite(v) ? v : 0 };
  } catch {
    return { version: 0, missing: true };
  }
}

/** G < 2 is refused: advantages are centered per group, so a group of one sample is never informative. */
export function checkGroupSize(g: number): void {
  if (!Number.isInteger(g) || g < 2) throw new Error(`-G ${g}: a group needs at least 2 samples (advantages are centered per group, so a group of 1 is never informative)`);
}

const STEP_RE = /^step_(\d+)(\.json)?$/;

/** The highest step number with a summary or a trial dir in `outDir` (0 when none). */
export function lastStepIn(outDir: string): number {
  let last = 0;
  for (const sub of ["steps", "trials"]) {
    const dir = path.join(outDir, sub);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const m = STEP_RE.exec(name);
      if (m) last = Math.max(last, Number(m[1]));
    }
  }
  return last;
}

/**
 * The first step to run. A non-empty outDir is refused unless continuing; continuing starts after the last
 * step found there, and an explicit start step at or below it is refused: the trial dirs older records point
 * to are never overwritten and no step number appears twice.
 */
export async function firstFreeStep(outDir: string, opts: { startStep?: number; continue?: boolean }): Promise<number> {
  const entries = (existsSync(outDir) ? readdirSync(outDir) : []).filter((e) => !isLockEntry(e));
  if (entries.length === 0) return opts.startStep ?? 1;
  if (!opts.continue) {
    throw new Error(`--out ${outDir} is not empty; pass --continue to add steps to that rollout, or choose another --out`);
  }
  const last = lastStepIn(outDir);
  if (opts.startStep !== undefined && opts.startStep <= last) {
    throw new Error(`--start-step ${opts.startStep}: ${outDir} already has step ${last}; continuing starts at step ${last + 1} or later`);
  }
  return opts.startStep ?? last + 1;
}
