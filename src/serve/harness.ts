// The Tmax harness as an environment: a session runs the very trial `tmax run` runs (runTrial: sandbox, agent
// loop of the profile, tamper report, verifier, removal), with one difference — the model is the client. The
// loop asks its model for a turn; that question is the observation sent to the trainer, and the trainer's next
// step is the answer. So the prompts, observations, endings and rewards are the harness's own, byte for byte,
// and nothing of the loop is written twice. eval: the loop's chat messages; train: token-in/token-out, with
// the ids of every observation wrapper (vLLM /tokenize) so a trainer can append them verbatim.
import { z } from "zod";
import type { Trajectory } from "../agent/schema.js";
import { observationWrapper, type TokenStream } from "../agent/tokenProtocol.js";
import { runTrial } from "../trial/trial.js";
import type { TrialResult } from "../results/schema.js";
import { bashTool, turnFromResponse } from "../model/client.js";
import { renderQwenXmlToolCall } from "../model/qwenXml.js";
import { serverRoot, type SampledTurn, type TokenClient } from "../model/tokens.js";
import { ModelError, PROFILES, type ChatMessage, type ModelClient, type ModelTurn, type Profile } from "../model/types.js";
import { clampReward } from "../rl/advantages.js";
import type { Task } from "../tasks/types.js";
import { newTrialDir, trialBase, type ServeEnv } from "./env.js";
import { parseOr, ProtocolError, type ResetParams, type StepPayload } from "./protocol.js";

/** One model turn. Exactly one of: command / tool_call (a bash call), message (eval: the assistant message as the server returned it), text and/or token_ids (the raw completion). */
export const HarnessAction = z
  .strictObject({
    command: z.string().optional(),
    tool_call: z
      .strictObject({
        id: z.string().optional(),
        name: z.string().default("bash"),
        arguments: z.union([z.record(z.string(), z.unknown()), z.string()]),
      })
      .optional(),
    message: z
      .looseObject({
        role: z.literal("assistant").optional(),
        content: z.string().nullable().optional(),
        tool_calls: z
          .array(z.looseObject({ id: z.string(), type: z.literal("function").default("function"), function: z.object({ name: z.string(), arguments: z.string() }) }))
          .optional(),
        reasoning_content: z.string().nullable().optional(),
        reasoning: z.string().nullable().optional(),
      })
      .optional(),
    text: z.string().optional(),
    token_ids: z.array(z.number().int().min(0)).optional(),
    logprobs: z.array(z.number()).optional(),
    finish_reason: z.string().optional(),
    usage: z.strictObject({ prompt_tokens: z.number().int().min(0).optional(), completion_tokens: z.number().int().min(0).optional() }).optional(),
    metadata: z.record(z.string(), z.unknown()).default({}),
  })
  .refine((a) => [a.command !== undefined, a.tool_call !== undefined, a.message !== undefined, a.text !== undefined || a.token_ids !== undefined].filter(Boolean).length === 1, {
    message: "give exactly one of command, tool_call, message, text/token_ids",
  });
export type HarnessAction = z.infer<typeof HarnessAction>;

/** What the loop is waiting for: a chat turn (eval) or a sampled turn (train). */
interface Ask {
  maxTokens?: number;
  seed?: number;
  /** train: the whole context the turn is sampled after. */
  ids?: number[];
  resolve(turn: ModelTurn | SampledTurn): void;
  settled: boolean;
}

type LoopEvent = { kind: "ask"; ask: Ask } | { kind: "end"; result: TrialResult };

/** A one-reader queue: the loop pushes, the session pulls. */
class Events {
  private items: LoopEvent[] = [];
  private waiting: ((e: LoopEvent) => void) | null = null;
  push(e: LoopEvent): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(e);
    } else this.items.push(e);
  }
  next(): Promise<LoopEvent> {
    const e = this.items.shift();
    return e ? Promise.resolve(e) : new Promise((resolve) => (this.waiting = resolve));
  }
}

