// A scripted stand-in for `vllm serve … --enable-auto-tool-choice --tool-call-parser qwen3_xml`: a real
// HTTP server on 127.0.0.1 that answers /v1/models and /v1/chat/completions the way vLLM does, with a
// deterministic fake tokenizer so token counts, logprobs and token ids are stable across runs.
//
// Token ids are prefix-consistent like a real chat template: the prompt ids of turn n+1 start with the
// prompt ids of turn n followed by the completion ids of turn n (which end with <|im_end|> on "stop").
import http from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { renderQwenXmlToolCall } from "../../src/model/qwenXml.js";

export interface FakeReply {
  thinking?: string; // emitted as `{thinking}</think>\n\n` (the generation prompt already opened <think>)
  text?: string;
  commands?: string[]; // each rendered as a Qwen XML call to `toolName`, joined by "\n"
  raw?: string; // the generated text verbatim (replaces thinking/text/commands)
  status?: number; // answer with this HTTP error instead
  retryAfterSec?: number;
  errorMessage?: string;
  delayMs?: number; // wait before answering (also before an error)
  finishReason?: string;
  toolName?: string; // default "bash"
}

export interface FakeContext {
  messages: any[];
  body: any;
  requestIndex: number; // 0-based over all chat completion requests
  turn: number; // assistant messages in the request so far
  instruction: string; // content of the first user message
}

export interface FakeVllmOptions {
  model?: string; // served model name, default tmax-9b
  maxModelLen?: number; // default 65536
  toolParser?: boolean; // --tool-call-parser qwen3_xml on (default true)
  /** Like running a reasoning parser: thinking goes into this message field instead of content. */
  reasoningField?: "reasoning_content" | "reasoning";
  /** false: act like a vLLM without return_token_ids (the field is ignored). Default true. */
  tokenIds?: boolean;
  /** Require `Authorization: Bearer <apiKey>` (vLLM's --api-key). */
  apiKey?: string;
  reply: (ctx: FakeContext) => FakeReply | Promise<FakeReply>;
  /** Listen on this port (e.g. to restart a killed server at the same address); default any free port. */
  port?: number;
  /** Report this many prompt tokens as cached (usage.prompt_tokens_details.cached_tokens, as OpenAI does); default null, as vLLM. */
  cachedTokens?: number;
}

export interface FakeVllm {
  baseUrl: string; // http://127.0.0.1:<port>/v1
  requests: any[]; // every chat completion request body, in order
  close(): Promise<void>;
}

