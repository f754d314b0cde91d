// The episode, for every protocol: ask the model, run its bash calls in the sandbox, show it the observations,
// repeat until it submits or a limit ends the episode; then the trajectory. What this file owns: the turns,
// the step and format-error limits, the harness rules of each profile (how a reply becomes calls, what counts
// as a step, how calls are recorded), running a call and its submit rule, every ending (one EpisodeEnd with
// a status, thrown anywhere and caught once; the loop keeps no flags) and the trajectory's assembly. What a
// protocol owns (chatProtocol.ts: chat completions; tokenProtocol.ts: token-in/token-out for training): one
// model turn from the context, the token budget, how observations extend the context, what it records.
import { ModelError, type ChatMessage, type ModelTurn, type Profile, type ToolCall } from "../model/types.js";
import { SandboxError, type Sandbox } from "../sandbox/types.js";
import { evalAction, withoutToolCalls } from "./evalAction.js";
import { commandOutput, formatObservation, maxOutputBytesOf, SUBMIT_MARKER } from "./observation.js";
import { DEFAULT_PROMPTS, type PromptSet } from "./prompts.js";
import type { ExitStatus, Trajectory, TrajectoryStep } from "./schema.js";
import { openShell } from "./shell.js";
import { redactSecrets } from "../util/redact.js";
import { TMAX_VERSION } from "../util/version.js";

export interface AgentLimits {
  maxSteps: number; // model turns per episode (training's env: tool calls)
  maxTotalTokens: number; // prompt + completion of the whole context
  commandTimeoutSec: number;
  maxFormatErrors: number; // consecutive, eval profile only
  /** Raw output kept per stream before formatting (default: the profile's, see maxOutputBytesOf). */
  maxOutputBytes?: number;
}

export const DEFAULT_LIMITS: AgentLimits = {
  maxSteps: 64,
  maxTotalTokens: 65_536,
  commandTimeoutSec: 120,
  maxFormatErrors: 64,
};

export type AgentEvent =
  | { type: "turn"; step: number; turn: ModelTurn }
  | { type: "command"; step: number; command: string }
  | { type: "exec"; step: number; command: string; exitCode: number; timedOut: boolean; durationMs: number; observation: string }
  | { type: "format_error"; step: number; error: string }
  | { type: "end"; status: ExitStatus; error?: string };

/** What every episode is given, whatever its protocol. */
export interface EpisodeBase {
  taskName: string;
  instruction: string;
  sandbox: Sandbox;
  limits?: Partial<AgentLimits>;
  /** Prompt texts, observation cut and tool description (default: ours). */
  prompts?: PromptSet;
  /** Aborting ends the episode: status "timeout" when the reason is a TimeoutError, else "error". */
  signal?: AbortSignal;
  onEvent?: (event: AgentEvent) => void;
}

/** How an episode ends; thrown by the loop or a protocol, caught once in runEpisodeWith. */
export class EpisodeEnd extends Error {
  constructor(readonly status: ExitStatus, message: string = status) {
    super(message);
  }
}

/** The state a protocol reads and extends: the messages and the usage are the loop's, shared. */
export interface EpisodeContext {
  readonly messages: ChatMessage[];
  readonly usage: { promptTokens: number; completionTokens: number; contextTokens: number };
  readonly limits: AgentLimits;
  readonly prompts: PromptSet;
  readonly sandbox: Sandbox;
  readonly signal?: AbortSignal;
}

/** The seam between the episode and the way it talks to the model. */
export interface Protocol {
  readonly profile: Profile;
  readonly rules: HarnessRules;
  /** Before the first turn (e.g. the prompt's token ids); resolves to the shell's start dir (default the workdir). */
  start(ctx: EpisodeContext): Promise<string | undefined>;
  /** The next turn's max_tokens (undefined: the server's own); throws EpisodeEnd("token_limit") when there is no room. */
  budget(): number | undefined;
  /** One model turn on the context so far, and what the step records of it. */
  next(index: number, maxTokens: number | undefined): Promise<{ turn: ModelTurn; record: TrajectoryStep["model"] }>;
  /** A reply without a call was cut by the episode's token budget: it ran out of tokens, not of format. */
  outOfTokens(turn: ModelTurn): boolean;
  /** A turn's calls ran and none submitted: their observations (in order) extend the context. */
  observed(observations: string[]): Promise<void>;
  /** A call submitted: the observations of the calls before it in its turn. */
  submitted(observations: string[]): Promise<void>;
  /** The trajectory's model section, and the limits it records where they differ from the episode's. */
  describe(): { model: Trajectory["model"]; limits?: Partial<Trajectory["limits"]> };
  /** After the ending, before the trajectory is assembled. */
  ended(status: ExitStatus, error: string | undefined): void;
}

