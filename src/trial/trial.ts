// One trial, in a straight line: start the environment → run the agent → verify → collect logs → remove.
// Each phase is timed and an error in one phase is recorded, not thrown past the verifier.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { runEpisode } from "../agent/chatProtocol.js";
import type { AgentEvent, AgentLimits } from "../agent/loop.js";
import { appendTestReport, runTokenEpisode, testReport, type TokenStream } from "../agent/tokenProtocol.js";
import type { TokenClient } from "../model/tokens.js";
import type { PromptSet } from "../agent/prompts.js";
import type { Trajectory } from "../agent/schema.js";
import type { ModelClient, Profile } from "../model/types.js";
import { costUsd, type ModelPrice } from "../model/price.js";
import type { PullPolicy } from "../sandbox/docker/images.js";
import type { PullProgress } from "../sandbox/docker/pull.js";
import type { Sandbox, SandboxBackend, SandboxBackendName, SandboxSpec } from "../sandbox/types.js";
import { SandboxError } from "../sandbox/types.js";
import { JOB_DIR_LABEL, JOB_ID_LABEL } from "../sandbox/owner.js";
import { passedEnv, resolveEnvTemplates } from "../tasks/harbor.js";
import { checkTaskTimeouts } from "../tasks/timeouts.js";
import type { Task } from "../tasks/types.js";
import { writeJsonAtomic } from "../util/fs.js";
import { TMAX_VERSION } from "../util/version.js";
import { collectArtifacts, collectLogs } from "./collectLogs.js";
import type { AgentName, TrialResult } from "../results/schema.js";
import { rewardOf } from "../results/reward.js";
import { exceptionInfo, isInfrastructureKind, TrialPhaseError } from "./errors.js";
import { runSteps, type StepPhases } from "./steps.js";
import { rolloutDetails, toAtif } from "../results/atif.js";
import { harborExceptionType, harborTrialConfig, phaseMultipliers } from "../results/harbor.js";
import type { IntegrityMode, TamperReport } from "./tamper.js";
import { chooseIsolation, clampUnit, verify, VerifierError, type TestRunOutput, type VerifierIsolation } from "./verifier.js";
import { newBudget } from "../sandbox/bytes/safeExtract.js";

/** How trials run, shared by jobs (eval) and rollouts: agent limits and sandbox choices. */
export interface TrialSettings {
  agentLimits?: Partial<AgentLimits>;
  timeoutMultiplier: number;
  /** Per-phase multipliers (Harbor's): each replaces timeoutMultiplier for its phase when given. */
  agentTimeoutMultiplier?: number;
  verifierTimeoutMultiplier?: number;
  buildTimeoutMultiplier?: number;
  imageMap: Record<string, string>;
  backend: SandboxBackendName;
  /** Allows the local backend. */
  unsafe?: boolean;
  /** "task" follows the task's allow_internet; the others force a network mode. */
  network: "task" | "none" | "bridge";
  /** Deprecated: prebuilt docker_image first is now the default (Harbor's); kept so old scripts still parse. */
  preferPrebuilt?: boolean;
  /** Tamper report and what it does: strict zeroes flagged rewards (rollout default), flag records only (eval default), off. */
  integrity?: IntegrityMode;
  /** Where the verifier runs (default: task.toml `[verifier] tmax_isolation`, else `verifierIsolationDefault`). */
  verifierIsolation?: VerifierIsolation;
  /** Without a flag or a task setting: `harbor` = shared, Harbor's semantics (eval, run); `strong` = snapshot on docker (rollout). */
  verifierIsolationDefault?: "harbor" | "strong";
  /** Python/pytest hardening of TB-style test.sh (default on). */
  verifierHardening?: boolean;
  /** Container limits over the task's own; the train profile defaults to 4096 MB and no CPU cap (training's env). */
  resources?: { cpus?: number; memoryMb?: number };
  /** "none": no wall clock on the agent phase (training had none); default: the task's agent timeout. */
  agentTimeout?: "task" | "none";
  /** Prompt texts (`--prompts`, `--tool-description`); default ours. */
  prompts?: PromptSet;
  /** When to pull a task's docker_image: always, missing (default, $TMAX_PULL), never. */
  pull?: PullPolicy;
  /** Build the task's Dockerfile even when it names a docker_image. */
  forceBuild?: boolean;
  /** Host variables `${NAME}` templates in task files may expand (--pass-env); nothing else is read. */
  passEnv?: string[];
  /** Harbor's extra_instructions: texts appended to every task's instruction (a blank line before each). */
  extraInstructions?: string[];
  /** Harbor's --ve: variables for the verifier, over the task's [verifier.env] (never written to files). */
  verifierEnv?: Record<string, string>;
  /** Harbor's --disable-verification: the tests never run; no verifier result, reward 0 (not a score). */
  disableVerification?: boolean;
  /** Harbor's --artifact: container paths collected after the trial into `<trial>/artifacts/` (checked, absolute). */
  artifacts?: string[];
}