/** The seed `tmax run` samples a train episode with (open-instruct's --seed). */
const TRAIN_SEED = 42;
const [WRAP_HEAD, WRAP_TAIL] = observationWrapper("\u0000").split("\u0000") as [string, string];

export class HarnessEpisode {
  readonly kind = "harness" as const;
  private readonly events = new Events();
  private readonly abort = new AbortController();
  private pending: Ask | null = null;
  private finished = false;
  private stepCount = 0;
  /** The loop's own message list (the live array it sends), and how much of it the client has. */
  private messages: ChatMessage[] = [];
  private sent = 0;
  private tools: unknown[] = [];
  /** train: context ids the client has, wrapper texts tokenized since its last turn, the final stream. */
  private known = 0;
  private wrappers: string[] = [];
  private stream: TokenStream | null = null;
  private trajectory: Trajectory | null = null;
  private readonly trial: Promise<TrialResult>;

  private constructor(
    private readonly env: ServeEnv,
    private readonly task: Task,
    readonly profile: Profile,
    private readonly episodeId: string,
    trialDir: string,
    seed: number,
  ) {
    const model = this.modelProxy();
    const tokens = profile === "train" ? this.tokenProxy() : undefined;
    this.trial = runTrial({
      ...trialBase(env, task, trialDir, profile),
      agent: "tmax",
      model,
      ...(tokens ? { tokens, seed } : {}),
      onTrajectory: (t) => (this.trajectory = t),
      onTokenStream: (s) => (this.stream = s),
      signal: this.abort.signal,
    });
    this.trial.then(
      (result) => this.events.push({ kind: "end", result }),
      (e) => this.events.push({ kind: "end", result: failedResult(e) }),
    );
  }

  /** Starts the trial; answers when the loop first asks for a turn (the prompt) or when the trial ended first (error). */
  static async start(env: ServeEnv, task: Task, params: ResetParams, profile: Profile, signal?: AbortSignal): Promise<{ episode: HarnessEpisode; payload: StepPayload }> {
    if (profile === "train" && !env.tokens) {
      throw new ProtocolError("EXECUTION_ERROR", "the train profile needs the model server's /tokenize: start tmax serve with --base-url <vLLM>/v1 --model <name>");
    }
    const { trialDir, episodeId } = newTrialDir(env, task);
    const episode = new HarnessEpisode(env, task, profile, params.episode_id ?? episodeId, trialDir, params.seed ?? TRAIN_SEED);
    const stop = () => episode.abort.abort(new Error("session closed"));
    if (signal?.aborted) stop();
    signal?.addEventListener("abort", stop, { once: true });
    const unlisten = () => signal?.removeEventListener("abort", stop); // a long session resets many times
    episode.trial.then(unlisten, unlisten);
    const first = await episode.events.next();
    if (first.kind === "end") {
      episode.finished = true;
      const why = first.result.exception_info?.exception_message ?? "the trial ended before the first model turn";
      throw new ProtocolError("EXECUTION_ERROR", `reset failed: ${why}`);
    }
    episode.pending = first.ask;
    return { episode, payload: episode.resetPayload(first.ask) };
  }

  get done(): boolean {
    return this.finished;
  }

  getState(): Record<string, unknown> {
    return {
      episode_id: this.episodeId,
      step_count: this.stepCount,
      task_id: this.task.name,
      action_set: "harness",
      profile: this.profile,
      done: this.finished,
      exit_status: this.trajectory?.exitStatus ?? null,
    };
  }

