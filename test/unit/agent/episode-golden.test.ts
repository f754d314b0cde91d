// The episode loop's output, pinned: both protocols (chat completions for eval and train, token-in/token-out
// for train) run scripted episodes against the local stand-in servers (test/support/fake-vllm.ts,
// test/support/vllm-tokens.ts with the real Qwen tokenizer) on the local sandbox, and the trajectories, token
// streams and events must equal test/fixtures/agent/episode-golden.json (captured before the two loops became
// one). Only what varies per run is normalized: times, durations, ports, sandbox ids, the server's random call
// ids. Regenerate deliberately with TMAX_WRITE_GOLDEN=1 after a change meant to alter the output.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { runEpisode } from "../../../src/agent/chatProtocol.js";
import type { AgentEvent, AgentLimits } from "../../../src/agent/loop.js";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { appendTestReport, runTokenEpisode, testReport } from "../../../src/agent/tokenProtocol.js";
import { createModelClient, modelConfigFromOptions } from "../../../src/model/client.js";
import { renderQwenXmlToolCall } from "../../../src/model/qwenXml.js";
import type { Profile } from "../../../src/model/types.js";
import { createTokenClient } from "../../../src/model/tokens.js";
import { localBackend } from "../../../src/sandbox/local/backend.js";
import type { Sandbox } from "../../../src/sandbox/types.js";
import { ROOT } from "../../support/env.js";
import { startFakeVllm, type FakeReply } from "../../support/fake-vllm.js";
import { startTokenVllm, type ScriptedTurn } from "../../support/vllm-tokens.js";

const GOLDEN = path.join(ROOT, "test/fixtures/agent/episode-golden.json");
const backend = localBackend({ unsafe: true });
const call = (command: string, name = "bash") => renderQwenXmlToolCall(name, { command });

async function withSandbox<T>(fn: (sb: Sandbox) => Promise<T>): Promise<T> {
  const sb = await backend.create({ image: "local", name: "golden" });
  try {
    return await fn(sb);
  } finally {
    await sb.remove();
  }
}

/** Everything that differs between runs replaced by a stable stand-in; everything else kept as is. */
function normalize(value: unknown, sandboxId: string): unknown {
  const ids = new Map<string, string>();
  const text = JSON.stringify(value)
    .replaceAll(sandboxId, "SANDBOX")
    .replace(/http:\/\/127\.0\.0\.1:\d+/g, "http://127.0.0.1:PORT")
    .replace(/chatcmpl-tool-[0-9a-f]+/g, (id) => (ids.has(id) ? ids.get(id)! : (ids.set(id, `TOOLCALL${ids.size}`), ids.get(id)!)));
  return JSON.parse(text, (key, v) => {
    if (key === "startedAt" || key === "finishedAt") return "TIME";
    if (key === "durationMs" || key === "latencyMs") return 0;
    return v;
  });
}

interface ChatCase {
  name: string;
  profile: Profile;
  script: FakeReply[];
  limits?: Partial<AgentLimits>;
  maxModelLen?: number;
  abort?: boolean;
}