/**
 * Memory of a container whose task sets none (Harbor's default `memory_mb`): without it the container had no
 * limit at all, and one hostile command (`python3 -c "b'x' * 10**11"`) took the host's memory, where the
 * OOM killer picks any process (tmax, the engine, other jobs).
 */
export const DEFAULT_MEMORY_MB = 2048;
/** Training's container limits: `mem_limit 4g` (= memswap), no CPU cap. */
export const TRAIN_RESOURCES: { cpus?: number; memoryMb?: number } = { memoryMb: 4096 };
/** Training's verifier timeout floor (open-instruct's env: max(test_timeout, 600)). */
export const TRAIN_MIN_VERIFIER_TIMEOUT_SEC = 600;

/** Environment events of a trial: image pull progress and one-line notes (e.g. a pull that fell back to a build). */
export type EnvironmentEvent = { type: "pull"; progress: PullProgress } | { type: "note"; message: string };

export interface TrialInput {
  task: Task;
  /** The model's price (--price-*, USD per million tokens): the agent result's cost_usd; without one it stays null. */
  price?: ModelPrice;
  attempt: number;
  /** The trial directory (created); its name is the trial name. */
  trialDir: string;
  jobName: string;
  /** The job's unique id (a UUID stored in its dir, see jobs/identity.ts): labels the containers. */
  jobId?: string;
  agent: AgentName;
  backend: SandboxBackend;
  model?: ModelClient;
  profile?: Profile;
  agentLimits?: Partial<AgentLimits>;
  prompts?: PromptSet;
  timeoutMultiplier?: number;
  agentTimeoutMultiplier?: number;
  verifierTimeoutMultiplier?: number;
  buildTimeoutMultiplier?: number;
  imageMap?: Record<string, string>;
  pull?: PullPolicy;
  forceBuild?: boolean;
  /** The registry dataset of the task, recorded in result.json. */
  dataset?: { name: string; version: string; commit: string | null };
  onEnvironment?: (event: EnvironmentEvent) => void;
  /** "task" follows the task's allow_internet; the others force a network mode. */
  network?: "task" | "none" | "bridge";
  /** Host variables `${NAME}` templates in task files may expand (--pass-env); nothing else is read. */
  passEnv?: string[];
  /** The dataset directory (kept as `dataset_dir`). */
  source?: string;
  /** See TrialSettings; default "flag". */
  integrity?: IntegrityMode;
  verifierIsolation?: VerifierIsolation;
  verifierIsolationDefault?: "harbor" | "strong";
  verifierHardening?: boolean;
  /** Train profile, token-in/token-out: the token endpoints, this sample's seed, and the stream when it ends. */
  tokens?: TokenClient;
  seed?: number;
  onTokenStream?: (stream: TokenStream) => void;
  resources?: TrialSettings["resources"];
  agentTimeout?: TrialSettings["agentTimeout"];
  extraInstructions?: TrialSettings["extraInstructions"];
  verifierEnv?: TrialSettings["verifierEnv"];
  disableVerification?: boolean;
  artifacts?: string[];
  /** Harbor's `source`: the dataset's name (default: the dataset directory's name). */
  datasetName?: string;
  onEvent?: (event: AgentEvent) => void;
  /** Receives the episode's trajectory from memory (rollouts build records from it, never from files). */
  onTrajectory?: (trajectory: Trajectory) => void;
  /** Called as each phase starts (live views): build/start the environment, agent, verifier, log download. */
  onPhase?: (phase: TrialPhase) => void;
  signal?: AbortSignal;
}

