// The model client: one chat completion per agent turn against an OpenAI-compatible (vLLM) server,
// with our own retry loop and errors that read well in a terminal.
import { createModelPool } from "./pool.js";
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai";
import type {
  ChatCompletion,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionFunctionTool,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import { z } from "zod";
import { parseQwenXmlToolCalls } from "./qwenXml.js";
import {
  DEFAULT_BASE_URL,
  DEFAULT_MODEL,
  ModelError,
  PROFILES,
  type ChatMessage,
  type ModelClient,
  type ModelConfig,
  type ModelTurn,
  type Profile,
  type TokenLogprob,
  type ToolCall,
} from "./types.js";
import { redactUrl, registerSecret } from "../util/redact.js";
import { jitteredBackoff } from "../util/backoff.js";
import { sleep } from "../util/sleep.js";

const BASH_COMMAND_DESCRIPTION = "The command to run (chain several with && or ||).";

/** The one tool Tmax models were trained with. */
export const BASH_TOOL: ChatCompletionFunctionTool = {
  type: "function",
  function: {
    name: "bash",
    description:
      "Run a bash command in the task's Linux environment and get its output and exit code. " +
      "The working directory and exported variables persist between calls.",
    parameters: {
      type: "object",
      properties: {
        command: { type: "string", description: BASH_COMMAND_DESCRIPTION },
      },
      required: ["command"],
    },
  },
};

/**
 * The bash tool with other descriptions (a prompt file's `tool_description` / `command_description`, or
 * `--tool-description`); the schema's shape never changes.
 */
export function bashTool(description?: string, commandDescription?: string): ChatCompletionFunctionTool {
  if (description === undefined && commandDescription === undefined) return BASH_TOOL;
  return {
    type: "function",
    function: {
      name: "bash",
      description: description ?? BASH_TOOL.function.description!,
      parameters: {
        type: "object",
        properties: { command: { type: "string", description: commandDescription ?? BASH_COMMAND_DESCRIPTION } },
        required: ["command"],
      },
    },
  };
}

const DEFAULT_RETRY_BASE_MS = 1000;
const RETRY_CAP_MS = 30_000;
/** A server asking for a longer pause than this is not waited for verbatim. */
const RETRY_AFTER_CAP_MS = 300_000;

const ConfigSchema = z.object({
  baseUrl: z.string().regex(/^https?:\/\/[^\s]+$/, "must be an http(s) URL"),
  model: z.string().min(1, "must not be empty"),
  apiKey: z.string().optional(),
  temperature: z.number().min(0),
  topP: z.number().gt(0).max(1),
  maxTokens: z.number().int().positive(),
  timeoutMs: z.number().positive(),
  maxRetries: z.number().int().min(0),
  retryBaseMs: z.number().min(0).optional(),
  logprobs: z.boolean(),
  tokenIds: z.boolean(),
  extraBody: z.record(z.string(), z.unknown()).optional(),
  baseUrls: z.array(z.string().regex(/^https?:\/\/[^\s]+$/, "must be an http(s) URL")).optional(),
});

/** A complete ModelConfig from partial options: defaults, then the profile's sampling, then what was given. */
export function modelConfigFromOptions(opts: Partial<ModelConfig> & { profile?: Profile } = {}): ModelConfig {
  const sampling = PROFILES[opts.profile ?? "eval"];
  if (!sampling) throw new Error(`unknown profile '${opts.profile}' (expected eval or train)`);
  const config: ModelConfig = {
    baseUrl: opts.baseUrl ?? DEFAULT_BASE_URL,
    model: opts.model ?? DEFAULT_MODEL,
    ...(opts.apiKey !== undefined ? { apiKey: opts.apiKey } : {}),
    temperature: opts.temperature ?? sampling.temperature,
    topP: opts.topP ?? sampling.topP,
    maxTokens: opts.maxTokens ?? 16384,
    timeoutMs: opts.timeoutMs ?? 3_600_000,
    maxRetries: opts.maxRetries ?? 5,
    ...(opts.retryBaseMs !== undefined ? { retryBaseMs: opts.retryBaseMs } : {}),
    logprobs: opts.logprobs ?? false,
    tokenIds: opts.tokenIds ?? false,
    ...(opts.extraBody !== undefined ? { extraBody: opts.extraBody } : {}),
    ...(opts.baseUrls && opts.baseUrls.length > 1 ? { baseUrls: opts.baseUrls } : {}),
  };
  const checked = ConfigSchema.safeParse(config);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const field = issue.path.join(".");
    const got = field === "apiKey" ? "" : `, got ${JSON.stringify((config as unknown as Record<string, unknown>)[field])}`;
    throw new Error(`invalid model option ${field}: ${issue.message}${got}`);
  }
  return config;
}

