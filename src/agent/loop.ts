// The tmax agent loop: ask the model, run its bash call in the sandbox, show it the observation, repeat
// until it submits or a limit ends the episode. Every way an episode ends is one EpisodeEnd with a status.
import type { ChatMessage, ModelClient, ModelTurn, Profile, ToolCall } from "../model/types.js";
import { ModelError } from "../model/types.js";
import { SandboxError, type Sandbox } from "../sandbox/types.js";
import { evalAction, withoutToolCalls } from "./evalAction.js";
import { commandOutput, formatObservation, maxOutputBytesOf, SUBMIT_MARKER } from "./observation.js";
import { DEFAULT_PROMPTS, type PromptSet } from "./prompts.js";
import { redactSecrets } from "../util/redact.js";
import type { ExitStatus, Trajectory, TrajectoryStep } from "./schema.js";
import { openShell } from "./shell.js";
import { redactUrl } from "../util/redact.js";
import { TMAX_VERSION } from "../util/version.js";

export interface AgentLimits {
  maxSteps: number; // model turns per episode
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

export interface EpisodeInput {
  taskName: string;
  instruction: string;
  model: ModelClient;
  sandbox: Sandbox;
  profile: Profile;
  limits?: Partial<AgentLimits>;
  /** Prompt texts, observation cut and tool description (default: ours). */
  prompts?: PromptSet;
  /** Aborting ends the episode: status "timeout" when the reason is a TimeoutError, else "error". */
  signal?: AbortSignal;
  onEvent?: (event: AgentEvent) => void;
}

class EpisodeEnd extends Error {
  constructor(readonly status: ExitStatus, message: string = status) {
    super(message);
  }
}

interface BashCall {
  id: string;
  command: string;
  source: ToolCall["source"];
}

export async function runEpisode(input: EpisodeInput): Promise<Trajectory> {
  const { model, sandbox, profile, signal } = input;
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
    const shell = await openShell(sandbox, {
      timeoutSec: limits.commandTimeoutSec,
      maxOutputBytes: limits.maxOutputBytes ?? maxOutputBytesOf(profile),
      mergeStderr: mergesStderr(profile, sandbox.backend),
    });
    const observationOptions = { profile, timeoutSec: limits.commandTimeoutSec, config: prompts.observation };
    /** Runs one command, appends its observation, and says whether the episode was submitted. */
    const execute = async (step: TrajectoryStep, index: number, call: BashCall): Promise<boolean> => {
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
      // eval: the marker in the command or in the observation text; train: in the command's output
      if (profile === "eval") return call.command.includes(SUBMIT_MARKER) || observation.includes(SUBMIT_MARKER);
      return commandOutput(result, observationOptions).includes(SUBMIT_MARKER);
    };

    let formatErrors = 0;
    for (let index = 0; ; index++) {
      if (index >= limits.maxSteps) throw new EpisodeEnd("step_limit");
      // eval keeps no token budget of its own: the same max_tokens every turn, and the server's
      // context-length error ends the episode (as the released eval runs did). train shrinks max_tokens.
      let maxTokens: number | undefined;
      if (profile === "train") {
        maxTokens = limits.maxTotalTokens - usage.contextTokens;
        if (maxTokens <= 0) throw new EpisodeEnd("token_limit");
      }

      const stepStartedAt = new Date().toISOString();
      const turn = await query(model, messages, {
        signal,
        maxTokens,
        toolDescription: prompts.toolDescription,
        ...(prompts.commandDescription !== undefined ? { commandDescription: prompts.commandDescription } : {}),
      });
      usage.promptTokens += turn.usage.promptTokens;
      usage.completionTokens += turn.usage.completionTokens;
      if (turn.usage.cachedTokens !== undefined) usage.cachedTokens = (usage.cachedTokens ?? 0) + turn.usage.cachedTokens;
      usage.contextTokens = turn.usage.promptTokens + turn.usage.completionTokens;
      const step: TrajectoryStep = { index, startedAt: stepStartedAt, model: turnRecord(turn) };
      steps.push(step);
      emit({ type: "turn", step: index, turn });

      if (profile === "eval") {
        const action = evalAction(turn);
        if (action.kind === "format_error") {
          step.formatError = action.problem;
          emit({ type: "format_error", step: index, error: action.problem });
          formatErrors += 1;
          // as the reference: the reply goes back without its tool calls, then the error, as a tool
          // message when the (non-bash) call had an id, else as a user message
          messages.push(withoutToolCalls(turn.message));
          const content = prompts.formatError(prompts.formatErrorText ?? action.problem);
          messages.push(action.callId ? { role: "tool", tool_call_id: action.callId, content } : { role: "user", content });
          if (formatErrors >= limits.maxFormatErrors) throw new EpisodeEnd("format_errors", `${formatErrors} format errors in a row`);
          continue;
        }
        formatErrors = 0;
        messages.push(turn.message);
        const call: BashCall = { id: action.id, command: action.command, source: action.source };
        step.toolCall = call;
        if (await execute(step, index, call)) throw new EpisodeEnd("submitted");
        continue;
      }

      // train: every bash call of the turn runs; a turn without one ends the episode
      messages.push(turn.message);
      const { calls, problem } = bashCalls(turn);
      if (calls.length === 0) {
        // a reply cut short by the episode's token budget ran out of tokens, not of format
        if (turn.finishReason === "length" && usage.contextTokens >= limits.maxTotalTokens) throw new EpisodeEnd("token_limit");
        step.formatError = problem;
        emit({ type: "format_error", step: index, error: problem });
        throw new EpisodeEnd("format_errors", problem);
      }
      step.toolCall = calls[0];
      if (calls.length > 1) step.extraCalls = calls.slice(1);
      for (const call of calls) {
        if (await execute(step, index, call)) throw new EpisodeEnd("submitted");
      }
      if (usage.contextTokens >= limits.maxTotalTokens) throw new EpisodeEnd("token_limit");
    }
  } catch (e) {
    ({ status, error, errorKind } = endingOf(e, signal));
  }
  emit({ type: "end", status, error });