export type TrialPhase = "build" | "agent" | "verify" | "logs";

// Kept where they were for importers written before they moved (remove once none is left).
export { exceptionInfo, TrialPhaseError } from "./errors.js";
export { rewardOf } from "../results/reward.js";

const now = () => new Date().toISOString();

export async function runTrial(input: TrialInput): Promise<TrialResult> {
  const { task, trialDir, agent } = input;
  const mult = phaseMultipliers({ ...input, timeoutMultiplier: input.timeoutMultiplier ?? 1 });
  const trialName = path.basename(trialDir);
  await mkdir(path.join(trialDir, "agent"), { recursive: true });
  const modelName = agent === "tmax" && input.model ? input.model.config.model : null;
  const datasetName = input.datasetName ?? (input.source ? path.basename(input.source) : null);
  const trialConfig = harborTrialConfig({
    taskName: task.name,
    taskDir: task.dir,
    trialDir,
    attempt: input.attempt,
    jobName: input.jobName,
    jobId: input.jobId ?? null,
    datasetName,
    agent,
    model: modelName,
    backend: input.backend.name,
    preferPrebuilt: !input.forceBuild,
    agentKwargs: agent === "tmax" ? { profile: input.profile ?? "eval", ...(input.agentLimits ?? {}) } : {},
    disableVerification: input.disableVerification,
    timeoutMultiplier: input.timeoutMultiplier ?? 1,
    agentTimeoutMultiplier: input.agentTimeoutMultiplier,
    verifierTimeoutMultiplier: input.verifierTimeoutMultiplier,
    buildTimeoutMultiplier: input.buildTimeoutMultiplier,
  });
  await writeJsonAtomic(path.join(trialDir, "config.json"), trialConfig);

  const result: TrialResult = {
    id: randomUUID(),
    task_name: task.name,
    trial_name: trialName,
    trial_uri: `file://${path.resolve(trialDir)}`,
    task_id: { path: task.dir },
    source: datasetName,
    task_checksum: task.checksum,
    config: trialConfig,
    attempt: input.attempt,
    agent_info: {
      name: agent,
      version: TMAX_VERSION,
      model_info: modelName ? { name: modelName, provider: "openai-compatible" } : null,
    },
    agent_result: null,
    verifier_result: null,
    reward: 0,
    exception_info: null,
    started_at: now(),
    finished_at: "",
    environment_setup: null,
    agent_setup: null,
    agent_execution: null,
    verifier: null,
    ...(input.dataset ? { dataset: input.dataset } : {}),
    dataset_dir: input.source ?? null,
  };
  const fail = (e: unknown) => {
    result.exception_info ??= exceptionInfo(e);
  };

  let sandbox: Sandbox | undefined;
  // one download budget per trial, shared by the verifier's logs (from where it ran) and the rest
  const downloadBudget = newBudget();
  let verifierLogsCollected = false;
  // 5. logs: untrusted data under <trial>/sandbox/ (and --artifact paths under <trial>/artifacts/), never over tmax's own files
  const finishLogs = async (verifierDone: boolean): Promise<TrialResult> => {
    input.onPhase?.("logs");
    result.downloads = await collectLogs(sandbox!, trialDir, { remotes: verifierDone ? ["/logs/agent", "/logs/artifacts"] : undefined, budget: downloadBudget }).catch((e) => ({
      files: 0,
      bytes: 0,
      entries: 0,
      links: 0,
      skipped: 0,
      error: String((e as Error).message),
    }));
    if (input.artifacts?.length) await collectArtifacts(sandbox!, trialDir, input.artifacts, downloadBudget).catch(() => undefined);
    return result;
  };
  try {
    // 0. timeouts that a timer cannot hold fail the trial at once, not after a "timeout" that fires immediately
    checkTaskTimeouts(task, mult, input.agentLimits?.commandTimeoutSec);
    // 1. environment
    input.onPhase?.("build");
    let started = now();
    try {
      sandbox = await input.backend.create(sandboxSpec(task, input, mult.build), {
        signal: input.signal,
        onPull: input.onEnvironment ? (progress) => input.onEnvironment!({ type: "pull", progress }) : undefined,
        onNote: input.onEnvironment ? (message) => input.onEnvironment!({ type: "note", message }) : undefined,
      });
      if (sandbox.imageUsed) result.image = sandbox.imageUsed;
      const mk = await sandbox.exec(["mkdir", "-p", "/logs/agent", "/logs/verifier", "/logs/artifacts"], { timeoutSec: 30 });
      if (mk.exitCode !== 0) throw new TrialPhaseError("EnvironmentError", `could not create /logs in the container: ${mk.stderr.trim()}`, true);
    } finally {
      result.environment_setup = { started_at: started, finished_at: now() };
    }

    // Multi-step tasks: agent and verifier per step in this one environment (see steps.ts).
    const integrity = input.integrity ?? "flag";
    if (task.steps?.length) {
      // the same verify path as a single-step trial: frozen scan, tamper report, quarantine, watch, clamp
      const verifyStep: StepPhases["verify"] = async (t, sb, dir, m, signal, passEnv) => {
        let tamper: TamperReport | undefined;
        try {
          const outcome = await verify({
            task: t,
            sandbox: sb,
            trialDir: dir,
            mult: m,
            passEnv,
            extraEnv: input.verifierEnv,
            isolation: chooseIsolation(t, sb.backend, input.verifierIsolation, input.verifierIsolationDefault),
            harden: input.verifierHardening ?? true,
            integrity,
            onTamper: (x) => (tamper = x),
            signal,
            // the step's verifier logs land in its dir; its files leave the container before the next step
            collect: async (where) => {
              await collectLogs(where, dir, { remotes: ["/logs/verifier"] }).catch(() => undefined);
            },
            clearAfter: true,
          });
          const reward = settleReward(outcome.rewards, tamper, integrity);
          const refused = refusedBy(tamper, integrity);
          const scored = Object.fromEntries(Object.entries(outcome.rewards).map(([k, v]) => [k, refused ? 0 : clampUnit(v)]));
          return { rewards: outcome.rewards, tamper, reward, scored };
        } catch (e) {
          throw Object.assign(e instanceof VerifierError ? new TrialPhaseError(e.type, e.message) : (e as Error), { tamper });
        }
      };
      await runSteps(input, sandbox, result, mult.agent, { runAgent, verify: verifyStep, fail }); // steps: one multiplier for agent and verifier
      result.downloads = await collectLogs(sandbox, trialDir, { budget: downloadBudget }).catch((e) => ({ files: 0, bytes: 0, entries: 0, links: 0, skipped: 0, error: String((e as Error).message) }));
      if (input.artifacts?.length) await collectArtifacts(sandbox, trialDir, input.artifacts, downloadBudget).catch(() => undefined);
      return result;
    }

    // train: the token stream of a submitted episode waits for the test report (see closeTokenStream)
    let tokenStream: TokenStream | undefined;
    const agentInput: TrialInput = input.onTokenStream || input.tokens ? { ...input, onTokenStream: (st) => { tokenStream = st; input.onTokenStream?.(st); } } : input;

    // 2. agent (a timeout or agent error is recorded and the verifier still runs)
    input.onPhase?.("agent");
    started = now();
    try {
      await runAgent(agentInput, sandbox, result, mult.agent);
    } catch (e) {
      fail(e);
    } finally {
      result.agent_execution = { started_at: started, finished_at: now() };
    }

    // 3. verifier: the change scan (tamper report) frozen, then the tests, copied in only now and never visible
    // to the agent (src/trial/verifier.ts)
    if (input.disableVerification) return await finishLogs(false); // Harbor's --disable-verification: no tests, no reward
    input.onPhase?.("verify");
    started = now();
    try {
      const outcome = await verify({
        task,
        sandbox,
        trialDir,
        mult: mult.verifier,
        minTimeoutSec: input.profile === "train" ? TRAIN_MIN_VERIFIER_TIMEOUT_SEC : 0,
        streamsApart: tokenStream?.awaitingReport === true,
        passEnv: input.passEnv,
        extraEnv: input.verifierEnv,
        isolation: chooseIsolation(task, sandbox.backend, input.verifierIsolation, input.verifierIsolationDefault),
        harden: input.verifierHardening ?? true,
        integrity,
        onTamper: (t) => (result.tamper = t),
        signal: input.signal,
        // /logs/verifier comes from where the verifier ran (the snapshot is removed right after)
        collect: async (where) => {
          verifierLogsCollected = true;
          await collectLogs(where, trialDir, { remotes: ["/logs/verifier"], budget: downloadBudget }).catch(() => undefined);
        },
      });
      result.verifier_result = { rewards: outcome.rewards };
      result.reward = settleReward(outcome.rewards, result.tamper, integrity); // [0, 1]; 0 when forged, or flagged under strict
      if (tokenStream && outcome.testRun) await closeTokenStream(tokenStream, input, outcome.testRun, result.reward);
      await writeRewardFile(trialDir, outcome.rewards); // Harbor's verifier/reward.txt|json, from what tmax parsed
    } catch (e) {
      // a timed-out test run still answers the submitting call, with its partial output and reward 0
      if (tokenStream && e instanceof VerifierError && e.testRun) await closeTokenStream(tokenStream, input, e.testRun, 0).catch(() => undefined);
      fail(e instanceof VerifierError ? new TrialPhaseError(e.type, e.message) : e);
    } finally {
      result.verifier = { started_at: started, finished_at: now() };
    }
    if (tokenStream?.awaitingReport) tokenStream.problem ??= "submitted, but the verifier produced no test report to close the record";

    await finishLogs(verifierLogsCollected);
  } catch (e) {
    fail(e);
  } finally {
    await sandbox?.remove().catch(() => {});
    result.finished_at = now();
    await writeJsonAtomic(path.join(trialDir, "result.json"), result);
  }
  return result;
}

