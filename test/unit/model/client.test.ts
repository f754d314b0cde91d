// The model client against the scripted vLLM server (real HTTP on 127.0.0.1).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { createModelClient, modelConfigFromOptions, BASH_TOOL } from "../../../src/model/client.js";
import { ModelError, type ChatMessage, type ModelConfig } from "../../../src/model/types.js";
import { startFakeVllm, type FakeReply, type FakeVllmOptions } from "../../support/fake-vllm.js";

const SYSTEM: ChatMessage = { role: "system", content: "You operate a Linux computer." };
const USER: ChatMessage = { role: "user", content: "Solve this task: list /app" };

async function withServer(
  t: { after: (fn: () => Promise<void>) => void },
  opts: Partial<FakeVllmOptions> & { reply: FakeVllmOptions["reply"] },
) {
  const server = await startFakeVllm(opts);
  t.after(() => server.close());
  return server;
}

function config(baseUrl: string, extra: Partial<ModelConfig> = {}): ModelConfig {
  return modelConfigFromOptions({ baseUrl, retryBaseMs: 20, ...extra });
}

/** Reply from a fixed script, one entry per request. */
function script(...replies: FakeReply[]): FakeVllmOptions["reply"] {
  return ({ requestIndex }) => replies[Math.min(requestIndex, replies.length - 1)]!;
}

test("tool_calls mode: calls come from the parser, thinking stays in the history message", async (t) => {
  const server = await withServer(t, {
    reply: script({ thinking: "I should look at /app.", text: "THOUGHT: list it.\n", commands: ["ls -la /app"] }),
  });
  const client = createModelClient(config(server.baseUrl));
  const turn = await client.complete([SYSTEM, USER]);
  assert.equal(turn.toolCalls.length, 1);
  const [call] = turn.toolCalls;
  assert.equal(call!.source, "tool_calls");
  assert.equal(call!.name, "bash");
  assert.deepEqual(call!.arguments, { command: "ls -la /app" });
  assert.match(call!.id, /^chatcmpl-tool-[0-9a-f]+$/);
  assert.equal(turn.content, "I should look at /app.</think>\n\nTHOUGHT: list it.\n");
  assert.equal(turn.message.content, turn.content);
  assert.deepEqual(turn.message.tool_calls, [
    { id: call!.id, type: "function", function: { name: "bash", arguments: JSON.stringify({ command: "ls -la /app" }) } },
  ]);
  assert.equal(turn.finishReason, "tool_calls");
  assert.deepEqual(turn.parseErrors, []);
  assert.equal(turn.retries, 0);
  assert.ok(turn.usage.promptTokens > 10 && turn.usage.completionTokens > 5, JSON.stringify(turn.usage));
  assert.ok(turn.latencyMs >= 0);

  // The request is what vLLM needs: one bash tool, sampling of the eval profile, max_tokens.
  const body = server.requests[0];
  assert.equal(body.model, "tmax-9b");
  assert.deepEqual(body.tools, [BASH_TOOL]);
  assert.equal(body.tools[0].function.parameters.required[0], "command");
  assert.equal(body.temperature, 0.7);
  assert.equal(body.top_p, 0.95);
  assert.equal(body.max_tokens, 16384);
  assert.equal(body.logprobs, undefined);
  assert.equal(body.return_token_ids, undefined);
});

test("raw XML mode (parser off): calls parsed from content, message has no tool_calls", async (t) => {
  const server = await withServer(t, {
    toolParser: false,
    reply: script({ thinking: "plan", text: "THOUGHT: two steps.\n", commands: ["cd /app", "cat <<'EOF' > a.html\n<div>a < b</div>\nEOF"] }),
  });
  const client = createModelClient(config(server.baseUrl));
  const turn = await client.complete([SYSTEM, USER]);
  assert.deepEqual(
    turn.toolCalls.map((c) => [c.id, c.source, c.arguments.command]),
    [
      ["call_xml_1", "xml", "cd /app"],
      ["call_xml_2", "xml", "cat <<'EOF' > a.html\n<div>a < b</div>\nEOF"],
    ],
  );
  assert.ok(turn.content.startsWith("plan</think>\n\nTHOUGHT: two steps.\n<tool_call>\n<function=bash>"));
  assert.equal(turn.message.content, turn.content);
  assert.equal(turn.message.tool_calls, undefined);
  assert.equal(turn.finishReason, "stop");
});

