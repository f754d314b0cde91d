// The token-in/token-out protocol (the train profile as open-instruct sampled Tmax): the context is one list
// of token ids. It starts as the chat template's rendering of system + user + tool schema (vLLM /tokenize);
// each turn appends the ids the engine sampled, verbatim, then one observation wrapper per executed call
//   <|im_start|>user\n<tool_response>\n{obs}\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>\n
// tokenized on its own. Nothing is ever re-rendered, so the stream is exactly what the model conditioned on,
// and it is what a rollout record holds. What this file owns: the token stream (ids, logprobs, mask, spans)
// and its cuts, the sampling request, training's start dir, and the submitting call's answer, the test report
// (the trial appends it after the verifier ran: appendTestReport, and only then is the record complete). The
// episode itself (turns, calls, endings, the trajectory) is loop.ts's, under TRAIN_ENV_RULES.
import type { ModelTurn } from "../model/types.js";
import { bashTool } from "../model/client.js";
import { parseQwenXmlToolCalls } from "../model/qwenXml.js";
import type { TokenClient } from "../model/tokens.js";
import { SandboxError, type Sandbox } from "../sandbox/types.js";
import { EpisodeEnd, runEpisodeWith, TRAIN_ENV_RULES, type EpisodeBase, type EpisodeContext, type Protocol } from "./loop.js";
import { DEFAULT_OBSERVATION, timeoutNotice, truncateOutput, type ObservationConfig } from "./observation.js";
import type { Trajectory } from "./schema.js";
import { redactUrl } from "../util/redact.js";

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

export interface TokenEpisodeInput extends EpisodeBase {
  tokens: TokenClient;
  /** vLLM seed of this sample (open-instruct: run seed + sample index in its group). */
  seed?: number;
  /** The shell starts here; "/app" is linked to the workdir first when it does not exist (training's env). */
  startDir?: string;
}

export interface TokenEpisode {
  trajectory: Trajectory;
  stream: TokenStream;
}

/** One training episode token-in/token-out, under training's env rules; the trajectory and the token record. */
export async function runTokenEpisode(input: TokenEpisodeInput): Promise<TokenEpisode> {
  const protocol = tokenProtocol(input.tokens, input.seed, input.startDir);
  const trajectory = await runEpisodeWith(protocol, input);
  return { trajectory, stream: protocol.stream };
}

export function tokenProtocol(tokens: TokenClient, seed: number | undefined, startDir: string | undefined): Protocol & { stream: TokenStream } {
  const stream: TokenStream = { promptIds: [], responseIds: [], logprobs: [], mask: [], spans: [] };
  const contextLength = () => stream.promptIds.length + stream.responseIds.length;
  let ctx: EpisodeContext;
  let tool: ReturnType<typeof bashTool>;
  let maxModelLen = 0;
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
  /** Each observation gets its own wrapper; one cut to fit max_model_len ends the episode. */
  const appendObservations = async (observations: string[]) => {
    for (const observation of observations) {
      const excess = await appendWrapped(stream, tokens, observation, ctx.signal);
      ctx.usage.contextTokens = contextLength();
      if (excess > 0) throw new EpisodeEnd("token_limit", `observation cut by ${excess} tokens to fit max_model_len ${maxModelLen}`);
    }
  };

  return {
    profile: "train",
    rules: TRAIN_ENV_RULES,
    stream,
    async start(context) {
      ctx = context;
      tool = bashTool(ctx.prompts.toolDescription, ctx.prompts.commandDescription);
      const first = await tokens.tokenizeChat(ctx.messages, [tool], { signal: ctx.signal });
      stream.promptIds = first.ids;
      maxModelLen = first.maxModelLen ?? ctx.limits.maxTotalTokens;
      stream.maxModelLen = maxModelLen;
      return prepareStartDir(ctx.sandbox, startDir);
    },
    budget() {
      const budget = TRAIN_TOKEN_LIMITS.maxResponseTokens - stream.responseIds.length;
      const room = maxModelLen - contextLength();
      if (budget <= 0 || room <= 0) throw new EpisodeEnd("token_limit");
      return Math.min(TRAIN_TOKEN_LIMITS.perTurnMaxTokens, budget, room);
    },
    async next(index, maxTokens) {
      const sampled = await tokens.sample([...stream.promptIds, ...stream.responseIds], { maxTokens: maxTokens!, seed, signal: ctx.signal });
      if (sampled.logprobs.length !== sampled.tokenIds.length) {
        stream.problem = `turn ${index + 1}: ${sampled.logprobs.length} logprobs for ${sampled.tokenIds.length} sampled ids`;
        throw new EpisodeEnd("error", stream.problem);
      }
      if (sampled.logprobs.some((l) => !Number.isFinite(l))) {
        stream.problem = `turn ${index + 1}: a sampled id has no finite logprob`;
        throw new EpisodeEnd("error", stream.problem);
      }
      appendSampled(sampled.tokenIds, sampled.logprobs);
      // the engine's text parsed as training's env does; calls to other tools are not calls
      const parsed = parseQwenXmlToolCalls(sampled.text, { wholeText: true });
      const turn: ModelTurn = {
        message: { role: "assistant", content: sampled.text },
        content: sampled.text,
        toolCalls: parsed.calls.filter((c) => c.name === tool.function.name),
        parseErrors: parsed.errors,
        finishReason: sampled.finishReason,
        usage: { promptTokens: contextLength() - sampled.tokenIds.length, completionTokens: sampled.tokenIds.length },
        latencyMs: sampled.latencyMs,
        retries: sampled.retries,
      };
      const record = {
        content: sampled.text,
        finishReason: sampled.finishReason,
        usage: turn.usage,
        latencyMs: sampled.latencyMs,
        retries: sampled.retries,
        completionTokenIds: sampled.tokenIds,
      };
      return { turn, record };
    },
    outOfTokens: () => false,
    observed: appendObservations,
    // the calls before it in its turn keep their observations; the submitting call's is the test report
    async submitted(observations) {
      await appendObservations(observations);
      stream.awaitingReport = true;
    },
    describe: () => ({
      model: {
        name: tokens.config.model,
        baseUrl: redactUrl(tokens.config.baseUrl),
        temperature: tokens.config.temperature ?? 1.0,
        topP: tokens.config.topP ?? 1.0,
        maxTokens: TRAIN_TOKEN_LIMITS.perTurnMaxTokens,
      },
      limits: { maxTotalTokens: TRAIN_TOKEN_LIMITS.maxResponseTokens, maxFormatErrors: 0 },
    }),
    ended(status, error) {
      if (status === "error" && !stream.problem) stream.problem = `episode error: ${error ?? "unknown"}`;
      if (!stream.problem && stream.promptIds.length === 0) stream.problem = "no prompt ids";
    },
  };
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