const CHAT: ChatCase[] = [
  {
    name: "eval: no call, a non-bash call, a failing command, then submit",
    profile: "eval",
    script: [
      { text: "THOUGHT: thinking only" },
      { text: "THOUGHT: wrong tool", commands: ["print(1)"], toolName: "python" },
      { text: "THOUGHT: look", commands: ["echo out; echo err >&2; exit 3"] },
      { text: "THOUGHT: done", commands: [`echo ${SUBMIT_MARKER}`] },
    ],
  },
  { name: "eval: format errors in a row end it", profile: "eval", script: [{ text: "no call" }], limits: { maxFormatErrors: 2 } },
  { name: "eval: the server's context-length error", profile: "eval", script: [{ text: "x", commands: ["echo hi"] }], maxModelLen: 40 },
  { name: "eval: aborted by a timeout", profile: "eval", script: [{ text: "x", commands: ["echo hi"] }], abort: true },
  {
    name: "train: several calls a turn, submit in the middle of one",
    profile: "train",
    script: [
      { text: "THOUGHT: two", commands: ["echo one", "printf 'two  \\n\\n'"] },
      { text: "THOUGHT: three", commands: ["echo x", `echo ${SUBMIT_MARKER}`, "echo after"] },
    ],
  },
  { name: "train: step limit", profile: "train", script: [{ text: "again", commands: ["echo again"] }], limits: { maxSteps: 2 } },
  { name: "train: a turn without a call ends it", profile: "train", script: [{ text: "THOUGHT: nothing to run" }] },
  { name: "train: a non-bash call ends it", profile: "train", script: [{ text: "x", commands: ["ls"], toolName: "shell" }] },
  { name: "train: the token budget", profile: "train", script: [{ text: "word ".repeat(200), commands: ["echo hi"] }], limits: { maxTotalTokens: 300 } },
  { name: "train: a reply cut by the token budget", profile: "train", script: [{ text: "word ".repeat(400) }], limits: { maxTotalTokens: 300 } },
];

interface TokenCase {
  name: string;
  script: ScriptedTurn[];
  limits?: Partial<AgentLimits>;
  maxModelLen?: number;
  report?: boolean;
}

const TOKENS: TokenCase[] = [
  {
    name: "tokens: several calls, an empty command, a foreign tool, submit in the middle, then the test report",
    script: [
      { pieces: ["Let me look.", "</think>", "\n\n", "THOUGHT: print", " h", "ello", "\n", call("echo hello; printf 'tail  \\n\\n'"), "\n", call("echo err >&2; exit 2")] },
      { text: `odd ones</think>\n\n${call("")}\n${call("ls", "python")}\n${call("echo fine")}` },
      { text: `done</think>\n\n${call("echo before")}\n${call(`echo ${SUBMIT_MARKER}`)}\n${call("echo after")}` },
    ],
    report: true,
  },
  { name: "tokens: the step cap cuts a turn's calls", script: [{ text: `go</think>\n\n${call("echo a")}\n${call("echo b")}` }], limits: { maxSteps: 3 } },
  { name: "tokens: a turn without a call ends it", script: [{ text: "nothing</think>\n\nTHOUGHT: no call" }] },
  { name: "tokens: an unparsable call ends it", script: [{ text: "bad</think>\n\n<tool_call>\n<function=bash>\n<parameter=command>\necho" }] },
  { name: "tokens: an observation cut to fit max_model_len", script: [{ text: `flood</think>\n\n${call("seq 1 3000")}` }], maxModelLen: 1200 },
  { name: "tokens: the server fails", script: [{ status: 500, errorMessage: "engine died" }] },
];

async function chatEpisode(c: ChatCase): Promise<unknown> {
  const server = await startFakeVllm({ reply: (ctx) => c.script[Math.min(ctx.turn, c.script.length - 1)]!, ...(c.maxModelLen ? { maxModelLen: c.maxModelLen } : {}) });
  try {
    const model = createModelClient(modelConfigFromOptions({ baseUrl: server.baseUrl, profile: c.profile, maxRetries: 0 }));
    const events: AgentEvent[] = [];
    const signal = c.abort ? AbortSignal.abort(new DOMException("t", "TimeoutError")) : undefined;
    return await withSandbox(async (sandbox) => {
      const trajectory = await runEpisode({ taskName: "t", instruction: "Do it.", model, sandbox, profile: c.profile, limits: c.limits, signal, onEvent: (e) => events.push(e) });
      return normalize({ trajectory, events }, sandbox.id);
    });
  } finally {
    await server.close();
  }
}