test("malformed XML with the parser on: falls back to content and reports the parse error", async (t) => {
  const server = await withServer(t, {
    reply: script({ raw: "Let me run it.\n<tool_call>\n<function=bash>\n</function>\n</tool_call>" }),
  });
  const turn = await createModelClient(config(server.baseUrl)).complete([SYSTEM, USER]);
  assert.deepEqual(turn.toolCalls, []);
  assert.equal(turn.parseErrors.length, 1);
  assert.match(turn.parseErrors[0]!, /has no <parameter=/);
  assert.equal(turn.message.tool_calls, undefined);
});

test("truncated output: finish_reason length, the cut call is not executed", async (t) => {
  const server = await withServer(t, { reply: script({ commands: ["echo " + "word ".repeat(200)] }) });
  const turn = await createModelClient(config(server.baseUrl)).complete([SYSTEM, USER], { maxTokens: 30 });
  assert.equal(server.requests[0].max_tokens, 30);
  assert.equal(turn.finishReason, "length");
  assert.equal(turn.usage.completionTokens, 30);
  assert.deepEqual(turn.toolCalls, []);
  assert.match(turn.parseErrors[0]!, /not closed/);
});

test("separate reasoning field is kept and put back as <think> in the history message", async (t) => {
  for (const field of ["reasoning_content", "reasoning"] as const) {
    const server = await withServer(t, {
      reasoningField: field,
      reply: script({ thinking: "Look first.", text: "THOUGHT: ok.\n", commands: ["pwd"] }),
    });
    const turn = await createModelClient(config(server.baseUrl)).complete([SYSTEM, USER]);
    assert.equal(turn.reasoning, "Look first.", field);
    assert.equal(turn.content, "THOUGHT: ok.\n");
    assert.equal(turn.message.content, "<think>\nLook first.\n</think>\n\nTHOUGHT: ok.\n");
    assert.equal(turn.toolCalls[0]!.arguments.command, "pwd");
  }
});

test("bad JSON arguments from the server become a parse error, not a call", async (t) => {
  // A server that answers with broken arguments (the fake renders valid ones, so answer by hand here).
  const http = await import("node:http");
  const srv = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id: "x",
        object: "chat.completion",
        created: 0,
        model: "tmax-9b",
        choices: [
          {
            index: 0,
            finish_reason: "tool_calls",
            message: {
              role: "assistant",
              content: null,
              tool_calls: [{ id: "t1", type: "function", function: { name: "bash", arguments: "{\"command\": \"ls" } }],
            },
          },
        ],
        usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      }),
    );
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  const { port } = srv.address() as net.AddressInfo;
  const turn = await createModelClient(config(`http://127.0.0.1:${port}/v1`)).complete([USER]);
  assert.deepEqual(turn.toolCalls, []);
  assert.match(turn.parseErrors[0]!, /arguments of bash are not a JSON object/);
  assert.equal(turn.message.content, "");
  assert.equal(turn.message.tool_calls?.length, 1);
  assert.deepEqual(turn.usage, { promptTokens: 3, completionTokens: 4 });
});

test("429 then success: one retry counted, backoff observed", async (t) => {
  const server = await withServer(t, { reply: script({ status: 429 }, { commands: ["ls"] }) });
  const started = Date.now();
  const turn = await createModelClient(config(server.baseUrl, { retryBaseMs: 60 })).complete([SYSTEM, USER]);
  const elapsed = Date.now() - started;
  assert.equal(turn.retries, 1);
  assert.equal(server.requests.length, 2);
  assert.ok(elapsed >= 30, `backoff of at least half the base delay, took ${elapsed} ms`);
  assert.equal(turn.toolCalls[0]!.arguments.command, "ls");
});