export async function startFakeVllm(opts: FakeVllmOptions): Promise<FakeVllm> {
  const model = opts.model ?? "tmax-9b";
  const maxModelLen = opts.maxModelLen ?? 65536;
  const toolParser = opts.toolParser ?? true;
  const requests: any[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let requestIndex = 0;

  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  async function chatCompletion(body: any, res: http.ServerResponse): Promise<void> {
    if (body?.model !== model) {
      return sendError(res, 404, `The model \`${body?.model}\` does not exist.`, "NotFoundError", "model");
    }
    if (!Array.isArray(body.messages)) return sendError(res, 400, "messages: field required", "BadRequestError");
    const messages: any[] = body.messages;
    const firstUser = messages.find((m) => m?.role === "user");
    const ctx: FakeContext = {
      messages,
      body,
      requestIndex: requestIndex++,
      turn: messages.filter((m) => m?.role === "assistant").length,
      instruction: firstUser ? textOf(firstUser.content) : "",
    };
    const reply = await opts.reply(ctx);
    if (reply.delayMs) await wait(reply.delayMs);
    if (res.destroyed) return; // the client gave up (timeout or abort)
    if (reply.status && reply.status >= 400) {
      const headers = reply.retryAfterSec !== undefined ? { "retry-after": String(reply.retryAfterSec) } : undefined;
      return sendError(res, reply.status, reply.errorMessage ?? defaultErrorMessage(reply.status), errorType(reply.status), null, headers);
    }

    const prompt = tokenize(renderPrompt(messages, body.tools));
    const requested = body.max_tokens ?? body.max_completion_tokens;
    if (prompt.length >= maxModelLen) {
      return sendError(
        res,
        400,
        `This model's maximum context length is ${maxModelLen} tokens. However, your request has ${prompt.length} input tokens. Please reduce the length of the input messages.`,
        "BadRequestError",
      );
    }
    if (typeof requested === "number" && prompt.length + requested > maxModelLen) {
      return sendError(
        res,
        400,
        `'max_tokens' or 'max_completion_tokens' is too large: ${requested}. This model's maximum context length is ${maxModelLen} tokens and your request has ${prompt.length} input tokens (${requested} > ${maxModelLen} - ${prompt.length}).`,
        "BadRequestError",
      );
    }
    const maxTokens = typeof requested === "number" ? requested : maxModelLen - prompt.length;

    // Generate: cut at max_tokens like the engine would, else end with the EOS token.
    let completion = tokenize([generatedText(reply)]);
    let finishReason = reply.finishReason;
    if (completion.length > maxTokens) {
      completion = completion.slice(0, maxTokens);
      finishReason ??= "length";
    } else if (finishReason === undefined || finishReason === "stop" || finishReason === "tool_calls") {
      completion.push({ id: SPECIAL["<|im_end|>"]!, piece: "<|im_end|>" });
    }
    const text = completion
      .filter((t) => t.piece !== "<|im_end|>")
      .map((t) => t.piece)
      .join("");

    const message: Record<string, unknown> = { role: "assistant", content: text, tool_calls: [] };
    let answer = text;
    if (opts.reasoningField) {
      const end = text.lastIndexOf("</think>");
      if (end >= 0) {
        message[opts.reasoningField] = text.slice(0, end).replace(/^\s*<think>/, "").trim();
        answer = text.slice(end + "</think>".length).replace(/^\n+/, "");
        message.content = answer;
      } else {
        message[opts.reasoningField] = null;
      }
    }
    const calls = toolParser && Array.isArray(body.tools) && body.tools.length > 0 ? strictToolCalls(answer) : null;
    if (calls) {
      const before = answer.slice(0, answer.indexOf("<tool_call>"));
      message.content = before.trim() ? before : null;
      message.tool_calls = calls.map((c) => ({
        id: `chatcmpl-tool-${randomBytes(16).toString("hex")}`,
        type: "function",
        function: { name: c.name, arguments: JSON.stringify(c.args) },
      }));
      finishReason ??= "tool_calls";
    }
    finishReason ??= "stop";

    const choice: Record<string, unknown> = {
      index: 0,
      message,
      logprobs: body.logprobs
        ? {
            content: completion.map((t, i) => ({
              token: t.piece,
              logprob: fakeLogprob(i, t.id),
              bytes: [...Buffer.from(t.piece, "utf8")],
              top_logprobs: [],
            })),
          }
        : null,
      finish_reason: finishReason,
      stop_reason: null,
    };
    const response: Record<string, unknown> = {
      id: `chatcmpl-${randomBytes(16).toString("hex")}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [choice],
      usage: {
        prompt_tokens: prompt.length,
        completion_tokens: completion.length,
        total_tokens: prompt.length + completion.length,
        prompt_tokens_details: opts.cachedTokens === undefined ? null : { cached_tokens: Math.min(opts.cachedTokens, prompt.length) },
      },
      prompt_logprobs: null,
      kv_transfer_params: null,
    };
    if (body.return_token_ids && opts.tokenIds !== false) {
      response.prompt_token_ids = prompt.map((t) => t.id);
      choice.token_ids = completion.map((t) => t.id);
    }
    sendJson(res, 200, response);
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (raw += chunk));
    req.on("end", () => {
      void (async () => {
        if (opts.apiKey !== undefined && url.pathname.startsWith("/v1/") && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
          return sendJson(res, 401, { error: "Unauthorized" });
        }
        if (req.method === "GET" && url.pathname === "/health") return sendJson(res, 200, {});
        if (req.method === "GET" && url.pathname === "/v1/models") {
          return sendJson(res, 200, {
            object: "list",
            data: [
              {
                id: model,
                object: "model",
                created: Math.floor(Date.now() / 1000),
                owned_by: "vllm",
                root: model,
                parent: null,
                max_model_len: maxModelLen,
                permission: [],
              },
            ],
          });
        }
        if (req.method === "POST" && url.pathname === "/v1/chat/completions") {
          let body: any;
          try {
            body = JSON.parse(raw);
          } catch {
            return sendError(res, 400, "request body is not valid JSON", "BadRequestError");
          }
          requests.push(body);
          return chatCompletion(body, res);
        }
        sendJson(res, 404, { detail: "Not Found" });
      })().catch((err: unknown) => {
        if (!res.headersSent) sendError(res, 500, `fake vLLM failed: ${(err as Error)?.message ?? err}`, "InternalServerError");
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The text the scripted model "generates" for a reply. */
export function generatedText(reply: FakeReply): string {
  if (reply.raw !== undefined) return reply.raw;
  const thinking = reply.thinking !== undefined ? `${reply.thinking}</think>\n\n` : "";
  const calls = (reply.commands ?? []).map((command) => renderQwenXmlToolCall(reply.toolName ?? "bash", { command }));
  return thinking + (reply.text ?? "") + calls.join("\n");
}

// ---- errors -------------------------------------------------------------------------------------------

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** vLLM's error shape: `{ error: { message, type, param, code } }`. */
function sendError(
  res: http.ServerResponse,
  status: number,
  message: string,
  type: string,
  param: string | null = null,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, { error: { message, type, param, code: status } }, headers);
}

function errorType(status: number): string {
  if (status === 400) return "BadRequestError";
  if (status === 404) return "NotFoundError";
  if (status === 429) return "RateLimitError";
  if (status >= 500) return "InternalServerError";
  return "Error";
}

function defaultErrorMessage(status: number): string {
  if (status === 429) return "Too many requests, please retry later.";
  if (status === 503) return "The server is overloaded or not ready yet.";
  if (status >= 500) return "Internal server error.";
  return `Error ${status}.`;
}

// ---- vLLM's tool parser (strict: any malformed block means no tool_calls) -----------------------------

function strictToolCalls(text: string): { name: string; args: Record<string, string> }[] | null {
  const opens = text.split("<tool_call>").length - 1;
  if (opens === 0) return null;
  const block = /<tool_call>\s*<function=([\w.-]+)>([\s\S]*?)<\/function>\s*(?:<\/tool_call>|$)/g;
  const param = /<parameter=([\w.-]+)>\n?([\s\S]*?)\n?<\/parameter>/g;
  const calls: { name: string; args: Record<string, string> }[] = [];
  for (const m of text.matchAll(block)) {
    const args: Record<string, string> = {};
    for (const p of m[2]!.matchAll(param)) args[p[1]!] = p[2]!;
    if (Object.keys(args).length === 0) return null;
    calls.push({ name: m[1]!, args });
  }
  return calls.length === opens ? calls : null;
}

// ---- chat template and tokenizer ----------------------------------------------------------------------

/** Qwen-like special tokens and their ids (the real Qwen ids, for a familiar look). */
const SPECIAL: Record<string, number> = {
  "<|endoftext|>": 151643,
  "<|im_start|>": 151644,
  "<|im_end|>": 151645,
  "<tool_call>": 151657,
  "</tool_call>": 151658,
  "<tool_response>": 151665,
  "</tool_response>": 151666,
  "<think>": 151667,
  "</think>": 151668,
};
const SPECIAL_SPLIT = new RegExp(`(${Object.keys(SPECIAL).map((s) => s.replace(/[|<>/]/g, "\\$&")).join("|")})`);
// Word-ish pieces: a short word with its leading space, up to 3 digits, a run of spaces or newlines, any other char.
const PIECE = / ?[A-Za-z]{1,8}|[0-9]{1,3}| {1,8}|\n{1,4}|\s|[^\sA-Za-z0-9]/gu;

interface Token {
  id: number;
  piece: string;
}

/**
 * The prompt as segments that are tokenized one by one (so a message's tokens never depend on its
 * neighbours): the same idea as a real template, where special tokens and message boundaries split text.
 */
export function renderPrompt(messages: any[], tools?: any[]): string[] {
  const out: string[] = [];
  const toolBlock =
    Array.isArray(tools) && tools.length > 0
      ? `\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n<tools>\n${tools.map((t) => JSON.stringify(t.function ?? t)).join("\n")}\n</tools>`
      : "";
  const first = messages[0];
  if (toolBlock && first?.role !== "system") out.push("<|im_start|>system\n", toolBlock.trimStart(), "<|im_end|>\n");
  for (const m of messages) {
    switch (m?.role) {
      case "system":
        out.push("<|im_start|>system\n", textOf(m.content) + (m === first ? toolBlock : ""), "<|im_end|>\n");
        break;
      case "user":
        out.push("<|im_start|>user\n", textOf(m.content), "<|im_end|>\n");
        break;
      case "assistant": {
        // Rendered as the text the model generated: content, then its calls as XML.
        let content = textOf(m.content);
        if (content.startsWith("<think>\n")) content = content.slice("<think>\n".length); // the prompt opened it
        const calls = (m.tool_calls ?? []).map((c: any) => renderQwenXmlToolCall(c.function.name, safeJson(c.function.arguments)));
        out.push("<|im_start|>assistant\n<think>\n", content + calls.join("\n"), "<|im_end|>", "\n");
        break;
      }
      case "tool":
        out.push("<|im_start|>user\n<tool_response>\n", textOf(m.content), "\n</tool_response><|im_end|>\n");
        break;
      default:
        out.push(`<|im_start|>${m?.role}\n`, textOf(m?.content), "<|im_end|>\n");
    }
  }
  out.push("<|im_start|>assistant\n<think>\n"); // generation prompt, thinking on
  return out;
}

export function tokenize(segments: string[]): Token[] {
  const tokens: Token[] = [];
  for (const segment of segments) {
    for (const part of segment.split(SPECIAL_SPLIT)) {
      if (!part) continue;
      const special = SPECIAL[part];
      if (special !== undefined) {
        tokens.push({ id: special, piece: part });
        continue;
      }
      for (const m of part.matchAll(PIECE)) tokens.push({ id: 1000 + (fnv1a(m[0]) % 150_000), piece: m[0] });
    }
  }
  return tokens;
}

function fakeLogprob(position: number, id: number): number {
  return -((fnv1a(`${position}:${id}`) % 3001) / 1000);
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, "utf8")) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p?.text === "string" ? p.text : "")).join("");
  return "";
}

function safeJson(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { arguments: text };
  }
}