  /** One model turn: the loop runs it and answers with the next question (observation) or its end (reward). */
  async step(data: Record<string, unknown>): Promise<StepPayload> {
    const action = parseOr(HarnessAction, data, "action");
    const ask = this.pending;
    if (this.finished || !ask) throw new ProtocolError("EXECUTION_ERROR", "the episode is over; send reset for a new one");
    if (!ask.settled) {
      const turn = this.profile === "train" ? await this.sampledTurn(action, ask) : evalTurn(action);
      if (this.profile === "train") this.known += (turn as SampledTurn).tokenIds.length;
      this.stepCount++;
      ask.settled = true;
      this.pending = null;
      ask.resolve(turn);
    } else this.pending = null; // the loop stopped waiting (agent timeout): its end answers this step
    const next = await this.events.next();
    if (next.kind === "ask") {
      this.pending = next.ask;
      return { observation: this.turnObservation(next.ask), reward: null, done: false };
    }
    this.finished = true;
    return this.endPayload(next.result);
  }

  /** Ends the trial (a loop waiting for a turn ends as aborted) and waits until its sandbox is removed. */
  async close(): Promise<void> {
    this.abort.abort(new Error("session closed"));
    await this.trial.catch(() => undefined);
    this.finished = true;
  }

  // ---- the loop's model, answered by the client --------------------------------------------------------------