/** One client per server; with several `baseUrls`, a pool routing over them (pool.ts). */
export function createModelClient(config: ModelConfig): ModelClient {
  if (config.baseUrls && config.baseUrls.length > 1) return createModelPool(config, createServerClient);
  return createServerClient(config);
}

function createServerClient(config: ModelConfig): ModelClient {
  const apiKey = config.apiKey ?? process.env.TMAX_API_KEY ?? process.env.OPENAI_API_KEY ?? "EMPTY";
  registerSecret(apiKey);
  const shownUrl = redactUrl(config.baseUrl).replace(/\/+$/, "");
  const retryBaseMs = config.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
  const openai = new OpenAI({
    baseURL: config.baseUrl,
    apiKey,
    maxRetries: 0, // retries are ours: counted, with jitter, and abortable
    timeout: config.timeoutMs,
    fetch: normalizingFetch,
  });

  /** Server text made fit for one terminal line, with the key masked in case a server echoes it. */
  const oneLine = (text: string): string => {
    let line = text.replace(/\s+/g, " ").trim();
    if (apiKey && apiKey !== "EMPTY") line = line.split(apiKey).join("***");
    return line.length > 300 ? `${line.slice(0, 297)}...` : line;
  };

  async function withRetries<T>(
    endpoint: string,
    signal: AbortSignal | undefined,
    call: () => Promise<T>,
  ): Promise<{ value: T; retries: number }> {
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      try {
        return { value: await call(), retries: attempt };
      } catch (err) {
        signal?.throwIfAborted();
        if (!isRetryable(err) || attempt >= config.maxRetries) throw await toModelError(err, endpoint, attempt);
        await sleep(backoffMs(attempt, retryBaseMs, retryAfterMs(err)), signal);
      }
    }
  }

  async function toModelError(err: unknown, endpoint: string, retries: number): Promise<ModelError> {
    const after = retries > 0 ? ` (gave up after ${retries} ${retries === 1 ? "retry" : "retries"})` : "";
    if (err instanceof ModelError) return err;
    if (err instanceof APIConnectionTimeoutError) {
      const secs = Math.round(config.timeoutMs / 1000);
      return new ModelError(
        `model server at ${shownUrl} did not answer within ${secs}s${after} — check the server or raise the timeout`,
        "timeout",
      );
    }
    if (err instanceof APIConnectionError) {
      const code = errorCode(err) ?? rootCauseMessage(err) ?? "connection error";
      return new ModelError(
        `cannot reach model server at ${shownUrl} (${code})${after} — is vLLM running? check --base-url`,
        "unreachable",
      );
    }
    if (err instanceof APIError && err.status !== undefined) {
      const status = err.status;
      const message = oneLine(serverMessage(err));
      if (status === 404 || /model .*does not exist/i.test(message)) {
        if (endpoint === "/chat/completions") {
          const served = await servedModels();
          if (served && !served.includes(config.model)) {
            return new ModelError(
              `model '${config.model}' is not served at ${shownUrl}; served: ${served.join(", ") || "(none)"}`,
              "model_not_found",
              status,
            );
          }
        }
        if (status === 404) {
          return new ModelError(
            `${shownUrl}${endpoint} answered 404 (${message}) — check --base-url (it usually ends in /v1)`,
            "http",
            status,
          );
        }
      }
      if (status === 400 && isContextLengthMessage(message)) {
        return new ModelError(`request does not fit the model's context: ${message}`, "context_length", status);
      }
      if (status === 401 || status === 403) {
        return new ModelError(
          `model server at ${shownUrl} rejected the API key (${status}: ${message}) — set TMAX_API_KEY`,
          "http",
          status,
        );
      }
      return new ModelError(`model server at ${shownUrl} answered ${status}: ${message}${after}`, "http", status);
    }
    const message = err instanceof Error ? err.message : String(err);
    return new ModelError(`unexpected answer from ${shownUrl}: ${oneLine(message)}`, "bad_response");
  }

  /** Served model ids, or null when the list itself cannot be had (then the 404 is reported as is). */
  async function servedModels(): Promise<string[] | null> {
    try {
      const page = await openai.models.list({ timeout: Math.min(config.timeoutMs, 10_000) });
      return page.data.map((m) => m.id);
    } catch {
      return null;
    }
  }

  async function complete(
    messages: ChatMessage[],
    opts: { signal?: AbortSignal; maxTokens?: number; toolDescription?: string; commandDescription?: string } = {},
  ): Promise<ModelTurn> {
    const maxTokens = Math.min(config.maxTokens, opts.maxTokens ?? Infinity);
    if (!(maxTokens >= 1)) {
      throw new ModelError(`no room left for a model reply (max_tokens would be ${maxTokens})`, "context_length");
    }
    const body: Record<string, unknown> = {
      model: config.model,
      messages: messages as ChatCompletionMessageParam[],
      tools: [bashTool(opts.toolDescription, opts.commandDescription)],
      temperature: config.temperature,
      top_p: config.topP,
      max_tokens: maxTokens,
      ...(config.logprobs ? { logprobs: true } : {}),
      ...(config.tokenIds ? { return_token_ids: true } : {}), // vLLM extension
      ...config.extraBody,
    };
    const started = performance.now();
    const { value: response, retries } = await withRetries("/chat/completions", opts.signal, () =>
      openai.chat.completions.create(body as unknown as ChatCompletionCreateParamsNonStreaming, {
        signal: opts.signal,
      }),
    );
    const latencyMs = Math.round(performance.now() - started);
    try {
      return turnFromResponse(response, latencyMs, retries);
    } catch (err) {
      throw err instanceof ModelError ? err : new ModelError(`unexpected answer from ${shownUrl}: ${oneLine(String(err))}`, "bad_response");
    }
  }

  async function listModels(opts: { signal?: AbortSignal } = {}): Promise<{ id: string; maxModelLen?: number }[]> {
    const { value: page } = await withRetries("/models", opts.signal, () => openai.models.list({ signal: opts.signal }));
    return page.data.map((m) => {
      const maxModelLen = (m as unknown as { max_model_len?: unknown }).max_model_len;
      return typeof maxModelLen === "number" ? { id: m.id, maxModelLen } : { id: m.id };
    });
  }

  return { config, complete, listModels };
}

