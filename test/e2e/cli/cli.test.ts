// The CLI as a user runs it: live output, one-line errors with a non-zero exit, no container left behind.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { generatedText, startFakeVllm, type FakeVllm } from "../../support/fake-vllm.js";
import { startTokenVllm } from "../../support/vllm-tokens.js";
import { ENGINE_SKIP, EXAMPLES, ROOT, TEST_RUN } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-cli-test-"));
const servers: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await rm(tmp, { recursive: true, force: true });
});

const CLI = path.join(ROOT, "src/cli/main.ts");
const SECRET = "sk-test-very-secret-key-123456";

/** Runs the CLI in a child process (asynchronously, so an in-process fake server can answer it). */
function tmax(args: string[], opts: { env?: Record<string, string>; onStdout?: (chunk: string, kill: (sig: NodeJS.Signals) => void) => void } = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...opts.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      opts.onStdout?.(stdout, (sig) => child.kill(sig));
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

// only this test run's containers: the engine is shared
const containers = () => spawnSync("podman", ["ps", "-aq", "--filter", "label=io.tmax.managed", "--filter", `label=io.tmax.test-run=${TEST_RUN}`], { encoding: "utf8" }).stdout.trim();
const errorLines = (s: string) => s.trim().split("\n").filter(Boolean);

async function server(reply: Parameters<typeof startFakeVllm>[0]["reply"], extra: Partial<Parameters<typeof startFakeVllm>[0]> = {}) {
  const s = await startFakeVllm({ reply, ...extra });
  servers.push(s);
  return s;
}

describe("tmax CLI", { skip: ENGINE_SKIP }, () => {
  test("eval --prompts: the file's texts reach the model, the job config records path and sha256; a bad file is one line", async () => {
    const fixture = path.join(ROOT, "test/fixtures/prompts-authors-schema.yaml");
    const solve = readFileSync(path.join(EXAMPLES, "hello-file/solution/solve.sh"), "utf8");
    const s = await server((ctx) => (ctx.turn === 0 ? { text: "THOUGHT", commands: [solve] } : { text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`] }));
    const jobDir = path.join(tmp, "prompts-job");
    const args = ["eval", "--dataset", EXAMPLES, "--include", "hello-file", "--base-url", s.baseUrl, "--job-dir", jobDir];
    const r = await tmax([...args, "--prompts", fixture, "--tool-description", "From the flag."]);
    assert.equal(r.code, 0, r.stderr);
    const config = JSON.parse(readFileSync(path.join(jobDir, "config.json"), "utf8"));
    const { createHash } = await import("node:crypto");
    assert.deepEqual(config.prompts, { path: fixture, sha256: createHash("sha256").update(readFileSync(fixture)).digest("hex") });
    const first = s.requests[0];
    assert.match(first.messages[0].content, /^You drive a Linux box through one tool/);
    assert.match(first.messages[1].content, /^Task for you:\n\n\S/);
    assert.equal(first.tools[0].function.description, "From the flag.");

    const bad = path.join(tmp, "bad-prompts.yaml");
    await writeFile(bad, "system_template: S\ninstance_template: no task here\n");
    const rb = await tmax([...args.slice(0, -1), path.join(tmp, "prompts-job-bad"), "--prompts", bad]);
    assert.equal(rb.code, 1);
    assert.deepEqual(errorLines(rb.stderr), [`tmax: error: prompt file ${bad}: instance_template has no {{task}} (written exactly so, without spaces: it is replaced literally)`]);
    assert.equal(existsSync(path.join(tmp, "prompts-job-bad")), false, "nothing started");
  });

  test("run on a task dir: live steps, the verifier's reward, a trajectory without the API key", async () => {
    const out = path.join(tmp, "run1");
    const solve = readFileSync(path.join(EXAMPLES, "hello-file/solution/solve.sh"), "utf8");
    const s2 = await server((ctx) => (ctx.turn === 0 ? { text: "THOUGHT: write it", commands: [solve] } : { text: "THOUGHT: done", commands: [`echo ${SUBMIT_MARKER}`] }), { apiKey: SECRET });
    const r = await tmax(["run", "--task", path.join(EXAMPLES, "hello-file"), "--base-url", s2.baseUrl, "--out", out], { env: { TMAX_API_KEY: SECRET } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /── step 1/);
    assert.match(r.stdout, /\$ /);
    assert.match(r.stdout, /■ submitted/);
    assert.match(r.stdout, /reward: 1/);
    const trial = path.join(out, "hello-file__0");
    const files = ["agent/trajectory.json", "agent/tmax-trajectory.json", "result.json", "config.json"].map((f) => readFileSync(path.join(trial, f), "utf8"));
    for (const f of files) assert.equal(f.includes(SECRET), false, "the API key must never be written");
    assert.equal(r.stdout.includes(SECRET) || r.stderr.includes(SECRET), false);
    assert.ok(existsSync(path.join(trial, "verifier", "test-stdout.txt")));
    assert.equal(containers(), "");
  });

  test("an unreachable endpoint is one error line and a non-zero exit, before any container", async () => {
    const r = await tmax(["run", "--task", "echo hi", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0"]);
    assert.notEqual(r.code, 0);
    assert.deepEqual(errorLines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^tmax: error: cannot reach model server at http:\/\/127\.0\.0\.1:9\/v1/);
    assert.equal(containers(), "");
  });

  test("a wrong model name says which models are served", async () => {
    const s = await server(() => ({ text: "hi" }));
    const r = await tmax(["run", "--task", "echo hi", "--base-url", s.baseUrl, "--model", "nope"]);
    assert.notEqual(r.code, 0);
    assert.equal(errorLines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /model 'nope' is not served .*served: tmax-9b/);
  });

  test("an image that does not exist is one error line", async () => {
    const s = await server(() => ({ text: "hi" }));
    const r = await tmax(["run", "--task", "echo hi", "--base-url", s.baseUrl, "--image", "localhost/does-not-exist:1"]);
    assert.notEqual(r.code, 0);
    assert.equal(errorLines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /does-not-exist/);
    assert.equal(containers(), "");
  });

  test("a Dockerfile that fails to build is one clear error and a non-zero exit", async () => {
    const s = await server(() => ({ text: "hi" }));
    const task = path.join(tmp, "broken-build");
    await cp(path.join(EXAMPLES, "hello-file"), task, { recursive: true });
    await writeFile(path.join(task, "environment", "Dockerfile"), "FROM localhost/tmax-base:bookworm\nRUN echo boom >&2 && exit 7\n");
    const r = await tmax(["run", "--task", task, "--base-url", s.baseUrl, "--out", path.join(tmp, "run-broken")]);
    assert.notEqual(r.code, 0);
    const line = r.stdout.split("\n").find((l) => l.startsWith("BuildError:"));
    assert.ok(line, r.stdout);
    assert.equal(containers(), "");
  });

  test("Ctrl-C during a step removes the container", async () => {
    const s = await server(() => ({ text: "THOUGHT", commands: ["sleep 100"] }));
    let sent = false;
    const started = Date.now();
    const r = await tmax(["run", "--task", "wait", "--base-url", s.baseUrl], {
      onStdout: (out, kill) => {
        if (!sent && out.includes("$ sleep 100")) {
          sent = true;
          setTimeout(() => kill("SIGINT"), 500);
        }
      },
    });
    assert.ok(sent, r.stdout);
    assert.notEqual(r.code, 0);
    assert.ok(Date.now() - started < 60_000);
    assert.equal(containers(), "");
  });

  test("rollout: one step with live group lines, records on disk; a server without token ids is refused up front", async () => {
    const solve = readFileSync(path.join(EXAMPLES, "hello-file/solution/solve.sh"), "utf8");
    let n = 0;
    // rollouts are token-in/token-out: the stand-in with the real tokenizer (the probe asks for 1 token)
    const s = await startTokenVllm({
      complete: (ctx) => (ctx.body.max_tokens === 1 ? { text: "x" } : { text: generatedText({ text: "THOUGHT", commands: [n++ % 2 === 0 ? `${solve}\necho ${SUBMIT_MARKER}` : `echo ${SUBMIT_MARKER}`] }) }),
    });
    servers.push(s);
    const out = path.join(tmp, "rollout");
    const r = await tmax(["rollout", "--dataset", path.join(EXAMPLES, "hello-file"), "-U", "1", "-G", "2", "-n", "1", "--base-url", s.baseUrl, "--out", out, "--run-name", "cli"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /step 1 · hello-file · rewards (1 0|0 1) · kept/);
    assert.match(r.stdout, /step 1: 1 groups kept of 1 drawn/);
    assert.ok(existsSync(path.join(out, "cli_rollouts_000000.jsonl")));
    assert.ok(existsSync(path.join(out, "steps", "step_000001.json")));
    const batch = await tmax(["rl", "batch", out, "--step", "1", "--pack", "67584", "--run", "cli", "--out", path.join(out, "packed")]);
    assert.equal(batch.code, 0, batch.stderr);
    assert.match(batch.stdout, /wrote .*cli_learner_batch_step000001\.jsonl: 2 samples, \d+ tokens, 1 lines, padding/);
    const pack = await tmax(["rl", "pack", out]);
    assert.match(pack.stdout, /^2 samples → 1 packs of ≤ 67584 tokens/);
    const parquet = await tmax(["rl", "parquet", out, "--out", path.join(out, "r.parquet")]);
    assert.equal(parquet.code, 0, parquet.stderr);
    assert.ok(existsSync(path.join(out, "r.parquet")));

    const old = await server(() => ({ text: "THOUGHT", commands: ["echo hi"] }), { tokenIds: false });
    const refused = await tmax(["rollout", "--dataset", path.join(EXAMPLES, "hello-file"), "-U", "1", "-G", "2", "--base-url", old.baseUrl, "--out", path.join(tmp, "rollout-old")]);
    assert.notEqual(refused.code, 0);
    assert.equal(errorLines(refused.stderr).length, 1, refused.stderr);
    assert.match(refused.stderr, /needs vLLM's \/tokenize endpoint/);
    assert.equal(existsSync(path.join(tmp, "rollout-old", "trials")), false, "no episode ran");
    assert.equal(containers(), "");
  });

  test("doctor reports parsed tool calls, context length and the engine", async () => {
    const s = await server(() => ({ text: "THOUGHT", commands: ["echo hi"] }));
    const r = await tmax(["doctor", "--base-url", s.baseUrl]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ok +model endpoint/);
    assert.match(r.stdout, /ok +max_model_len 65536 \(as the eval profile expects\)/);
    assert.match(r.stdout, /ok +tool calls come back parsed/);
    assert.match(r.stdout, /ok +container engine/);
    assert.match(r.stdout, /ok +chat completions return logprobs and token ids/);
    const raw = await server(() => ({ text: "THOUGHT", commands: ["echo hi"] }), { toolParser: false, maxModelLen: 32768 });
    const r2 = await tmax(["doctor", "--base-url", raw.baseUrl, "--skip-sandbox"]);
    assert.match(r2.stdout, /warn tool calls come back as raw XML/);
    assert.match(r2.stdout, /warn max_model_len 32768, but the eval profile was run with 65536/);
  });
});