  private ask<T extends ModelTurn | SampledTurn>(fields: Omit<Ask, "resolve" | "settled">, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ask: Ask = { ...fields, settled: false, resolve: (t) => resolve(t as T) };
      const onAbort = () => {
        if (ask.settled) return;
        ask.settled = true;
        reject(signal?.reason ?? new Error("aborted"));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.events.push({ kind: "ask", ask });
    });
  }

  private modelProxy(): ModelClient {
    const sampling = PROFILES[this.profile];
    return {
      config: { baseUrl: "client", model: this.env.modelName, temperature: sampling.temperature, topP: sampling.topP, maxTokens: 16_384, timeoutMs: 0, maxRetries: 0, logprobs: false, tokenIds: false },
      complete: (messages, opts = {}) => {
        this.messages = messages; // the loop's live list: what it will send next is always in it
        this.tools = [bashTool(opts.toolDescription, opts.commandDescription)];
        return this.ask<ModelTurn>({ ...(opts.maxTokens !== undefined ? { maxTokens: opts.maxTokens } : {}) }, opts.signal);
      },
      listModels: async () => [{ id: this.env.modelName }],
    };
  }

  private tokenProxy(): TokenClient {
    const real = this.env.tokens!;
    return {
      config: real.config,
      tokenizeChat: (messages, tools, opts) => {
        this.messages = messages;
        this.tools = tools;
        return real.tokenizeChat(messages, tools, opts);
      },
      tokenizeText: (text, opts) => {
        this.wrappers.push(text);
        return real.tokenizeText(text, opts);
      },
      sample: (ids, opts) => this.ask<SampledTurn>({ ids: [...ids], maxTokens: opts.maxTokens, ...(opts.seed !== undefined ? { seed: opts.seed } : {}) }, opts.signal),
    };
  }

  private async sampledTurn(a: HarnessAction, ask: Ask): Promise<SampledTurn> {
    if (a.message) throw new ProtocolError("VALIDATION_ERROR", "Invalid action: the train profile takes text and/or token_ids (or command), not a chat message");
    const real = this.env.tokens!;
    let text: string;
    let ids: number[];
    const asCall = callOf(a);
    if (asCall) {
      // the call written as the model writes it (Qwen XML), ending its turn
      text = `${renderQwenXmlToolCall(asCall.name, asCall.argsObject)}<|im_end|>`;
      ids = await real.tokenizeText(text);
    } else {
      text = a.text ?? (await detokenize(real, a.token_ids!));
      ids = a.token_ids ?? (await real.tokenizeText(text));
    }
    const logprobs = a.logprobs ?? ids.map(() => 0);
    if (logprobs.length !== ids.length) throw new ProtocolError("VALIDATION_ERROR", `Invalid action: ${logprobs.length} logprobs for ${ids.length} token ids`);
    if (ask.maxTokens !== undefined && ids.length > ask.maxTokens) {
      throw new ProtocolError("VALIDATION_ERROR", `Invalid action: ${ids.length} token ids, but this turn has room for max_tokens ${ask.maxTokens}`);
    }
    return { text, tokenIds: ids, logprobs, finishReason: a.finish_reason ?? "stop", latencyMs: 0, retries: 0 };
  }

  // ---- observations -------------------------------------------------------------------------------------------

  private resetPayload(ask: Ask): StepPayload {
    const messages = this.messages.slice();
    this.sent = messages.length;
    const prompt = messages.find((m) => m.role === "user")?.content ?? "";
    const observation: Record<string, unknown> = {
      instruction: this.task.instruction,
      task_id: this.task.name,
      episode_id: this.episodeId,
      profile: this.profile,
      observation: prompt,
      observations: [],
      messages,
      tools: this.tools,
      exit_status: null,
      metadata: {},
    };
    if (this.profile === "train") {
      observation.prompt_ids = ask.ids ?? [];
      this.known = ask.ids?.length ?? 0;
      observation.max_tokens = ask.maxTokens ?? null;
      observation.seed = ask.seed ?? null;
    }
    return { observation, reward: null, done: false };
  }

  /** What the client appends after its turn: the messages the loop added (its turn as recorded, the observations). */
  private delta(all: readonly unknown[]): { messages: ChatMessage[]; observations: string[] } {
    const messages = all.slice(this.sent) as ChatMessage[];
    this.sent = all.length;
    const observations = messages.filter((m) => m.role === "tool" || m.role === "user").map((m) => m.content);
    return { messages, observations };
  }

  /** The fields every observation has: the session, what the loop added since the client's last turn, the status. */
  private observationOf(all: readonly unknown[], exitStatus: string | null): Record<string, unknown> {
    const { messages, observations } = this.delta(all);
    return {
      task_id: this.task.name,
      episode_id: this.episodeId,
      profile: this.profile,
      observation: observations.join("\n\n"),
      observations,
      messages,
      exit_status: exitStatus,
    };
  }

  private turnObservation(ask: Ask): Record<string, unknown> {
    const observation: Record<string, unknown> = { ...this.observationOf(this.messages, null), metadata: {} };
    if (this.profile === "train") Object.assign(observation, this.wrapperFields(ask.ids ?? []), { max_tokens: ask.maxTokens ?? null, seed: ask.seed ?? null });
    return observation;
  }

  /** train: the wrappers since the client's last turn, and the ids the loop appended for them (verbatim, cut included). */
  private wrapperFields(context: readonly number[]): Record<string, unknown> {
    const texts = this.wrappers;
    this.wrappers = [];
    const ids = context.slice(this.known);
    this.known = context.length;
    return { wrapper_text: texts.join(""), wrapper_ids: ids, observations_wrapped: texts.map((t) => t.slice(WRAP_HEAD.length, t.length - WRAP_TAIL.length)) };
  }

  private endPayload(result: TrialResult): StepPayload {
    const t = this.trajectory;
    const verified = result.verifier_result !== null;
    // eval: the trial's reward (as `tmax run` prints it); train: the rollout's (0 unless submitted and scored cleanly)
    const reward =
      this.profile === "train"
        ? verified && !result.exception_info && t?.exitStatus === "submitted"
          ? clampReward(result.reward)
          : 0
        : verified
          ? result.reward
          : null;
    const observation: Record<string, unknown> = {
      ...this.observationOf((t?.messages as unknown[] | undefined) ?? this.messages, t?.exitStatus ?? "error"),
      rewards: result.verifier_result?.rewards ?? null,
      tamper: result.tamper ?? null,
      error: result.exception_info ? `${result.exception_info.exception_type}: ${result.exception_info.exception_message}` : null,
      trial: result.trial_name,
      metadata: {},
    };
    if (this.profile === "train") {
      const s = this.stream;
      Object.assign(observation, this.wrapperFields(s ? [...s.promptIds, ...s.responseIds] : []), { stream_problem: s?.problem ?? null });
    }
    return { observation, reward, done: true };
  }
}