export function sandboxSpec(task: Task, input: TrialInput, mult: number): SandboxSpec {
  if (task.config.networkMode === "allowlist" && (!input.network || input.network === "task")) {
    throw new TrialPhaseError(
      "EnvironmentError",
      `network_mode = "allowlist" (${(task.config.allowedHosts ?? []).join(", ") || "no hosts"}) is not enforced by tmax's sandboxes; refusing rather than widening or cutting access silently (pass --network none or --network bridge to choose)`,
    );
  }
  const network = input.network && input.network !== "task" ? input.network : task.config.allowInternet ? "bridge" : "none";
  const resources = input.resources ?? (input.profile === "train" ? TRAIN_RESOURCES : { cpus: task.config.cpus, memoryMb: task.config.memoryMb ?? DEFAULT_MEMORY_MB });
  const common: SandboxSpec = {
    cpus: resources.cpus,
    memoryMb: resources.memoryMb,
    ...(task.config.storageMb ? { storageMb: task.config.storageMb } : {}),
    network,
    env: resolveEnvTemplates(task.config.env, passedEnv(input.passEnv)),
    workdir: task.config.workdir,
    labels: { [JOB_ID_LABEL]: input.jobId ?? randomUUID(), [JOB_DIR_LABEL]: path.dirname(path.resolve(input.trialDir)), "io.tmax.task": task.name },
    name: task.name,
    ...(task.config.gpus ? { gpus: task.config.gpus } : {}),
    ...(input.pull ? { pull: input.pull } : {}),
    ...(input.forceBuild ? { forceBuild: true } : {}),
    ...(task.environment.compose ? { compose: { main: task.environment.compose.main, services: task.environment.compose.services } } : {}),
  };
  // Harbor's order: the task's prebuilt docker_image (pulled when missing), its Dockerfile as the fallback.
  const hasDockerfile = existsSync(path.join(task.environment.contextDir, task.environment.dockerfile));
  const prebuilt = task.config.dockerImage ? { prebuilt: task.config.dockerImage, ...(hasDockerfile ? {} : { image: task.config.dockerImage }) } : {};
  if (!hasDockerfile) return { ...common, ...prebuilt };
  return {
    ...common,
    ...prebuilt,
    build: {
      contextDir: task.environment.contextDir,
      dockerfile: task.environment.dockerfile,
      imageMap: input.imageMap,
      timeoutSec: task.config.buildTimeoutSec * mult,
      network, // RUN steps get the trial's network, never the host's
    },
  };
}

