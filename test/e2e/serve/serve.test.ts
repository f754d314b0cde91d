// `tmax serve` in real podman containers: harness sessions give byte for byte what `tmax run` gives with the
// same scripted model (eval: chat messages; train: token streams via a vLLM stand-in with the real Qwen
// tokenizer); OpenEnv's message shapes; shutdown and kill -9 leave nothing `tmax sandbox prune` cannot remove;
// a short soak (12 sessions, random disconnects, concurrent steps) leaves 0 containers and loses no reward.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { observationWrapper } from "../../../src/agent/tokenProtocol.js";
import { renderQwenXmlToolCall } from "../../../src/model/qwenXml.js";
import { createTokenClient } from "../../../src/model/tokens.js";
import { ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";
import { startFakeVllm, type FakeReply } from "../../support/fake-vllm.js";
import { containersOfJob, soak, startTestServe, WsSession } from "../../support/serve.js";
import { encode, startTokenVllm, type ScriptedTurn } from "../../support/vllm-tokens.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-serve-it-"));
after(() => rm(tmp, { recursive: true, force: true }));
const HELLO = path.join(EXAMPLES, "hello-file");

/** `tmax run` as a user runs it (a child process: the model stand-in answers from this one); returns its trajectory. */
async function tmaxRun(args: string[], out: string): Promise<any> {
  const r = await run(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "run", "--task", HELLO, "--out", out, ...args]);
  assert.equal(r.status, 0, r.out);
  const trial = readdirSync(out).find((d) => d.startsWith("hello-file__"))!;
  return JSON.parse(readFileSync(path.join(out, trial, "agent", "tmax-trajectory.json"), "utf8"));
}

/** Runs a command without blocking this process's event loop (the servers it talks to live here). */
function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (status) => resolve({ status, out }));
  });
}

/** Tool-call ids are the model server's random choice: equal up to renaming. */
function normalizeIds(messages: any[]): any[] {
  const ids = new Map<string, string>();
  const id = (x: string) => (ids.has(x) ? ids.get(x)! : (ids.set(x, `id${ids.size}`), `id${ids.size - 1}`));
  return messages.map((m) => ({
    ...m,
    ...(m.tool_call_id ? { tool_call_id: id(m.tool_call_id) } : {}),
    ...(m.tool_calls ? { tool_calls: m.tool_calls.map((c: any) => ({ ...c, id: id(c.id) })) } : {}),
  }));
}