test("Retry-After is honoured", async (t) => {
  const server = await withServer(t, { reply: script({ status: 429, retryAfterSec: 0.4 }, { commands: ["ls"] }) });
  const started = Date.now();
  const turn = await createModelClient(config(server.baseUrl, { retryBaseMs: 1 })).complete([USER]);
  assert.equal(turn.retries, 1);
  assert.ok(Date.now() - started >= 390, "waited as the server asked");
});

test("500 twice then success: two retries", async (t) => {
  const server = await withServer(t, { reply: script({ status: 500 }, { status: 503 }, { commands: ["ls"] }) });
  const turn = await createModelClient(config(server.baseUrl)).complete([SYSTEM, USER]);
  assert.equal(turn.retries, 2);
  assert.equal(server.requests.length, 3);
});

test("retries exhausted: ModelError with status, one line", async (t) => {
  const server = await withServer(t, { reply: () => ({ status: 503, errorMessage: "engine\nis busy" }) });
  const client = createModelClient(config(server.baseUrl, { maxRetries: 2 }));
  const err = await client.complete([USER]).then(
    () => assert.fail("expected an error"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "http");
  assert.equal(err.status, 503);
  assert.equal(server.requests.length, 3);
  assert.ok(!err.message.includes("\n"), err.message);
  assert.match(err.message, /answered 503: engine is busy \(gave up after 2 retries\)/);
});

test("4xx other than 429 is not retried", async (t) => {
  const server = await withServer(t, { reply: () => ({ status: 422, errorMessage: "bad field" }) });
  const err = await createModelClient(config(server.baseUrl)).complete([USER]).catch((e: unknown) => e);
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "http");
  assert.equal(server.requests.length, 1);
});