/** The instruction the agent gets: the task's, then each extra instruction after a blank line. */
export const withExtra = (instruction: string, extra: string[] = []): string => (extra.length ? [instruction.trimEnd(), ...extra].join("\n\n") : instruction);

export async function runAgent(input: TrialInput, sandbox: Sandbox, result: TrialResult, mult: number): Promise<void> {
  const { task, trialDir } = input;
  const timeoutSec = task.config.agentTimeoutSec * mult;
  const wallClock = input.agentTimeout === "none" && input.agent === "tmax" ? [] : [AbortSignal.timeout(timeoutSec * 1000)];
  const signals = [...wallClock, ...(input.signal ? [input.signal] : [])];
  const signal = AbortSignal.any(signals);

  if (input.agent === "nop") {
    result.agent_result = { n_input_tokens: 0, n_cache_tokens: null, n_output_tokens: 0, cost_usd: null, n_steps: 0, exit_status: "nop" };
    return;
  }
  if (input.agent === "oracle") {
    if (!task.solutionDir) throw new TrialPhaseError("AgentError", `task ${task.name} has no solution/solve.sh for the oracle`);
    await sandbox.upload(task.solutionDir, "/");
    await sandbox.exec(["bash", "-c", `[ -d /solution ] || mv /${path.basename(task.solutionDir)} /solution`], { timeoutSec: 30 });
    // The agent-timeout signal started before the exec's own timeout, so it usually fires first.
    const run = await sandbox
      .exec(["bash", "-c", "bash /solution/solve.sh > /logs/agent/oracle.txt 2>&1"], {
        cwd: sandbox.workdir,
        env: resolveEnvTemplates(task.config.solutionEnv ?? {}, passedEnv(input.passEnv)),
        timeoutSec,
        signal,
      })
      .catch((e) => {
        if (signal.aborted && !input.signal?.aborted && (signal.reason as { name?: string })?.name === "TimeoutError") return null;
        throw e;
      });
    const timedOut = !run || run.timedOut;
    result.agent_result = { n_input_tokens: 0, n_cache_tokens: null, n_output_tokens: 0, cost_usd: null, n_steps: 1, exit_status: timedOut ? "timeout" : "submitted", metadata: { exit_code: run?.exitCode ?? 124 } };
    if (timedOut) throw new TrialPhaseError("AgentTimeoutError", `oracle did not finish within ${timeoutSec}s`);
    return;
  }

  if (input.profile === "train" && input.tokens) {
    // token-in/token-out (training's loop); start in /app unless the task names its workdir
    const episode = await runTokenEpisode({
      taskName: task.name,
      instruction: withExtra(task.instruction, input.extraInstructions),
      tokens: input.tokens,
      sandbox,
      limits: input.agentLimits,
      seed: input.seed,
      prompts: input.prompts,
      startDir: task.config.workdir ? undefined : "/app",
      signal,
      onEvent: input.onEvent,
    });
    input.onTokenStream?.(episode.stream);
    await recordEpisode(episode.trajectory, trialDir, result, timeoutSec, input);
    return;
  }
  if (!input.model) throw new TrialPhaseError("AgentError", "the tmax agent needs a model");
  const trajectory = await runEpisode({
    taskName: task.name,
    instruction: withExtra(task.instruction, input.extraInstructions),
    model: input.model,
    sandbox,
    profile: input.profile ?? "eval",
    limits: input.agentLimits,
    ...(input.prompts ? { prompts: input.prompts } : {}),
    signal,
    onEvent: input.onEvent,
  });
  await recordEpisode(trajectory, trialDir, result, timeoutSec, input);
}

