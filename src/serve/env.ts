// What every session of one `tmax serve` shares: the dataset, the backend, the trial settings (as in eval and
// rollout), the job dir whose id labels every container, and the two trial pieces a TB2 session needs besides
// an episode: a sandbox made exactly as a trial makes it, and the trial's scoring (tamper report, verifier).
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { PromptSet } from "../agent/prompts.js";
import { sandboxSpec, settleReward, type TrialInput, type TrialSettings } from "../trial/trial.js";
import { TrialPhaseError } from "../trial/errors.js";
import type { IntegrityMode, TamperReport } from "../trial/tamper.js";
import { chooseIsolation, verify } from "../trial/verifier.js";
import type { TokenClient } from "../model/tokens.js";
import type { Profile } from "../model/types.js";
import type { Sandbox, SandboxBackend } from "../sandbox/types.js";
import type { Task } from "../tasks/types.js";
import { seededRandom } from "../util/random.js";
import { ProtocolError, type ResetParams } from "./protocol.js";

export interface ServeEnv {
  datasetDir: string;
  /** Loaded tasks, by name. */
  tasks: Map<string, Task>;
  backend: SandboxBackend;
  settings: TrialSettings;
  jobDir: string;
  jobId: string;
  /** Defaults of a reset that names none. */
  actionSet: "tb2" | "harness";
  profile: Profile;
  /** The vLLM /tokenize endpoints (train harness sessions); absent when no --base-url was given. */
  tokens?: TokenClient;
  /** The served model's name, recorded in trials. */
  modelName: string;
  /** Registry dataset the tasks came from, recorded in trials. */
  dataset?: { name: string; version: string; commit: string | null };
}

/** The prompt texts of a harness session (ours unless `--prompts`). */
export function promptsOf(env: ServeEnv): PromptSet | undefined {
  return env.settings.prompts;
}

/** The task a reset names: task_id / task_name (name, `org/name` tail or dir name), task_path inside the dataset, or drawn with `seed`. */
export function pickTask(env: ServeEnv, p: ResetParams): Task {
  const id = p.task_id ?? p.task_name;
  if (id) {
    const task = env.tasks.get(id) ?? [...env.tasks.values()].find((t) => t.name.split("/").pop() === id || path.basename(t.dir) === id);
    if (!task) throw new ProtocolError("EXECUTION_ERROR", `Task not found: ${JSON.stringify(id)} is not a task of the served dataset (GET /tasks lists them)`);
    return task;
  }
  if (p.task_path) {
    // a path never reaches the host's filesystem beyond the served tasks
    const wanted = path.resolve(env.datasetDir, p.task_path);
    const task = [...env.tasks.values()].find((t) => path.resolve(t.dir) === wanted);
    if (!task) throw new ProtocolError("EXECUTION_ERROR", `Task path not found: ${JSON.stringify(p.task_path)} is not a task directory of the served dataset`);
    return task;
  }
  const names = [...env.tasks.keys()].sort();
  const rand = p.seed !== null && p.seed !== undefined ? seededRandom(p.seed) : Math.random;
  return env.tasks.get(names[Math.floor(rand() * names.length)]!)!;
}

/** A fresh trial dir for one episode of `task`. */
export function newTrialDir(env: ServeEnv, task: Task): { trialDir: string; episodeId: string } {
  const episodeId = randomUUID();
  return { episodeId, trialDir: path.join(env.jobDir, `${task.name.replace(/[^A-Za-z0-9._-]/g, "_")}__${episodeId.slice(0, 8)}`) };
}

/** The trial's input for `task` (everything but the agent): the same fields eval, run and rollout fill. */
export function trialBase(env: ServeEnv, task: Task, trialDir: string, profile: Profile): Omit<TrialInput, "agent"> {
  const s = env.settings;
  return {
    task,
    attempt: 0,
    trialDir,
    jobName: path.basename(env.jobDir),
    jobId: env.jobId,
    backend: env.backend,
    profile,
    agentLimits: s.agentLimits,
    prompts: s.prompts,
    timeoutMultiplier: s.timeoutMultiplier,
    agentTimeoutMultiplier: s.agentTimeoutMultiplier,
    verifierTimeoutMultiplier: s.verifierTimeoutMultiplier,
    buildTimeoutMultiplier: s.buildTimeoutMultiplier,
    imageMap: s.imageMap,
    pull: s.pull,
    forceBuild: s.forceBuild,
    network: s.network,
    passEnv: s.passEnv,
    // RL's default: a flagged sample earns 0 (rollout); eval's: recorded only
    integrity: s.integrity ?? (profile === "train" ? "strict" : "flag"),
    verifierIsolation: s.verifierIsolation,
    verifierHardening: s.verifierHardening,
    resources: s.resources,
    agentTimeout: s.agentTimeout ?? (profile === "train" ? "none" : "task"),
    source: env.datasetDir,
    ...(env.dataset ? { dataset: env.dataset } : {}),
  };
}

/** A sandbox for `task` exactly as a trial's environment phase makes it (spec, labels, /logs dirs). */
export async function createTaskSandbox(env: ServeEnv, task: Task, trialDir: string, signal?: AbortSignal): Promise<Sandbox> {
  await mkdir(trialDir, { recursive: true });
  const input = { ...trialBase(env, task, trialDir, "eval"), agent: "tmax" } as TrialInput;
  const sandbox = await env.backend.create(sandboxSpec(task, input, input.buildTimeoutMultiplier ?? input.timeoutMultiplier ?? 1), { signal });
  try {
    const mk = await sandbox.exec(["mkdir", "-p", "/logs/agent", "/logs/verifier", "/logs/artifacts"], { timeoutSec: 30 });
    if (mk.exitCode !== 0) throw new TrialPhaseError("EnvironmentError", `could not create /logs in the container: ${mk.stderr.trim()}`, true);
    return sandbox;
  } catch (e) {
    await sandbox.remove().catch(() => {});
    throw e;
  }
}

export interface Score {
  /** The reward the trial would record: clamped to [0, 1], 0 when strict integrity flagged the sandbox. */
  reward: number;
  rewards: Record<string, number>;
  tamper?: TamperReport;
  /** The verifier's output (test.sh's stdout and stderr), as far as it could be read. */
  output: string;
  exitCode?: number;
}

/**
 * The trial's verifier phase on a live sandbox (src/trial/verifier.ts): the frozen change scan (tamper report),
 * the tests, the reward settled as the trial settles it (clamped; 0 when forged, or flagged under strict).
 */
export async function scoreSandbox(env: ServeEnv, task: Task, sandbox: Sandbox, trialDir: string, signal?: AbortSignal): Promise<Score> {
  const integrity: IntegrityMode = env.settings.integrity ?? "flag";
  let tamper: TamperReport | undefined;
  let output = "";
  const mult = env.settings.verifierTimeoutMultiplier ?? env.settings.timeoutMultiplier ?? 1;
  const outcome = await verify({
    task,
    sandbox,
    trialDir,
    mult,
    passEnv: env.settings.passEnv,
    isolation: chooseIsolation(task, sandbox.backend, env.settings.verifierIsolation, env.settings.verifierIsolationDefault),
    harden: env.settings.verifierHardening ?? true,
    integrity,
    onTamper: (t) => (tamper = t),
    signal,
    collect: async (where) => {
      output = (await where.readFile("/logs/verifier/test-stdout.txt", { maxBytes: 1 << 20 }).catch(() => null))?.toString("utf8") ?? "";
    },
  });
  const reward = settleReward(outcome.rewards, tamper, integrity);
  return { reward, rewards: outcome.rewards, ...(tamper ? { tamper } : {}), output };
}
