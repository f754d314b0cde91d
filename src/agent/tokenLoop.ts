// The train profile's turn loop, token-in/token-out as open-instruct sampled Tmax: the context is one list
// of token ids. It starts as the chat template's rendering of system + user + tool schema (vLLM /tokenize);
// each turn appends the ids the engine sampled, verbatim, then one observation wrapper per executed call
//   <|im_start|>user\n<tool_response>\n{obs}\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>\n
// tokenized on its own. Nothing is ever re-rendered, so the stream is exactly what the model conditioned on,
// and it is what a rollout record holds. Endings and observations are shared with loop.ts. A submitting call
// is answered, as in open-instruct's env, by the test report: the trial appends it after the verifier ran
// (appendTestReport), and only then is the record complete.
import type { ChatMessage, ModelTurn } from "../model/types.js";
import { ModelError } from "../model/types.js";
import { bashTool } from "../model/client.js";
import { parseQwenXmlToolCalls } from "../model/qwenXml.js";
import type { TokenClient } from "../model/tokens.js";
import { SandboxError, type Sandbox } from "../sandbox/types.js";
import { DEFAULT_LIMITS, type AgentEvent, type AgentLimits } from "./loop.js";
import { commandOutput, DEFAULT_OBSERVATION, formatObservation, SUBMIT_MARKER, timeoutNotice, TRAIN_MAX_OUTPUT_BYTES, truncateOutput, type ObservationConfig } from "./observation.js";
import { DEFAULT_PROMPTS, type PromptSet } from "./prompts.js";
import type { ExitStatus, Trajectory, TrajectoryStep } from "./schema.js";
import { openShell } from "./shell.js";
import { redactUrl } from "../util/redact.js";
import { TMAX_VERSION } from "../util/version.js";

/** Training's length limits (open-instruct: --per_turn_max_tokens 16384, --response_length 65536). */
export const TRAIN_TOKEN_LIMITS = { perTurnMaxTokens: 16_384, maxResponseTokens: 65_536 } as const;

/** The text appended after the model's `<|im_end|>` for one observation (open-instruct's vllm_qwen3_xml wrapper). */
export function observationWrapper(observation: string): string {
  return `<|im_start|>user\n<tool_response>\n${observation}\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>\n`;
}

/** The context as token ids: the prompt, then the response (sampled spans, mask 1, and wrapper spans, mask 0). */
export interface TokenStream {
  promptIds: number[];
  responseIds: number[];
  logprobs: number[]; // μ for sampled ids, 0 for wrapper ids
  mask: number[]; // 1 sampled, 0 wrapper
  spans: { kind: "sampled" | "wrapper"; start: number; length: number }[];
  /** Set when the stream cannot stand as a training record (the record is rejected, never patched). */
  problem?: string;
  /** The server's max_model_len the episode ran under (the cut of anything appended later). */
  maxModelLen?: number;
  /**
   * The episode submitted: open-instruct's env answers the submitting call with the test report, so the
   * record is complete only once appendTestReport added it (after the verifier ran).
   */
  awaitingReport?: boolean;
}

export interface TokenEpisodeInput {
  taskName: string;
  instruction: string;
  tokens: TokenClient;
  sandbox: Sandbox;
  limits?: Partial<AgentLimits>;
  /** Prompt texts (`--prompts`); default ours. */
  prompts?: PromptSet;
  /** vLLM seed of this sample (open-instruct: run seed + sample index in its group). */
  seed?: number;
  /** The shell starts here; "/app" is linked to the workdir first when it does not exist (training's env). */
  startDir?: string;
  signal?: AbortSignal;
  onEvent?: (event: AgentEvent) => void;
}

export interface TokenEpisode {
  trajectory: Trajectory;
  stream: TokenStream;
}

class EpisodeEnd extends Error {
  constructor(readonly status: ExitStatus, message: string = status) {
    super(message);
  }
}