/**
 * Appends open-instruct's test report to a submitted train episode's token stream (the observation its env
 * returns for the submitting call). A stream that cannot get it is marked, never left looking complete.
 */
async function closeTokenStream(stream: TokenStream, input: TrialInput, run: TestRunOutput, reward: number): Promise<void> {
  if (!stream.awaitingReport || !input.tokens) return;
  try {
    const report = testReport(run, reward, run.timeoutSec, input.prompts?.observation);
    await appendTestReport(stream, input.tokens, report, input.signal);
  } catch (e) {
    stream.problem ??= `the test report could not be appended: ${(e as Error).message.split("\n")[0]}`;
  }
}

/** Writes the trajectory (tmax's native one, and the same episode in Harbor's ATIF) and the agent result. */
async function recordEpisode(trajectory: Trajectory, trialDir: string, result: TrialResult, timeoutSec: number, input: TrialInput): Promise<void> {
  input.onTrajectory?.(trajectory); // rollouts build records from memory, never from files in the trial dir
  // tmax's own records, from memory; the sandbox's /logs land under <trial>/sandbox/ and cannot replace them
  await writeJsonAtomic(path.join(trialDir, "agent", "tmax-trajectory.json"), trajectory);
  await writeJsonAtomic(path.join(trialDir, "agent", "trajectory.json"), toAtif(trajectory, { sessionId: result.id }));
  result.agent_result = {
    n_input_tokens: trajectory.usage.promptTokens,
    n_cache_tokens: trajectory.usage.cachedTokens ?? null, // null: the server did not say (vLLM does not)
    n_output_tokens: trajectory.usage.completionTokens,
    cost_usd: input.price ? costUsd(trajectory.usage, input.price) : null, // no price given: no cost, never a guessed one
    rollout_details: input.model?.config.logprobs || input.model?.config.tokenIds ? rolloutDetails(trajectory) : null,
    n_steps: trajectory.steps.length,
    exit_status: trajectory.exitStatus,
    metadata: { context_tokens: trajectory.usage.contextTokens, duration_ms: trajectory.durationMs },
  };
  if (trajectory.exitStatus === "timeout") throw new TrialPhaseError("AgentTimeoutError", `agent did not finish within ${timeoutSec}s`);
  if (trajectory.exitStatus === "error") {
    // the model server or the engine going away is infrastructure (retried by the runner); anything else is the agent's
    const kind = trajectory.errorKind ?? "other";
    const infra = isInfrastructureKind(kind);
    throw new TrialPhaseError(kind.startsWith("model:") ? "ModelError" : kind.startsWith("sandbox:") ? "EnvironmentError" : "AgentError", trajectory.error ?? "agent error", infra);
  }
}