// vLLM's additions to the OpenAI response shape.
type VllmCompletion = ChatCompletion & { prompt_token_ids?: number[] | null };
type VllmChoice = ChatCompletion.Choice & { token_ids?: number[] | null };
type VllmMessage = ChatCompletion.Choice["message"] & { reasoning_content?: string | null; reasoning?: string | null };

/** Largest text of one model turn (content + reasoning + tool-call arguments); bigger turns are a bad_response. */
export const MAX_TURN_TEXT_CHARS = 4 * 1024 * 1024;
/** Largest HTTP body read from the model server. */
export const MAX_RESPONSE_BODY_BYTES = 64 * 1024 * 1024;

/** Turns one chat completion into the agent's view of a model turn. */
export function turnFromResponse(response: VllmCompletion, latencyMs: number, retries: number): ModelTurn {
  const choice = response.choices?.[0] as VllmChoice | undefined;
  if (!choice?.message) throw new ModelError("model server answered without a choice", "bad_response");
  const message = choice.message as VllmMessage;
  // a turn this large would be resent with every later request: the episode ends instead (history kept)
  const size = [message.content, message.reasoning_content, message.reasoning, ...(message.tool_calls ?? []).map((c) => (c.type === "function" ? c.function.arguments : ""))]
    .reduce((n, s) => n + (typeof s === "string" ? s.length : 0), 0);
  if (size > MAX_TURN_TEXT_CHARS) throw new ModelError(`model turn of ${size} characters is over the ${MAX_TURN_TEXT_CHARS}-character cap`, "bad_response");
  const content = typeof message.content === "string" ? message.content : "";
  const reasoningText = [message.reasoning_content, message.reasoning].find((r) => typeof r === "string" && r.length > 0);
  // Thinking stays in the history the way the model wrote it when no reasoning parser runs.
  const historyContent = reasoningText ? `<think>\n${reasoningText}\n</think>\n\n${content}` : content;

  const toolCalls: ToolCall[] = [];
  const parseErrors: string[] = [];
  const serverCalls = (message.tool_calls ?? []).filter((c) => c.type === "function");
  if (serverCalls.length > 0) {
    for (const call of serverCalls) {
      const args = parseArguments(call.function.arguments);
      if (args) {
        toolCalls.push({ id: call.id, name: call.function.name, arguments: args, source: "tool_calls" });
      } else {
        const shown = call.function.arguments.length > 80 ? `${call.function.arguments.slice(0, 77)}...` : call.function.arguments;
        parseErrors.push(`arguments of ${call.function.name} are not a JSON object: ${JSON.stringify(shown)}`);
      }
    }
  } else {
    const parsed = parseQwenXmlToolCalls(content);
    toolCalls.push(...parsed.calls);
    parseErrors.push(...parsed.errors);
  }

  const turn: ModelTurn = {
    message: {
      role: "assistant",
      content: historyContent,
      ...(serverCalls.length > 0
        ? {
            tool_calls: serverCalls.map((c) => ({
              id: c.id,
              type: "function" as const,
              function: { name: c.function.name, arguments: c.function.arguments },
            })),
          }
        : {}),
    },
    content,
    toolCalls,
    parseErrors,
    finishReason: choice.finish_reason ?? "unknown",
    usage: {
      promptTokens: response.usage?.prompt_tokens ?? 0,
      completionTokens: response.usage?.completion_tokens ?? 0,
      ...(typeof response.usage?.prompt_tokens_details?.cached_tokens === "number" ? { cachedTokens: response.usage.prompt_tokens_details.cached_tokens } : {}),
    },
    latencyMs,
    retries,
  };
  if (reasoningText) turn.reasoning = reasoningText;
  const logprobs = choice.logprobs?.content;
  if (Array.isArray(logprobs)) turn.logprobs = logprobs.map((l): TokenLogprob => ({ token: l.token, logprob: l.logprob }));
  if (Array.isArray(response.prompt_token_ids)) turn.promptTokenIds = response.prompt_token_ids;
  if (Array.isArray(choice.token_ids)) turn.completionTokenIds = choice.token_ids;
  return turn;
}