describe("tmax serve: harness sessions are tmax run", { skip: ENGINE_SKIP }, () => {
  test("eval: a trainer answering with its model's messages gets exactly tmax run's conversation and reward", async () => {
    // a format error, stderr, a long output (cut), the solution, the submit marker
    const script: FakeReply[] = [
      { thinking: "Look first.", text: "THOUGHT: list it.", commands: ["ls -a /app; echo to-stderr >&2"] },
      { text: "THOUGHT: I forgot the call." },
      { text: "THOUGHT: a long listing.", commands: ["seq 1 4000"] },
      { commands: ["printf 'Hello, tmax!\\n' > /app/hello.txt && cat /app/hello.txt"] },
      { commands: [`echo ${SUBMIT_MARKER}`] },
    ];
    const vllm = await startFakeVllm({ reply: (ctx) => script[ctx.turn] ?? { text: "done" } });
    const serve = await startTestServe({ dataset: EXAMPLES });
    try {
      const reference = await tmaxRun(["--base-url", vllm.baseUrl, "--profile", "eval"], path.join(tmp, "run-eval"));
      assert.equal(reference.exitStatus, "submitted");

      const s = await WsSession.open(serve.wsUrl);
      const reset = await s.reset({ task_id: "hello-file", action_set: "harness", profile: "eval" });
      assert.equal(reset.type, "observation", JSON.stringify(reset.data));
      let messages: any[] = reset.data.observation.messages;
      const tools = reset.data.observation.tools;
      let last: any;
      for (;;) {
        // the trainer's own model call, with what the environment gave it
        const res = await fetch(`${vllm.baseUrl}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tmax-9b", messages, tools, temperature: 0.7 }) });
        const choice = ((await res.json()) as any).choices[0];
        last = await s.step({ message: choice.message, finish_reason: choice.finish_reason });
        assert.equal(last.type, "observation", JSON.stringify(last.data));
        messages = [...messages, ...last.data.observation.messages];
        if (last.data.done) break;
      }
      s.close();
      assert.deepEqual(normalizeIds(messages), normalizeIds(reference.messages));
      assert.equal(last.data.observation.exit_status, "submitted");
      assert.equal(last.data.reward, 1);
      assert.ok(messages.some((m) => m.role === "user" && m.content.startsWith("Format error:")));
      assert.ok(messages.some((m) => m.role === "tool" && m.content.includes("---- HEAD (5000 chars) ----")));
    } finally {
      await serve.close();
      await vllm.close();
    }
    assert.deepEqual(serve.containers(), []);
  });

  test("train: token-in/token-out, the trainer appends the wrapper ids verbatim and samples exactly the contexts tmax run sampled", async () => {
    const call = (c: string) => renderQwenXmlToolCall("bash", { command: c });
    const script: ScriptedTurn[] = [
      { pieces: ["Look.", "</think>", "\n\n", "THOUGHT: two calls\n", call("pwd"), "\n", call("ls /nonexistent-dir")] },
      { text: `ok</think>\n\n${call("printf 'Hello, tmax!\\n' > /app/hello.txt")}` },
      { text: `done</think>\n\n${call(`echo ${SUBMIT_MARKER}`)}` },
    ];
    const turnOf = (promptText: string) => promptText.split("</think>").length - 1; // each turn closes its thinking once
    const vllm = await startTokenVllm({ complete: (ctx) => script[turnOf(ctx.promptText)] ?? { text: "nothing" } });
    const tokens = createTokenClient({ baseUrl: vllm.baseUrl, model: "tmax-9b", timeoutMs: 30_000, maxRetries: 0 });
    const serve = await startTestServe({ dataset: EXAMPLES, tokens });
    try {
      const reference = await tmaxRun(["--base-url", vllm.baseUrl, "--profile", "train"], path.join(tmp, "run-train"));
      assert.equal(reference.exitStatus, "submitted");
      // tmax run's first call is its server check (one token of a short chat), not a turn of the episode
      const [probe, ...referenceCalls] = vllm.completions.splice(0);
      assert.equal(probe!.body.max_tokens, 1);

      const s = await WsSession.open(serve.wsUrl);
      const reset = await s.reset({ task_id: "hello-file", action_set: "harness", profile: "train" });
      assert.equal(reset.type, "observation", JSON.stringify(reset.data));
      const o = reset.data.observation;
      let context: number[] = [...o.prompt_ids];
      let maxTokens: number = o.max_tokens;
      const seed: number = o.seed;
      const observations: string[] = [];
      let last: any;
      for (;;) {
        const body = { model: "tmax-9b", prompt: context, max_tokens: maxTokens, seed, n: 1, logprobs: 1, return_token_ids: true, skip_special_tokens: false, include_stop_str_in_output: true };
        const choice = ((await (await fetch(`${vllm.baseUrl}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json()) as any).choices[0];
        last = await s.step({ token_ids: choice.token_ids, logprobs: choice.logprobs.token_logprobs, text: choice.text, finish_reason: choice.finish_reason });
        assert.equal(last.type, "observation", JSON.stringify(last.data));
        const ob = last.data.observation;
        observations.push(...ob.observations);
        // the wrapper ids are what the tokenizer gives for each wrapper text, appended as is
        assert.deepEqual(ob.wrapper_ids, ob.observations_wrapped.flatMap((x: string) => encode(observationWrapper(x))));
        context = [...context, ...choice.token_ids, ...ob.wrapper_ids];
        maxTokens = ob.max_tokens;
        if (last.data.done) break;
      }
      s.close();
      // every sampled context equals tmax run's, token for token
      assert.equal(vllm.completions.length, referenceCalls.length);
      vllm.completions.forEach((c, i) => {
        assert.deepEqual(c.promptIds, referenceCalls[i]!.promptIds, `context of turn ${i + 1}`);
        assert.equal(c.body.max_tokens, referenceCalls[i]!.body.max_tokens);
        assert.equal(c.body.seed, referenceCalls[i]!.body.seed);
      });
      const referenceObservations = reference.messages.filter((m: any) => m.role === "tool").map((m: any) => m.content);
      assert.deepEqual(observations, referenceObservations);
      assert.equal(last.data.observation.exit_status, "submitted");
      assert.equal(last.data.reward, 1, JSON.stringify({ ...last.data.observation, messages: undefined, wrapper_ids: undefined }));
    } finally {
      await serve.close();
      await vllm.close();
    }
    assert.deepEqual(serve.containers(), []);
  });
});