test("unreachable port: ModelError kind unreachable, one line, names the URL", async () => {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}/v1`;
  const client = createModelClient(config(baseUrl, { maxRetries: 1, retryBaseMs: 5 }));
  const err = await client.complete([USER]).catch((e: unknown) => e);
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "unreachable");
  assert.ok(!err.message.includes("\n"));
  assert.match(err.message, new RegExp(`^cannot reach model server at ${baseUrl.replace(/[.]/g, "\\.")} \\(ECONNREFUSED\\)`));
  assert.match(err.message, /is vLLM running\? check --base-url/);
  const listErr = await client.listModels().catch((e: unknown) => e);
  assert.ok(listErr instanceof ModelError && listErr.kind === "unreachable");
});

test("request timeout: retried, then ModelError kind timeout", async (t) => {
  const server = await withServer(t, { reply: () => ({ delayMs: 2000, commands: ["ls"] }) });
  const client = createModelClient(config(server.baseUrl, { timeoutMs: 150, maxRetries: 1 }));
  const err = await client.complete([USER]).catch((e: unknown) => e);
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "timeout");
  assert.equal(server.requests.length, 2);
});

test("abort stops at once, also during backoff", async (t) => {
  const server = await withServer(t, { reply: () => ({ status: 503 }) });
  const client = createModelClient(config(server.baseUrl, { retryBaseMs: 10_000 }));
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(new Error("stop now")), 100);
  const err = await client.complete([USER], { signal: controller.signal }).catch((e: unknown) => e);
  assert.ok(Date.now() - started < 2000, "did not wait for the backoff");
  assert.ok(!(err instanceof ModelError));
  assert.equal((err as Error).message, "stop now");

  const slow = await withServer(t, { reply: () => ({ delayMs: 5000, commands: ["ls"] }) });
  const c2 = new AbortController();
  setTimeout(() => c2.abort(), 100);
  const t0 = Date.now();
  await assert.rejects(createModelClient(config(slow.baseUrl)).complete([USER], { signal: c2.signal }));
  assert.ok(Date.now() - t0 < 2000);
});

test("wrong model name: model_not_found lists what is served", async (t) => {
  const server = await withServer(t, { model: "tmax-9b", reply: script({ commands: ["ls"] }) });
  const client = createModelClient(config(server.baseUrl, { model: "qwen-72b" }));
  const err = await client.complete([USER]).catch((e: unknown) => e);
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "model_not_found");
  assert.equal(err.status, 404);
  assert.equal(err.message, `model 'qwen-72b' is not served at ${server.baseUrl}; served: tmax-9b`);
});

test("base URL without /v1: 404 explained", async (t) => {
  const server = await withServer(t, { reply: script({ commands: ["ls"] }) });
  const err = await createModelClient(config(server.baseUrl.replace(/\/v1$/, ""))).complete([USER]).catch((e: unknown) => e);
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "http");
  assert.match(err.message, /answered 404 \(Not Found\) — check --base-url/);
});

test("context too long: kind context_length; max_tokens is min(config, per-call)", async (t) => {
  const server = await withServer(t, { maxModelLen: 400, reply: script({ commands: ["ls"] }) });
  const client = createModelClient(config(server.baseUrl, { maxTokens: 100 }));
  const ok = await client.complete([USER], { maxTokens: 150 });
  assert.equal(server.requests[0].max_tokens, 100);
  assert.equal(ok.toolCalls.length, 1);
  const err = await client.complete([USER, { role: "user", content: "word ".repeat(300) }]).catch((e: unknown) => e);
  assert.ok(err instanceof ModelError);
  assert.equal(err.kind, "context_length");
  assert.equal(err.status, 400);
  assert.match(err.message, /maximum context length is 400 tokens/);
  const none = await client.complete([USER], { maxTokens: 0 }).catch((e: unknown) => e);
  assert.ok(none instanceof ModelError && none.kind === "context_length");
});

test("logprobs and token ids: parsed, aligned, and prefix-consistent across turns", async (t) => {
  const server = await withServer(t, {
    reply: ({ turn }) => ({ thinking: `step ${turn}`, text: "THOUGHT: go.\n", commands: [`echo ${turn}`] }),
  });
  const client = createModelClient(config(server.baseUrl, { logprobs: true, tokenIds: true, extraBody: { seed: 7 } }));
  const history: ChatMessage[] = [SYSTEM, USER];
  const first = await client.complete(history);
  const body = server.requests[0];
  assert.equal(body.logprobs, true);
  assert.equal(body.return_token_ids, true);
  assert.equal(body.seed, 7);
  assert.ok(first.logprobs && first.promptTokenIds && first.completionTokenIds);
  assert.equal(first.logprobs.length, first.usage.completionTokens);
  assert.equal(first.completionTokenIds.length, first.usage.completionTokens);
  assert.equal(first.promptTokenIds.length, first.usage.promptTokens);
  assert.ok(first.logprobs.every((l) => typeof l.token === "string" && l.logprob <= 0 && l.logprob >= -3));
  assert.ok(first.promptTokenIds.every((id) => Number.isInteger(id)));

  history.push(first.message, { role: "tool", tool_call_id: first.toolCalls[0]!.id, content: "0\n\n(exit_code=0)" });
  const second = await client.complete(history);
  const prefix = [...first.promptTokenIds, ...first.completionTokenIds];
  assert.deepEqual(second.promptTokenIds!.slice(0, prefix.length), prefix);
  assert.ok(second.promptTokenIds!.length > prefix.length);

  // Same conversation, same ids: the fake tokenizer is deterministic.
  const again = await client.complete([SYSTEM, USER]);
  assert.deepEqual(again.promptTokenIds, first.promptTokenIds);
  assert.deepEqual(again.logprobs, first.logprobs);
});

test("listModels reports ids and max_model_len", async (t) => {
  const server = await withServer(t, { model: "tmax-9b", maxModelLen: 65536, reply: script({}) });
  const models = await createModelClient(config(server.baseUrl)).listModels();
  assert.deepEqual(models, [{ id: "tmax-9b", maxModelLen: 65536 }]);
});

test("the API key is sent but never appears in an error message", async (t) => {
  const key = "sk-test-very-secret-0123456789";
  const server = await withServer(t, {
    apiKey: key,
    reply: ({ body }) => ({ status: 400, errorMessage: `bad request from key ${key} for ${body.model}` }),
  });
  const good = createModelClient(config(server.baseUrl, { apiKey: key, maxRetries: 0 }));
  const echoed = await good.complete([USER]).catch((e: unknown) => e);
  assert.ok(echoed instanceof ModelError);
  assert.equal(server.requests.length, 1, "the key was accepted");
  assert.ok(!echoed.message.includes(key), echoed.message);
  assert.match(echoed.message, /bad request from key \*\*\* for tmax-9b/);

  const errors: unknown[] = [echoed];
  const wrong = createModelClient(config(server.baseUrl, { apiKey: `${key}-wrong`, maxRetries: 0 }));
  errors.push(await wrong.complete([USER]).catch((e: unknown) => e));
  errors.push(await wrong.listModels().catch((e: unknown) => e));
  const port = await freePort();
  errors.push(await createModelClient(config(`http://127.0.0.1:${port}/v1`, { apiKey: key, maxRetries: 0 })).complete([USER]).catch((e: unknown) => e));
  errors.push(await createModelClient(config(server.baseUrl, { apiKey: key, model: "nope", maxRetries: 0 })).complete([USER]).catch((e: unknown) => e));
  for (const e of errors) {
    assert.ok(e instanceof ModelError, String(e));
    assert.ok(!e.message.includes(key) && !String(e.stack).includes(key), e.message);
  }
  assert.match((errors[1] as ModelError).message, /rejected the API key \(401/);
  assert.equal((errors[4] as ModelError).kind, "model_not_found");
});