function parseArguments(json: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(json);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function isRetryable(err: unknown): boolean {
  if (err instanceof APIConnectionError) return true; // includes timeouts
  return err instanceof APIError && typeof err.status === "number" && (err.status === 429 || err.status >= 500);
}

/** Exponential backoff with jitter (half fixed, half random), or the server's Retry-After when it gives one. */
export function backoffMs(attempt: number, baseMs: number, retryAfter?: number): number {
  if (retryAfter !== undefined) return Math.min(retryAfter, RETRY_AFTER_CAP_MS);
  return jitteredBackoff(attempt, baseMs, RETRY_CAP_MS);
}

function retryAfterMs(err: unknown): number | undefined {
  if (!(err instanceof APIError) || !err.headers) return undefined;
  const ms = Number.parseFloat(err.headers.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const header = err.headers.get("retry-after");
  if (!header) return undefined;
  const secs = Number.parseFloat(header);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}


/** The system error code (ECONNREFUSED, ENOTFOUND, ...) somewhere in the cause chain of a fetch failure. */
function errorCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0) {
    const e = queue.shift();
    if (!e || typeof e !== "object" || seen.has(e)) continue;
    seen.add(e);
    const { code, cause, errors } = e as { code?: unknown; cause?: unknown; errors?: unknown };
    if (typeof code === "string" && /^E[A-Z_]+$/.test(code)) return code;
    queue.push(cause);
    if (Array.isArray(errors)) queue.push(...errors);
  }
  return undefined;
}