/** The bash command an action carries as a call (command / tool_call), if it is one. */
function callOf(a: HarnessAction): { id?: string; name: string; args: string; argsObject: Record<string, unknown> } | null {
  if (a.command !== undefined) return { name: "bash", args: JSON.stringify({ command: a.command }), argsObject: { command: a.command } };
  if (!a.tool_call) return null;
  const raw = a.tool_call.arguments;
  const args = typeof raw === "string" ? raw : JSON.stringify(raw);
  let argsObject: Record<string, unknown> = {};
  try {
    const parsed: unknown = typeof raw === "string" ? JSON.parse(raw) : raw;
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) argsObject = parsed as Record<string, unknown>;
  } catch {
    // not JSON: eval's loop reports it to the model as its format error; train's sees a call without arguments
  }
  return { ...(a.tool_call.id ? { id: a.tool_call.id } : {}), name: a.tool_call.name, args, argsObject };
}

let callSeq = 0;

/** eval: the turn the model client would have built from a chat completion carrying this action. */
export function evalTurn(a: HarnessAction): ModelTurn {
  if (a.token_ids !== undefined) throw new ProtocolError("VALIDATION_ERROR", "Invalid action: token_ids are for the train profile; the eval profile takes message, text or command");
  let message: Record<string, unknown>;
  let finish: string;
  const call = callOf(a);
  if (call) {
    message = { role: "assistant", content: "", tool_calls: [{ id: call.id ?? `call_tmax_${++callSeq}`, type: "function", function: { name: call.name, arguments: call.args } }] };
    finish = "tool_calls";
  } else if (a.message) {
    message = { ...a.message, role: "assistant" };
    finish = a.message.tool_calls?.length ? "tool_calls" : "stop";
  } else {
    message = { role: "assistant", content: a.text ?? "" };
    finish = "stop";
  }
  const usage = a.usage ? { prompt_tokens: a.usage.prompt_tokens ?? 0, completion_tokens: a.usage.completion_tokens ?? 0 } : undefined;
  try {
    return turnFromResponse({ choices: [{ index: 0, message, finish_reason: a.finish_reason ?? finish, logprobs: null }], ...(usage ? { usage } : {}) } as never, 0, 0);
  } catch (e) {
    if (e instanceof ModelError) throw new ProtocolError("VALIDATION_ERROR", `Invalid action: ${e.message}`);
    throw e;
  }
}

/** The text of sampled ids, from the model server's /detokenize (vLLM serves it at the root). */
async function detokenize(tokens: TokenClient, ids: number[]): Promise<string> {
  const { baseUrl, model, apiKey } = tokens.config;
  const res = await fetch(`${serverRoot(baseUrl)}/detokenize`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    body: JSON.stringify({ model, tokens: ids }),
    signal: AbortSignal.timeout(tokens.config.timeoutMs || 60_000),
  }).catch((e: Error) => {
    throw new ProtocolError("EXECUTION_ERROR", `cannot reach the model server's /detokenize (${e.message}); send the text with the token ids`);
  });
  const json = (await res.json().catch(() => null)) as { prompt?: unknown } | null;
  if (!res.ok || typeof json?.prompt !== "string") throw new ProtocolError("EXECUTION_ERROR", `the model server's /detokenize answered ${res.status}; send the text with the token ids`);
  return json.prompt;
}

/** A trial that threw (it records its errors, so this is a bug or the job dir being unwritable). */
function failedResult(e: unknown): TrialResult {
  const message = e instanceof Error ? e.message.split("\n")[0]! : String(e);
  return { trial_name: "", reward: 0, verifier_result: null, exception_info: { exception_type: "Error", exception_message: message, exception_traceback: "", occurred_at: new Date().toISOString() } } as unknown as TrialResult;
}