/** One bash call of a turn; `missing`: it has no command (training's env answers it with its format-error text). */
interface Call {
  id: string;
  command: string;
  source: ToolCall["source"];
  missing?: boolean;
}

/** A turn read by the harness rules: the calls to run, or the problem the model is told (or that ends it). */
type Reading = { calls: Call[] } | { calls?: undefined; problem: string; callId?: string };

/** The rules a profile's harness plays by, as data. */
export interface HarnessRules {
  /** What counts against maxSteps: model turns (tmax) or tool calls (open-instruct's --max_steps). */
  steps: "turns" | "calls";
  /** A reply without a runnable call: the model is told and goes on (eval), or the episode ends (train). */
  formatErrors: "feedback" | "end";
  /** A turn's calls are recorded all at once (tmax) or as they run, the submitting one last (training's env). */
  record: "upfront" | "as run";
  read(turn: ModelTurn): Reading;
}

/** eval (the released eval agent): one call a turn, format errors fed back until maxFormatErrors in a row. */
export const EVAL_RULES: HarnessRules = {
  steps: "turns",
  formatErrors: "feedback",
  record: "upfront",
  read(turn) {
    const action = evalAction(turn);
    if (action.kind === "format_error") return { problem: action.problem, ...(action.callId !== undefined ? { callId: action.callId } : {}) };
    return { calls: [{ id: action.id, command: action.command, source: action.source }] };
  },
};

/** train over chat completions: every bash call of the turn runs; a turn without one ends the episode. */
export const TRAIN_RULES: HarnessRules = {
  steps: "turns",
  formatErrors: "end",
  record: "upfront",
  read(turn) {
    const calls: Call[] = [];
    let problem = "";
    for (const call of turn.toolCalls) {
      const command = call.arguments.command;
      if (call.name !== "bash") problem ||= `there is no tool named \`${call.name}\`; the only tool is \`bash\`.`;
      else if (typeof command !== "string" || command.trim() === "") problem ||= "the `bash` call has no `command` argument.";
      else calls.push({ id: call.id, command, source: call.source });
    }
    if (calls.length > 0) return { calls };
    if (!problem && turn.parseErrors.length > 0) problem = `the tool call could not be parsed (${turn.parseErrors[0]}).`;
    if (!problem && turn.finishReason === "length") problem = "the response was cut off by the length limit before a complete tool call.";
    return { problem: problem || "your last response did not include a `bash` tool call." };
  },
};

/**
 * train token-in/token-out, as open-instruct's env: steps are tool calls, a call without a command is answered
 * with the format-error text and the turn goes on, a turn without a bash call ends the episode (the protocol
 * keeps only the calls to bash).
 */
export const TRAIN_ENV_RULES: HarnessRules = {
  steps: "calls",
  formatErrors: "end",
  record: "as run",
  read(turn) {
    if (turn.toolCalls.length > 0) {
      return {
        calls: turn.toolCalls.map((c) => {
          const command = c.arguments.command;
          return { id: c.id, command: String(command ?? ""), source: c.source, missing: typeof command !== "string" || command === "" };
        }),
      };
    }
    if (turn.parseErrors[0]) return { problem: `the tool call could not be parsed (${turn.parseErrors[0]})` };
    return { problem: turn.finishReason === "length" ? "the response was cut off by the length limit before a complete tool call" : "no `bash` tool call" };
  },
};