export async function runTokenEpisode(input: TokenEpisodeInput): Promise<TokenEpisode> {
  const { tokens, sandbox, signal } = input;
  const limits = { ...DEFAULT_LIMITS, ...input.limits };
  const emit = input.onEvent ?? (() => {});
  const startedAt = new Date();
  const prompts = input.prompts ?? DEFAULT_PROMPTS;
  const tool = bashTool(prompts.toolDescription, prompts.commandDescription);
  const messages: ChatMessage[] = [
    { role: "system", content: prompts.system },
    { role: "user", content: prompts.instance(input.instruction) },
  ];
  const stream: TokenStream = { promptIds: [], responseIds: [], logprobs: [], mask: [], spans: [] };
  /** The engine's ids, verbatim, mask 1 (observations go through appendWrapped, mask 0). */
  const appendSampled = (ids: number[], logprobs: number[]) => {
    if (ids.length === 0) return;
    stream.spans.push({ kind: "sampled", start: stream.responseIds.length, length: ids.length });
    for (let i = 0; i < ids.length; i++) {
      stream.responseIds.push(ids[i]!);
      stream.logprobs.push(logprobs[i]!);
      stream.mask.push(1);
    }
  };
  const steps: TrajectoryStep[] = [];
  const usage = { promptTokens: 0, completionTokens: 0, contextTokens: 0 };
  let status: ExitStatus;
  let error: string | undefined;
  let errorKind: string | undefined;

  try {
    const first = await tokens.tokenizeChat(messages, [tool], { signal });
    stream.promptIds = first.ids;
    const maxModelLen = first.maxModelLen ?? limits.maxTotalTokens;
    stream.maxModelLen = maxModelLen;
    const appendObservations = async (observations: string[]) => {
      for (const observation of observations) {
        const excess = await appendWrapped(stream, tokens, observation, signal);
        usage.contextTokens = contextLength();
        if (excess > 0) throw new EpisodeEnd("token_limit", `observation cut by ${excess} tokens to fit max_model_len ${maxModelLen}`);
      }
    };
    const shell = await openShell(sandbox, { timeoutSec: limits.commandTimeoutSec, maxOutputBytes: limits.maxOutputBytes ?? TRAIN_MAX_OUTPUT_BYTES, startDir: await prepareStartDir(sandbox, input.startDir) });
    const contextLength = () => stream.promptIds.length + stream.responseIds.length;
    let toolCalls = 0; // training counts steps in tool calls (--max_steps 64)

    for (let index = 0; ; index++) {
      if (toolCalls >= limits.maxSteps) throw new EpisodeEnd("step_limit");
      const budget = TRAIN_TOKEN_LIMITS.maxResponseTokens - stream.responseIds.length;
      const room = maxModelLen - contextLength();
      if (budget <= 0 || room <= 0) throw new EpisodeEnd("token_limit");
      const maxTokens = Math.min(TRAIN_TOKEN_LIMITS.perTurnMaxTokens, budget, room);

      const stepStartedAt = new Date().toISOString();
      const sampled = await tokens.sample([...stream.promptIds, ...stream.responseIds], { maxTokens, seed: input.seed, signal });
      if (sampled.logprobs.length !== sampled.tokenIds.length) {
        stream.problem = `turn ${index + 1}: ${sampled.logprobs.length} logprobs for ${sampled.tokenIds.length} sampled ids`;
        throw new EpisodeEnd("error", stream.problem);
      }
      if (sampled.logprobs.some((l) => !Number.isFinite(l))) {
        stream.problem = `turn ${index + 1}: a sampled id has no finite logprob`;
        throw new EpisodeEnd("error", stream.problem);
      }
      usage.promptTokens += contextLength();
      usage.completionTokens += sampled.tokenIds.length;
      appendSampled(sampled.tokenIds, sampled.logprobs);
      usage.contextTokens = contextLength();

      const parsed = parseQwenXmlToolCalls(sampled.text, { wholeText: true });
      const calls = parsed.calls.filter((c) => c.name === tool.function.name);
      const turn: ModelTurn = {
        message: { role: "assistant", content: sampled.text },
        content: sampled.text,
        toolCalls: calls,
        parseErrors: parsed.errors,
        finishReason: sampled.finishReason,
        usage: { promptTokens: contextLength() - sampled.tokenIds.length, completionTokens: sampled.tokenIds.length },
        latencyMs: sampled.latencyMs,
        retries: sampled.retries,
      };
      messages.push(turn.message);
      const step: TrajectoryStep = {
        index,
        startedAt: stepStartedAt,
        model: {
          content: sampled.text,
          finishReason: sampled.finishReason,
          usage: turn.usage,
          latencyMs: sampled.latencyMs,
          retries: sampled.retries,
          completionTokenIds: sampled.tokenIds,
        },
      };
      steps.push(step);
      emit({ type: "turn", step: index, turn });

      // A turn without a bash call ends the episode (training had no format-error feedback).
      if (calls.length === 0) {
        const problem = parsed.errors[0] ? `the tool call could not be parsed (${parsed.errors[0]})` : sampled.finishReason === "length" ? "the response was cut off by the length limit before a complete tool call" : "no `bash` tool call";
        step.formatError = problem;
        emit({ type: "format_error", step: index, error: problem });
        throw new EpisodeEnd("format_errors", problem);
      }

      // Every call of the turn runs, up to the step cap; each observation gets its own wrapper.
      step.executions = [];
      const observations: string[] = [];
      for (const [i, call] of calls.entries()) {
        if (toolCalls >= limits.maxSteps) break;
        toolCalls++;
        if (i === 0) step.toolCall = { id: call.id, command: String(call.arguments.command ?? ""), source: call.source };
        else (step.extraCalls ??= []).push({ id: call.id, command: String(call.arguments.command ?? ""), source: call.source });
        const command = call.arguments.command;
        if (typeof command !== "string" || command === "") {
          // the training env answers a bash call without a command with its format-error text and goes on
          const observation = prompts.formatError("'command' parameter is required.");
          observations.push(observation);
          messages.push({ role: "tool", tool_call_id: call.id, content: observation });
          emit({ type: "format_error", step: index, error: "the `bash` call has no `command` argument." });
          continue;
        }
        emit({ type: "command", step: index, command });
        const result = await shell.run(command, { signal });
        const observationOptions = { profile: "train" as const, timeoutSec: limits.commandTimeoutSec };
        const observation = formatObservation(result, { ...observationOptions, config: prompts.observation });
        step.executions.push({ command, exitCode: result.exitCode, timedOut: result.timedOut, outputTruncated: result.truncated, durationMs: result.durationMs, observation });
        emit({ type: "exec", step: index, command, exitCode: result.exitCode, timedOut: result.timedOut, durationMs: result.durationMs, observation });
        messages.push({ role: "tool", tool_call_id: call.id, content: observation });
        // the training env looks for the marker in stdout + "\n" + stderr (timeout notice included)
        if (commandOutput(result, observationOptions).includes(SUBMIT_MARKER)) {
          // the calls before it in this turn keep their observations; the submitting call's is the test report
          await appendObservations(observations);
          stream.awaitingReport = true;
          throw new EpisodeEnd("submitted");
        }
        observations.push(observation);
      }

      await appendObservations(observations);
    }
  } catch (e) {
    ({ status, error, errorKind } = endingOf(e, signal));
  }
  emit({ type: "end", status, error });
  if (status === "error" && !stream.problem) stream.problem = `episode error: ${error ?? "unknown"}`;
  if (!stream.problem && stream.promptIds.length === 0) stream.problem = "no prompt ids";

  const finishedAt = new Date();
  const trajectory: Trajectory = {
    schema: "tmax.trajectory/v1",
    task: { name: input.taskName, instruction: input.instruction },
    agent: { name: "tmax", version: TMAX_VERSION, profile: "train", ...(prompts.source ? { prompts: prompts.source } : {}), toolDescription: prompts.toolDescription },
    model: {
      name: tokens.config.model,
      baseUrl: redactUrl(tokens.config.baseUrl),
      temperature: tokens.config.temperature ?? 1.0,
      topP: tokens.config.topP ?? 1.0,
      maxTokens: TRAIN_TOKEN_LIMITS.perTurnMaxTokens,
    },
    sandbox: { backend: sandbox.backend, image: sandbox.image, id: sandbox.id },
    limits: { maxSteps: limits.maxSteps, maxTotalTokens: TRAIN_TOKEN_LIMITS.maxResponseTokens, commandTimeoutSec: limits.commandTimeoutSec, maxFormatErrors: 0 },
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
  return { trajectory, stream };
}

/**
 * Appends one wrapped observation (mask 0) with open-instruct's cut (vllm_utils.truncate_tool_output_tokens):
 * first what overflows max_model_len, then what overflows the response budget. Returns the overflow.
 */
async function appendWrapped(stream: TokenStream, tokens: TokenClient, observation: string, signal?: AbortSignal): Promise<number> {
  const ids = await tokens.tokenizeText(observationWrapper(observation), { signal });
  const maxModelLen = stream.maxModelLen ?? Infinity;
  const excess = Math.max(0, stream.promptIds.length + stream.responseIds.length + ids.length - maxModelLen);
  const kept = ids.slice(0, Math.max(0, ids.length - excess)).slice(0, Math.max(0, TRAIN_TOKEN_LIMITS.maxResponseTokens - stream.responseIds.length));
  if (kept.length > 0) {
    stream.spans.push({ kind: "wrapper", start: stream.responseIds.length, length: kept.length });
    for (const id of kept) {
      stream.responseIds.push(id);
      stream.logprobs.push(0);
      stream.mask.push(0);
    }
  }
  return excess;
}

/** The verifier's run of test.sh, as open-instruct's backend returns it (streams apart). */
export interface TestRun {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * The observation open-instruct's env returns for the submitting call (SWERLVanilluxSandboxEnv._run_tests):
 * each stream cut like any observation (not stripped), the backend's timeout notice in front of stderr on
 * exit 124, the reward as Python prints a float.
 */
export function testReport(run: TestRun, reward: number, timeoutSec: number, config: ObservationConfig = DEFAULT_OBSERVATION): string {
  const stderr = run.exitCode === 124 ? `${timeoutNotice(timeoutSec)}\n${run.stderr}` : run.stderr;
  const stdout = run.stdout ? truncateOutput(run.stdout, config) : "";
  const err = stderr ? truncateOutput(stderr, config) : "";
  return `Test execution complete.\nExit code: ${run.exitCode}\n[STDOUT]\n${stdout}\n[STDERR]\n${err}\nReward: ${pyFloatRepr(reward)}`;
}

/** Closes a submitted episode's record with the test report (wrapped, mask 0), as open-instruct's record ends. */
export async function appendTestReport(stream: TokenStream, tokens: TokenClient, report: string, signal?: AbortSignal): Promise<void> {
  if (!stream.awaitingReport) return;
  stream.awaitingReport = false;
  await appendWrapped(stream, tokens, report, signal);
}

/** Python's repr() of a float (e.g. 1.0, 0.5, 1e-05). */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  // shortest round-trip digits, as repr uses; fixed notation for exponents -4..15, else d.ddde±XX
  const [mantissa, expText] = x.toExponential().split("e");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const sign = exp < 0 ? "-" : "+";
    return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const fixed = x.toFixed(Math.max(0, (mantissa!.split(".")[1]?.length ?? 0) - exp));
  return fixed.includes(".") ? fixed : `${fixed}.0`;
}

/**
 * Where the shell starts. Training's env starts every episode in /app and, when the image has no /app, links
 * /app to the working directory first (to /workspace when the workdir is `/`).
 */
async function prepareStartDir(sandbox: Sandbox, startDir: string | undefined): Promise<string | undefined> {
  if (startDir !== "/app") return startDir;
  const target = sandbox.workdir && sandbox.workdir !== "/" ? sandbox.workdir : "/workspace";
  const script = `[ -e /app ] || { mkdir -p "$1" && ln -s "$1" /app; }`;
  const r = await sandbox.exec(["bash", "-c", script, "tmax-app", target], { timeoutSec: 30 });
  if (r.exitCode !== 0) throw new SandboxError(`could not prepare /app: ${(r.stderr || r.stdout).trim().split("\n")[0]}`, "exec_failed");
  return "/app";
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