describe("tmax serve: whole episodes", { skip: ENGINE_SKIP }, () => {
  test("POST /episodes streams the records tmax rollout writes: G samples of a task against the caller's endpoint", async () => {
    const call = (c: string) => renderQwenXmlToolCall("bash", { command: c });
    const turnOf = (promptText: string) => promptText.split("</think>").length - 1;
    // sample 0 (seed 0) solves hello-file, sample 1 (seed 1) submits at once: an informative group
    const vllm = await startTokenVllm({
      complete: (ctx) => {
        const solve = [`a</think>\n\n${call("printf 'Hello, tmax!\\n' > /app/hello.txt")}`, `b</think>\n\n${call(`echo ${SUBMIT_MARKER}`)}`];
        const quit = [`c</think>\n\n${call(`echo ${SUBMIT_MARKER}`)}`];
        return { text: (ctx.body.seed === 0 ? solve : quit)[turnOf(ctx.promptText)] ?? "nothing" };
      },
    });
    const serve = await startTestServe({ dataset: EXAMPLES, maxSessions: 2 });
    try {
      const post = (body: unknown) => fetch(`${serve.url}/episodes`, { method: "POST", body: JSON.stringify(body) });
      // more slots than the server has: refused at once
      const busy = await post({ base_url: vllm.baseUrl, model: "tmax-9b", task: "hello-file", samples: 2, concurrency: 3 });
      assert.equal(busy.status, 503);
      const res = await post({ base_url: vllm.baseUrl, model: "tmax-9b", task: "hello-file", samples: 2, concurrency: 2, seed: 0, policy_version: 5 });
      assert.equal(res.status, 200);
      const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
      const types = lines.map((l) => l.type);
      assert.deepEqual(types.filter((t) => t === "sample").length, 2, JSON.stringify(lines.filter((l) => l.type !== "record")));
      assert.deepEqual(types.slice(-2), ["summary", "done"]);
      const records = lines.filter((l) => l.type === "record").map((l) => l.record);
      assert.equal(records.length, 2);
      assert.deepEqual(records.map((r) => r.reward).sort(), [0, 1]);
      assert.deepEqual(records.map((r) => r.advantage).sort(), [-0.5, 0.5]);
      for (const r of records) {
        assert.equal(r.policy_version, "tmax-9b@5");
        assert.equal(r.response_tokens.length, r.logprobs.length);
        assert.equal(r.response_tokens.length, r.response_mask.length);
      }
      assert.equal(lines.at(-1).records, 2);
      assert.deepEqual(serve.pool.capacity().active_sessions, 0);
    } finally {
      await serve.close();
      await vllm.close();
    }
    assert.deepEqual(serve.containers(), []);
  });
});