async function tokenEpisode(c: TokenCase): Promise<unknown> {
  const server = await startTokenVllm({ complete: (ctx) => c.script[Math.min(ctx.index, c.script.length - 1)]!, ...(c.maxModelLen ? { maxModelLen: c.maxModelLen } : {}) });
  try {
    const tokens = createTokenClient({ baseUrl: server.baseUrl, model: "tmax-9b", timeoutMs: 30_000, maxRetries: 0 });
    const events: AgentEvent[] = [];
    return await withSandbox(async (sandbox) => {
      const { trajectory, stream } = await runTokenEpisode({ taskName: "t", instruction: "Do it.", tokens, sandbox, limits: c.limits, seed: 3, onEvent: (e) => events.push(e) });
      if (c.report) await appendTestReport(stream, tokens, testReport({ stdout: "1 passed\n", stderr: "", exitCode: 0 }, 1, 120));
      return normalize({ trajectory, stream, events, completions: server.completions.map((x) => ({ prompt: x.promptIds.length, maxTokens: x.body.max_tokens })) }, sandbox.id);
    });
  } finally {
    await server.close();
  }
}

test("both protocols' trajectories, token streams and events equal the golden capture", { timeout: 180_000 }, async () => {
  const actual: Record<string, unknown> = {};
  for (const c of CHAT) actual[c.name] = await chatEpisode(c);
  for (const c of TOKENS) actual[c.name] = await tokenEpisode(c);
  if (process.env.TMAX_WRITE_GOLDEN === "1") writeFileSync(GOLDEN, `${JSON.stringify(actual, null, 1)}\n`);
  const golden = JSON.parse(readFileSync(GOLDEN, "utf8")) as Record<string, unknown>;
  assert.deepEqual(Object.keys(actual), Object.keys(golden));
  // as text, so that the order of every object's keys counts too
  for (const name of Object.keys(golden)) assert.equal(JSON.stringify(actual[name], null, 1), JSON.stringify(golden[name], null, 1), name);
  // the capture covers every ending the loops have
  const statuses = new Set(Object.values(golden).map((g) => (g as { trajectory: { exitStatus: string } }).trajectory.exitStatus));
  assert.deepEqual([...statuses].sort(), ["error", "format_errors", "step_limit", "submitted", "timeout", "token_limit"]);
});

// The one deliberate difference of the single loop: the token protocol's observations go through the same
// secret redaction as chat's (the token loop used to skip it), so a known secret never enters a training record.
test("tokens: a known secret printed by a command is redacted in the observation and in the wrapper's ids", { timeout: 60_000 }, async () => {
  const secret = "tmax-golden-secret-4f1c9a";
  const server = await startTokenVllm({ complete: () => ({ text: `x</think>\n\n${call(`echo ${secret}`)}` }) });
  try {
    // the client registers its API key as a known secret, as a real run does
    const tokens = createTokenClient({ baseUrl: server.baseUrl, model: "tmax-9b", apiKey: secret, timeoutMs: 30_000, maxRetries: 0 });
    const { trajectory } = await withSandbox((sandbox) => runTokenEpisode({ taskName: "t", instruction: "Leak it.", tokens, sandbox, limits: { maxSteps: 1 } }));
    assert.equal(trajectory.exitStatus, "step_limit", trajectory.error);
    assert.equal(trajectory.steps[0]!.executions![0]!.observation, "***\n\n\n(exit_code=0)");
    const wrappers = server.tokenizeRequests.filter((r) => typeof r.prompt === "string").map((r) => String(r.prompt));
    assert.equal(wrappers.length, 1);
    assert.ok(!wrappers[0]!.includes(secret) && wrappers[0]!.includes("***"));
    // (the model's own command still names it: that text is the model's, as in chat's trajectories)
    const toolMessages = trajectory.messages.filter((m) => m.role === "tool").map((m) => String(m.content));
    assert.deepEqual(toolMessages, ["***\n\n\n(exit_code=0)"]);
  } finally {
    await server.close();
  }
});