  const finishedAt = new Date();
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
    model: {
      name: model.config.model,
      baseUrl: redactUrl(model.config.baseUrl),
      temperature: model.config.temperature,
      topP: model.config.topP,
      maxTokens: model.config.maxTokens,
    },
    sandbox: { backend: sandbox.backend, image: sandbox.image, id: sandbox.id },
    limits: {
      maxSteps: limits.maxSteps,
      maxTotalTokens: limits.maxTotalTokens,
      commandTimeoutSec: limits.commandTimeoutSec,
      maxFormatErrors: limits.maxFormatErrors,
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

async function query(
  model: ModelClient,
  messages: ChatMessage[],
  opts: { signal?: AbortSignal; maxTokens?: number; toolDescription: string; commandDescription?: string },
): Promise<ModelTurn> {
  try {
    return await model.complete(messages, opts);
  } catch (e) {
    if (e instanceof ModelError && e.kind === "context_length") throw new EpisodeEnd("token_limit", e.message);
    throw e;
  }
}

/** The bash calls of a turn, or why there is none: the error text the model is shown. */
/** train: the bash calls of a turn, or why there is none. */
function bashCalls(turn: ModelTurn): { calls: BashCall[]; problem: string; problemCallId?: string } {
  const calls: BashCall[] = [];
  let problem = "";
  let problemCallId: string | undefined;
  for (const call of turn.toolCalls) {
    const command = call.arguments.command;
    if (call.name !== "bash") {
      problem ||= `there is no tool named \`${call.name}\`; the only tool is \`bash\`.`;
      problemCallId ??= call.source === "tool_calls" ? call.id : undefined;
    } else if (typeof command !== "string" || command.trim() === "") {
      problem ||= "the `bash` call has no `command` argument.";
      problemCallId ??= call.source === "tool_calls" ? call.id : undefined;
    } else {
      calls.push({ id: call.id, command, source: call.source });
    }
  }
  if (!problem && turn.parseErrors.length > 0) problem = `the tool call could not be parsed (${turn.parseErrors[0]}).`;
  if (!problem && turn.finishReason === "length") problem = "the response was cut off by the length limit before a complete tool call.";
  if (!problem) problem = "your last response did not include a `bash` tool call.";
  return { calls, problem, problemCallId };
}

function turnRecord(turn: ModelTurn): TrajectoryStep["model"] {
  return {
    content: turn.message.content,
    ...(turn.reasoning !== undefined ? { reasoning: turn.reasoning } : {}),
    finishReason: turn.finishReason,
    usage: turn.usage,
    latencyMs: turn.latencyMs,
    retries: turn.retries,
    ...(turn.logprobs ? { logprobs: turn.logprobs } : {}),
    ...(turn.promptTokenIds ? { promptTokenIds: turn.promptTokenIds } : {}),
    ...(turn.completionTokenIds ? { completionTokenIds: turn.completionTokenIds } : {}),
  };
}

function endingOf(e: unknown, signal?: AbortSignal): { status: ExitStatus; error?: string; errorKind?: string } {
  if (e instanceof EpisodeEnd) return { status: e.status, ...(e.message !== e.status ? { error: e.message } : {}) };
  if (signal?.aborted) {
    const reason = signal.reason as { name?: string } | undefined;
    if (reason?.name === "TimeoutError") return { status: "timeout", error: "agent timeout reached" };
    return { status: "error", error: "aborted" };
  }
  const message = e instanceof Error ? e.message : String(e);
  const errorKind = e instanceof ModelError ? `model:${e.kind}` : e instanceof SandboxError ? `sandbox:${e.kind}` : "other";
  return { status: "error", error: message.split("\n")[0], errorKind };
}