test("apiKey default comes from TMAX_API_KEY, then OPENAI_API_KEY, then EMPTY", async (t) => {
  const seen: string[] = [];
  const http = await import("node:http");
  const srv = http.createServer((req, res) => {
    seen.push(String(req.headers.authorization));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "list", data: [] }));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  const baseUrl = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/v1`;
  const saved = { tmax: process.env.TMAX_API_KEY, openai: process.env.OPENAI_API_KEY };
  t.after(() => {
    restore("TMAX_API_KEY", saved.tmax);
    restore("OPENAI_API_KEY", saved.openai);
  });
  process.env.TMAX_API_KEY = "tmax-key-1";
  process.env.OPENAI_API_KEY = "openai-key-2";
  await createModelClient(config(baseUrl)).listModels();
  delete process.env.TMAX_API_KEY;
  await createModelClient(config(baseUrl)).listModels();
  delete process.env.OPENAI_API_KEY;
  await createModelClient(config(baseUrl)).listModels();
  assert.deepEqual(seen, ["Bearer tmax-key-1", "Bearer openai-key-2", "Bearer EMPTY"]);
});

test("modelConfigFromOptions fills defaults from the profile and rejects bad values in one line", () => {
  const evalCfg = modelConfigFromOptions({});
  assert.deepEqual(evalCfg, {
    baseUrl: "http://localhost:8008/v1",
    model: "tmax-9b",
    temperature: 0.7,
    topP: 0.95,
    maxTokens: 16384,
    timeoutMs: 3_600_000, // at least an hour: a 16k-token turn on a busy server can take long
    maxRetries: 5,
    logprobs: false,
    tokenIds: false,
  });
  const train = modelConfigFromOptions({ profile: "train", temperature: undefined, maxTokens: 100 });
  assert.equal(train.temperature, 1.0);
  assert.equal(train.topP, 1.0);
  assert.equal(train.maxTokens, 100);
  assert.equal(modelConfigFromOptions({ profile: "train", temperature: 0.3 }).temperature, 0.3);
  assert.throws(() => modelConfigFromOptions({ baseUrl: "localhost:8008" }), /^Error: invalid model option baseUrl: must be an http\(s\) URL, got "localhost:8008"$/);
  assert.throws(() => modelConfigFromOptions({ maxTokens: 0 }), /invalid model option maxTokens/);
});

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

/** A port nothing listens on: bind one, then release it. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