export async function runEpisodeWith(protocol: Protocol, input: EpisodeBase): Promise<Trajectory> {
  const { sandbox, signal } = input;
  const { profile, rules } = protocol;
  const limits = { ...DEFAULT_LIMITS, ...input.limits };
  const emit = input.onEvent ?? (() => {});
  const prompts = input.prompts ?? DEFAULT_PROMPTS;
  const startedAt = new Date();
  const messages: ChatMessage[] = [
    { role: "system", content: prompts.system },
    { role: "user", content: prompts.instance(input.instruction) },
  ];
  const steps: TrajectoryStep[] = [];
  const usage: { promptTokens: number; completionTokens: number; contextTokens: number; cachedTokens?: number } = { promptTokens: 0, completionTokens: 0, contextTokens: 0 };
  let status: ExitStatus;
  let error: string | undefined;
  let errorKind: string | undefined;

  try {
    const startDir = await protocol.start({ messages, usage, limits, prompts, sandbox, ...(signal ? { signal } : {}) });
    const shell = await openShell(sandbox, {
      timeoutSec: limits.commandTimeoutSec,
      maxOutputBytes: limits.maxOutputBytes ?? maxOutputBytesOf(profile),
      mergeStderr: mergesStderr(profile, sandbox.backend),
      startDir,
    });
    const observationOptions = { profile, timeoutSec: limits.commandTimeoutSec, config: prompts.observation };
    /** Runs one command, appends its observation to the messages, and says whether the episode was submitted. */
    const execute = async (step: TrajectoryStep, index: number, call: Call): Promise<{ observation: string; submitted: boolean }> => {
      emit({ type: "command", step: index, command: call.command });
      const result = await shell.run(call.command, { signal });
      // known secret values never reach the model or the trajectory, even if a command prints one
      const observation = redactSecrets(formatObservation(result, observationOptions));
      messages.push({ role: "tool", tool_call_id: call.id, content: observation });
      (step.executions ??= []).push({
        command: call.command,
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        outputTruncated: result.truncated,
        durationMs: result.durationMs,
        observation,
      });
      emit({ type: "exec", step: index, command: call.command, exitCode: result.exitCode, timedOut: result.timedOut, durationMs: result.durationMs, observation });
      // eval: the marker in the command or in the observation text; train: in stdout + "\n" + stderr (timeout notice included)
      if (profile === "eval") return { observation, submitted: call.command.includes(SUBMIT_MARKER) || observation.includes(SUBMIT_MARKER) };
      return { observation, submitted: commandOutput(result, observationOptions).includes(SUBMIT_MARKER) };
    };

    let formatErrors = 0;
    let toolCalls = 0;
    for (let index = 0; ; index++) {
      if ((rules.steps === "calls" ? toolCalls : index) >= limits.maxSteps) throw new EpisodeEnd("step_limit");
      const maxTokens = protocol.budget();
      const stepStartedAt = new Date().toISOString();
      const { turn, record } = await protocol.next(index, maxTokens);
      usage.promptTokens += turn.usage.promptTokens;
      usage.completionTokens += turn.usage.completionTokens;
      if (turn.usage.cachedTokens !== undefined) usage.cachedTokens = (usage.cachedTokens ?? 0) + turn.usage.cachedTokens;
      usage.contextTokens = turn.usage.promptTokens + turn.usage.completionTokens;
      const step: TrajectoryStep = { index, startedAt: stepStartedAt, model: record };
      steps.push(step);
      emit({ type: "turn", step: index, turn });

      const reading = rules.read(turn);
      if (!reading.calls && rules.formatErrors === "feedback") {
        step.formatError = reading.problem;
        emit({ type: "format_error", step: index, error: reading.problem });
        formatErrors += 1;
        // as the reference: the reply goes back without its tool calls, then the error, as a tool
        // message when the (non-bash) call had an id, else as a user message
        messages.push(withoutToolCalls(turn.message));
        const content = prompts.formatError(prompts.formatErrorText ?? reading.problem);
        messages.push(reading.callId ? { role: "tool", tool_call_id: reading.callId, content } : { role: "user", content });
        if (formatErrors >= limits.maxFormatErrors) throw new EpisodeEnd("format_errors", `${formatErrors} format errors in a row`);
        continue;
      }
      formatErrors = 0;
      messages.push(turn.message);
      if (!reading.calls) {
        if (protocol.outOfTokens(turn)) throw new EpisodeEnd("token_limit");
        step.formatError = reading.problem;
        emit({ type: "format_error", step: index, error: reading.problem });
        throw new EpisodeEnd("format_errors", reading.problem);
      }

      // counting calls as steps, the turn's calls beyond the step cap do not run
      const calls = rules.steps === "calls" ? reading.calls.slice(0, limits.maxSteps - toolCalls) : reading.calls;
      toolCalls += calls.length;
      if (rules.record === "upfront") {
        step.toolCall = callRecord(calls[0]!);
        if (calls.length > 1) step.extraCalls = calls.slice(1).map(callRecord);
      } else step.executions = [];
      const observations: string[] = [];
      for (const [i, call] of calls.entries()) {
        if (rules.record === "as run") {
          if (i === 0) step.toolCall = callRecord(call);
          else (step.extraCalls ??= []).push(callRecord(call));
        }
        if (call.missing) {
          const observation = prompts.formatError("'command' parameter is required.");
          observations.push(observation);
          messages.push({ role: "tool", tool_call_id: call.id, content: observation });
          emit({ type: "format_error", step: index, error: "the `bash` call has no `command` argument." });
          continue;
        }
        const { observation, submitted } = await execute(step, index, call);
        if (submitted) {
          await protocol.submitted(observations);
          throw new EpisodeEnd("submitted");
        }
        observations.push(observation);
      }
      await protocol.observed(observations);
    }
  } catch (e) {
    ({ status, error, errorKind } = endingOf(e, signal));
  }
  emit({ type: "end", status, error });
  protocol.ended(status, error);

  const finishedAt = new Date();
  const described = protocol.describe();
  return {
    schema: "tmax.trajectory/v1",
    task: { name: input.taskName, instruction: input.instruction },
    agent: {
      name: "tmax",
      version: TMAX_VERSION,
      profile,
      ...(prompts.source ? { prompts: prompts.source } : {}),
      toolDescription: prompts.toolDescription,
    },
    model: described.model,
    sandbox: { backend: sandbox.backend, image: sandbox.image, id: sandbox.id },
    limits: {
      maxSteps: limits.maxSteps,
      maxTotalTokens: limits.maxTotalTokens,
      commandTimeoutSec: limits.commandTimeoutSec,
      maxFormatErrors: limits.maxFormatErrors,
      ...described.limits,
    },
    messages: messages as unknown as Record<string, unknown>[],
    steps,
    exitStatus: status,
    ...(error ? { error } : {}),
    ...(errorKind ? { errorKind } : {}),
    usage,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - startedAt.getTime(),
  };
}