describe("tmax serve: sessions are resources", { skip: ENGINE_SKIP }, () => {
  test("soak: 12 sessions, random disconnects, concurrent steps — every evaluate has its reward, 0 containers left", async () => {
    const serve = await startTestServe({ dataset: EXAMPLES, maxSessions: 6 });
    let report;
    try {
      report = await soak(serve.wsUrl, { sessions: 12, concurrency: 4, disconnectRate: 0.4, seed: 7 });
    } finally {
      await serve.close();
    }
    assert.deepEqual(report.lost, []);
    assert.deepEqual(report.stepFailures, []);
    assert.equal(report.completed + report.disconnected, 12);
    assert.ok(report.completed >= 3 && report.disconnected >= 2, JSON.stringify(report));
    assert.deepEqual(report.rewards, report.rewards.map(() => 1));
    assert.deepEqual(serve.containers(), []);
  });

  test("SIGTERM removes every live session's sandbox; after kill -9, `tmax sandbox prune` removes what is left", async () => {
    const cli = (args: string[]) => spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "serve", "-d", EXAMPLES, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      const jobDir = path.join(tmp, `job-${signal}`);
      const child = cli(["--port", "0", "--job-dir", jobDir]);
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL: ${out}`)), 120_000);
        const check = () => {
          const m = /tmax serve (http:\/\/\S+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        };
        child.stdout.on("data", check);
        child.on("exit", () => reject(new Error(`exited: ${out}`)));
      });
      const jobId = readFileSync(path.join(jobDir, ".tmax-job-id"), "utf8").trim();
      const sessions = await Promise.all([0, 1].map(() => WsSession.open(`${url.replace(/^http/, "ws")}/ws`)));
      for (const s of sessions) assert.equal((await s.reset({ task_id: "word-count" })).type, "observation");
      assert.equal(containersOfJob(jobId).length, 2);
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      child.kill(signal);
      const code = await exited;
      if (signal === "SIGTERM") {
        assert.equal(code, 143, out);
        assert.deepEqual(containersOfJob(jobId), [], "SIGTERM left containers");
      } else {
        assert.equal(containersOfJob(jobId).length, 2, "kill -9 runs no cleanup");
        const prune = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "sandbox", "prune"], { cwd: ROOT, encoding: "utf8" });
        assert.equal(prune.status, 0, prune.stderr);
        assert.deepEqual(containersOfJob(jobId), [], prune.stdout);
      }
    }
  });

  test("OpenEnv shapes: /health, /metadata, /schema, /state, stateless /reset and /step, message errors", async () => {
    const serve = await startTestServe({ dataset: EXAMPLES });
    try {
      const get = async (p: string) => (await fetch(serve.url + p)).json() as Promise<any>;
      assert.deepEqual(await get("/health"), { status: "healthy" });
      const meta = await get("/metadata");
      assert.deepEqual(Object.keys(meta).sort(), ["author", "description", "documentation_url", "name", "readme_content", "version"]);
      const schema = await get("/schema");
      assert.deepEqual(Object.keys(schema).sort(), ["action", "observation", "state"]);
      assert.deepEqual(Object.keys(schema.action.oneOf[0].properties).sort(), ["action_type", "block", "command", "content", "file_path", "metadata", "session_id", "wait_seconds"]);
      assert.deepEqual(await get("/state"), { episode_id: null, step_count: 0 });
      const reset = await (await fetch(serve.url + "/reset", { method: "POST", body: JSON.stringify({ task_id: "word-count" }) })).json() as any;
      assert.deepEqual(Object.keys(reset), ["observation", "reward", "done"]);
      assert.equal(reset.observation.task_id, "word-count");
      const step = await fetch(serve.url + "/step", { method: "POST", body: JSON.stringify({ action: { action_type: "exec", command: "true" } }) });
      assert.equal(step.status, 409);

      const s = await WsSession.open(serve.wsUrl);
      assert.deepEqual(await s.requestRaw("not json"), { type: "error", data: { message: "Invalid JSON: Unexpected token 'o', \"not json\" is not valid JSON", code: "INVALID_JSON" } });
      assert.deepEqual(await s.request({ type: "mcp", data: {} }), { type: "error", data: { message: "Unknown message type: mcp", code: "UNKNOWN_TYPE" } });
      const bad = await s.request({ type: "state", data: {} });
      assert.equal(bad.data.code, "VALIDATION_ERROR");
      assert.ok(Array.isArray(bad.data.errors));
      const r = await s.reset({ task_id: "word-count", episode_id: "ep-1" });
      assert.deepEqual(Object.keys(r.data), ["observation", "reward", "done"]);
      assert.deepEqual(Object.keys(r.data.observation).sort(), ["action_type", "error", "info", "instruction", "output", "session_id", "success", "task_id", "task_path"]);
      assert.equal((await s.request({ type: "state" })).data.episode_id, "ep-1");
      s.close();
    } finally {
      await serve.close();
    }
    assert.deepEqual(serve.containers(), []);
  });
});
