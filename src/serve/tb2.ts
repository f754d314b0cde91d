// OpenEnv's Terminal-Bench 2 action set (meta-pytorch/OpenEnv, envs/tbench2_env: models.py, and the docker
// mode of server/tbench2_env_environment.py): exec, write_file, evaluate, close, with its observation and state
// fields, so code written for tbench2_env runs against tmax. Commands run in tmax's persistent shell (cwd and
// exports carry over; stdout and stderr in one stream, in order); `evaluate` is the trial's tamper report and
// verifier (tests copied in only then), after which the sandbox is gone: the episode is over.
import { maxOutputBytesOf } from "../agent/observation.js";
import path from "node:path";
import { z } from "zod";
import { DEFAULT_LIMITS } from "../agent/loop.js";
import { openShell, type Shell } from "../agent/shell.js";
import type { Sandbox } from "../sandbox/types.js";
import type { Task } from "../tasks/types.js";
import { createTaskSandbox, newTrialDir, scoreSandbox, type ServeEnv } from "./env.js";
import { parseOr, ProtocolError, type ResetParams, type StepPayload } from "./protocol.js";

/** Tbench2Action (extra fields forbidden, as OpenEnv's Action). */
export const Tb2Action = z.strictObject({
  action_type: z.string().default("exec"),
  command: z.string().default(""),
  session_id: z.string().nullable().default(null),
  block: z.boolean().default(true),
  wait_seconds: z.number().nullable().default(null),
  file_path: z.string().default(""),
  content: z.string().default(""),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type Tb2Action = z.infer<typeof Tb2Action>;

/** Tbench2Observation's own fields (done, reward and metadata travel beside them). */
export const Tb2Observation = z.object({
  instruction: z.string(),
  output: z.string(),
  success: z.boolean(),
  error: z.string(),
  task_id: z.string(),
  task_path: z.string(),
  session_id: z.string().nullable(),
  action_type: z.string(),
  info: z.record(z.string(), z.unknown()),
});
export type Tb2Observation = z.infer<typeof Tb2Observation>;

/** Tbench2State. */
export const Tb2State = z.object({
  episode_id: z.string().nullable(),
  step_count: z.number(),
  task_id: z.string(),
  task_path: z.string(),
  session_id: z.string(),
  terminal_ready: z.boolean(),
  last_action_type: z.string(),
  last_command: z.string(),
  last_output: z.string(),
});
export type Tb2State = z.infer<typeof Tb2State>;

const DEFAULT_SESSION = "tb2-session";

export class Tb2Episode {
  readonly kind = "tb2" as const;
  private sandbox: Sandbox | null;
  private removal: Promise<void> | null = null;
  private readonly state: Tb2State;

  private constructor(
    private readonly env: ServeEnv,
    private readonly task: Task,
    private readonly trialDir: string,
    sandbox: Sandbox,
    private readonly shell: Shell,
    episodeId: string,
  ) {
    this.sandbox = sandbox;
    this.state = { episode_id: episodeId, step_count: 0, task_id: task.name, task_path: task.dir, session_id: "", terminal_ready: true, last_action_type: "", last_command: "", last_output: "" };
  }

  /** A fresh sandbox for the task, its shell started in the workdir; the reset observation. */
  static async start(env: ServeEnv, task: Task, params: ResetParams, signal?: AbortSignal): Promise<{ episode: Tb2Episode; payload: StepPayload }> {
    const { trialDir, episodeId } = newTrialDir(env, task);
    const sandbox = await createTaskSandbox(env, task, trialDir, signal);
    try {
      const limits = { ...DEFAULT_LIMITS, ...env.settings.agentLimits };
      const shell = await openShell(sandbox, { timeoutSec: limits.commandTimeoutSec, maxOutputBytes: limits.maxOutputBytes ?? maxOutputBytesOf("eval"), mergeStderr: true });
      const episode = new Tb2Episode(env, task, trialDir, sandbox, shell, params.episode_id ?? episodeId);
      // tbench2_env's reset observation: reward 0.0, not done, no session yet
      return { episode, payload: { observation: episode.observation("reset", { output: "", session_id: null }), reward: 0, done: false } };
    } catch (e) {
      await sandbox.remove().catch(() => {});
      throw e;
    }
  }

  get done(): boolean {
    return this.sandbox === null;
  }

  getState(): Tb2State {
    return { ...this.state };
  }

  async step(data: Record<string, unknown>, signal?: AbortSignal): Promise<StepPayload> {
    const action = parseOr(Tb2Action, data, "action");
    const sandbox = this.sandbox;
    if (!sandbox) throw new ProtocolError("EXECUTION_ERROR", "the episode is over (evaluate or close ended it); send reset for a new one");
    this.state.step_count++;
    this.state.last_action_type = action.action_type;
    this.state.last_command = action.command;
    const sessionId = action.session_id || DEFAULT_SESSION;
    let output = "";
    let success = true;
    let error = "";
    let reward: number | null = null;
    let done = false;
    let info: Record<string, unknown> = {};
    try {
      switch (action.action_type) {
        case "exec": {
          const r = await this.shell.run(action.command, { signal });
          output = r.stdout + r.stderr; // merged in order by the shell; stderr holds only tmax's own notes
          success = r.exitCode === 0 && !r.timedOut;
          if (r.timedOut) error = `command timed out after ${({ ...DEFAULT_LIMITS, ...this.env.settings.agentLimits }).commandTimeoutSec}s`;
          info = { exit_code: r.exitCode, timed_out: r.timedOut, truncated: r.truncated, duration_ms: r.durationMs };
          break;
        }
        case "write_file": {
          if (!action.file_path) throw new Error("file_path is required for action_type='write_file'");
          const target = path.posix.isAbsolute(action.file_path) ? action.file_path : path.posix.join(sandbox.workdir, action.file_path);
          await sandbox.writeFile(target, action.content);
          output = `Wrote to ${action.file_path}`;
          break;
        }
        case "evaluate": {
          const score = await this.finish(signal);
          output = score.output;
          reward = score.reward;
          done = true;
          info = { tests_passed: score.reward >= 1, rewards: score.rewards, ...(score.tamper ? { tamper: score.tamper } : {}) };
          break;
        }
        case "close":
          await this.close();
          output = "Closed TB2 environment.";
          done = true;
          break;
        default:
          throw new Error(`Unsupported action_type in Docker mode: ${action.action_type}`);
      }
    } catch (e) {
      // as tbench2_env: an action that fails is an observation with success false, not a protocol error
      success = false;
      error = (e as Error).message.split("\n")[0]!;
    }
    this.state.last_output = output;
    this.state.session_id = sessionId;
    return { observation: this.observation(action.action_type, { output, success, error, session_id: sessionId, info }), reward, done };
  }

  /**
   * Tamper report and verifier on the live sandbox, then the sandbox goes (the agent must not see the tests).
   * The reward is answered while the removal runs; the session's slot is held until it is done (close() waits).
   */
  private async finish(signal?: AbortSignal) {
    const sandbox = this.sandbox!;
    try {
      return await scoreSandbox(this.env, this.task, sandbox, this.trialDir, signal);
    } finally {
      void this.close();
    }
  }

  /** Removes the sandbox; idempotent, every caller waits for the same removal. */
  close(): Promise<void> {
    if (!this.removal) {
      const sandbox = this.sandbox;
      this.sandbox = null;
      this.state.terminal_ready = false;
      this.removal = sandbox ? sandbox.remove().catch(() => undefined) : Promise.resolve();
    }
    return this.removal;
  }

  private observation(actionType: string, o: Partial<Tb2Observation>): Tb2Observation {
    return {
      instruction: this.task.instruction,
      output: "",
      success: true,
      error: "",
      task_id: this.task.name,
      task_path: this.task.dir,
      session_id: null,
      action_type: actionType,
      info: {},
      ...o,
    };
  }
}