/**
 * The reward a trial (or step) scores: clamped to [0, 1] in eval as in rollout; 0 when the verifier saw a
 * forged reward (any integrity mode but off) or when the tamper report flagged the trial under strict.
 */
export function settleReward(rewards: Record<string, number>, tamper: TamperReport | undefined, integrity: IntegrityMode): number {
  const reward = clampUnit(rewardOf(rewards));
  if (!refusedBy(tamper, integrity)) return reward;
  tamper!.zeroed = reward !== 0;
  return 0;
}

function refusedBy(tamper: TamperReport | undefined, integrity: IntegrityMode): boolean {
  return Boolean(tamper) && integrity !== "off" && Boolean(tamper!.forged || (tamper!.flagged && integrity === "strict"));
}

/** tmax's own verifier/reward.txt (one number) or reward.json (named numbers), as Harbor lays them out; never the sandbox's bytes. */
async function writeRewardFile(trialDir: string, rewards: Record<string, number>): Promise<void> {
  const dir = path.join(trialDir, "verifier");
  await mkdir(dir, { recursive: true });
  const keys = Object.keys(rewards);
  if (keys.length === 1 && keys[0] === "reward") await writeFile(path.join(dir, "reward.txt"), `${rewards.reward}\n`);
  else await writeJsonAtomic(path.join(dir, "reward.json"), rewards);
}