/** The innermost cause's message (e.g. fetch's "bad port"), when no system error code is given. */
function rootCauseMessage(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error && e.cause instanceof Error; depth++) e = e.cause;
  return e !== err && e instanceof Error && e.message ? e.message.replace(/\s+/g, " ").slice(0, 120) : undefined;
}

function serverMessage(err: APIError): string {
  const body = err.error as { message?: unknown } | undefined;
  if (body && typeof body.message === "string") return body.message;
  return err.message.replace(/^\d{3}\s*/, "") || "no message";
}

function isContextLengthMessage(message: string): boolean {
  return /context length|context window|max_model_len|maximum model length|too many tokens|prompt is too long/i.test(message);
}

/**
 * Fetch that reshapes error bodies into OpenAI's `{ error: { message } }`, so the SDK keeps the server's
 * message: older vLLM answers `{ object: "error", message }`, FastAPI `{ detail }`, auth `{ error: "..." }`.
 */
async function normalizingFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const res = await fetch(input, init);
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > MAX_RESPONSE_BODY_BYTES) {
    await res.body?.cancel().catch(() => undefined);
    throw new ModelError(`model server answer of ${declared} bytes is over the ${MAX_RESPONSE_BODY_BYTES}-byte cap`, "bad_response");
  }
  if (res.ok && res.body) {
    // a body without a length (chunked) is counted as it is read
    let seen = 0;
    const capped = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) {
          seen += chunk.byteLength;
          if (seen > MAX_RESPONSE_BODY_BYTES) ctl.error(new ModelError(`model server answer over the ${MAX_RESPONSE_BODY_BYTES}-byte cap`, "bad_response"));
          else ctl.enqueue(chunk);
        },
      }),
    );
    return new Response(capped, { status: res.status, statusText: res.statusText, headers: res.headers });
  }
  if (res.ok) return res;
  const text = await res.text();
  let body = text;
  try {
    const json = JSON.parse(text) as Record<string, unknown>;
    if (json && typeof json === "object") {
      if (typeof json.error === "string") body = JSON.stringify({ error: { message: json.error } });
      else if (json.error === undefined && typeof json.message === "string") body = JSON.stringify({ error: json });
      else if (json.error === undefined && json.detail !== undefined) {
        const detail = typeof json.detail === "string" ? json.detail : JSON.stringify(json.detail);
        body = JSON.stringify({ error: { message: detail } });
      }
    }
  } catch {
    if (text.trim()) body = JSON.stringify({ error: { message: text.trim() } });
  }
  const headers = new Headers(res.headers);
  headers.delete("content-length");
  headers.delete("content-encoding");
  headers.set("content-type", "application/json");
  return new Response(body, { status: res.status, statusText: res.statusText, headers });
}