/**
 * Whether the command's stderr goes into its stdout, in write order. eval follows Harbor's environment of
 * the backend: docker (`docker compose exec`, stderr=STDOUT) hands the agent one merged stream; Daytona's
 * session logs keep stdout and stderr apart, and the agent joins them (stdout, "\n", stderr). train never
 * merges: open-instruct's DockerBackend demuxes the two streams.
 */
export function mergesStderr(profile: Profile, backend: Sandbox["backend"]): boolean {
  return profile === "eval" && backend !== "daytona";
}

function callRecord(call: Call): NonNullable<TrajectoryStep["toolCall"]> {
  return { id: call.id, command: call.command, source: call.source };
}

function endingOf(e: unknown, signal?: AbortSignal): { status: ExitStatus; error?: string; errorKind?: string } {
  if (e instanceof EpisodeEnd) return { status: e.status, ...(e.message !== e.status ? { error: e.message } : {}) };
  if (signal?.aborted) {
    const reason = signal.reason as { name?: string } | undefined;
    if (reason?.name === "TimeoutError") return { status: "timeout", error: "agent timeout reached" };
    return { status: "error", error: "aborted" };
  }
  if (e instanceof ModelError && e.kind === "context_length") return { status: "token_limit", error: e.message };
  const message = e instanceof Error ? e.message : String(e);
  const errorKind = e instanceof ModelError ? `model:${e.kind}` : e instanceof SandboxError ? `sandbox:${e.kind}` : "other";
  return { status: "error", error: message.split("\n")[0], errorKind };
}
