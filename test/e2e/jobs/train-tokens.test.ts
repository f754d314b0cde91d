// The train profile token-in/token-out against a vLLM stand-in with the real Qwen BPE tokenizer, in real
// podman containers: the record is exactly prompt ids + each turn's sampled ids + each wrapper's ids.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { DEFAULT_PROMPTS } from "../../../src/agent/prompts.js";
import { observationWrapper, runTokenEpisode, type TokenStream } from "../../../src/agent/tokenProtocol.js";
import { BASH_TOOL } from "../../../src/model/client.js";
import { renderQwenXmlToolCall } from "../../../src/model/qwenXml.js";
import { createTokenClient } from "../../../src/model/tokens.js";
import { readRollouts } from "../../../src/rl/records.js";
import type { RolloutRecord } from "../../../src/rl/schema.js";
import { createBackend } from "../../../src/sandbox/index.js";
import type { Sandbox } from "../../../src/sandbox/types.js";
import { decode, encode, IM_END, renderChat, startTokenVllm, type CompletionContext, type ScriptedTurn } from "../../support/vllm-tokens.js";
import { BASE_IMAGE, ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-train-tokens-"));
after(() => rm(tmp, { recursive: true, force: true }));
const call = (command: string) => renderQwenXmlToolCall("bash", { command });
const backend = createBackend("docker", {});
const JOB = `train-tokens-${process.pid}`;

async function withSandbox<T>(fn: (sb: Sandbox) => Promise<T>): Promise<T> {
  const sb = await backend.create({ image: BASE_IMAGE, network: "none", name: "train-tokens", labels: { "io.tmax.job": JOB } });
  try {
    return await fn(sb);
  } finally {
    await sb.remove();
  }
}

/** Rebuilds the expected response from the server's own log: sampled ids, then the wrapper ids of each observation. */
function assertExactStream(stream: TokenStream, completions: { promptIds: number[]; ids: number[]; logprobs: number[] }[]) {
  // every request's prompt is exactly the stream so far: the model conditioned on what the record holds
  const full = [...stream.promptIds, ...stream.responseIds];
  for (const c of completions) {
    assert.deepEqual(c.promptIds, full.slice(0, c.promptIds.length));
    assert.deepEqual(c.ids, full.slice(c.promptIds.length, c.promptIds.length + c.ids.length));
  }
  // loss mask 1 exactly on sampled ids, with their μ; 0 and logprob 0 on everything else
  const sampledAt = new Map<number, number>();
  for (const c of completions) c.ids.forEach((_, i) => sampledAt.set(c.promptIds.length - stream.promptIds.length + i, c.logprobs[i]!));
  stream.mask.forEach((m, i) => {
    assert.equal(m, sampledAt.has(i) ? 1 : 0, `mask at ${i}`);
    assert.equal(stream.logprobs[i], sampledAt.get(i) ?? 0, `logprob at ${i}`);
  });
}

describe("train profile: token-in/token-out", { skip: ENGINE_SKIP }, () => {
  test("multi-turn episode: record = prompt ids + sampled ids + wrapper ids; ids that do not round-trip are kept; several calls get one wrapper each", async () => {
    // turn 1 is sampled as pieces whose ids are not what tokenizing their text gives back
    const turn1Pieces = ["Let me look around first.", "</think>", "\n\n", "THOUGHT: print", " h", "ello", " and", " keep", " trailing", " space", ".\n", call("echo hello; printf 'tail  \\n\\n'")];
    const script: ScriptedTurn[] = [
      { pieces: turn1Pieces },
      { text: `two at once</think>\n\nTHOUGHT: where am I, and an error\n${call("pwd")}\n${call("ls /nonexistent-dir")}` },
      { text: `done</think>\n\n${call(`echo ${SUBMIT_MARKER}`)}` },
    ];
    const server = await startTokenVllm({ complete: (ctx: CompletionContext) => script[ctx.index]! });
    try {
      const tokens = createTokenClient({ baseUrl: server.baseUrl, model: "tmax-9b", timeoutMs: 30_000, maxRetries: 0 });
      const { trajectory, stream } = await withSandbox((sandbox) =>
        runTokenEpisode({ taskName: "t", instruction: "Say hello.", tokens, sandbox, seed: 7, startDir: "/app" }),
      );
      assert.equal(trajectory.exitStatus, "submitted", trajectory.error);
      assert.equal(stream.problem, undefined);

      // the prompt is the template's rendering of system + user + the bash tool, with the generation prompt
      const expectedPrompt = encode(renderChat([{ role: "system", content: DEFAULT_PROMPTS.system }, { role: "user", content: DEFAULT_PROMPTS.instance("Say hello.") }], [BASH_TOOL]));
      assert.deepEqual(stream.promptIds, expectedPrompt);
      assert.ok(decode(stream.promptIds).endsWith("<|im_start|>assistant\n<think>\n"));

      // the re-tokenisation pitfall is real: the sampled ids differ from tokenize(detokenize(ids))
      const sampled1 = server.completions[0]!.ids;
      assert.notDeepEqual(encode(decode(sampled1)), sampled1);
      assert.deepEqual(sampled1, [...turn1Pieces.flatMap(encode), IM_END]);

      // observations: training's bytes (trailing whitespace kept); /app linked to the workdir
      const obs = trajectory.steps.flatMap((s) => s.executions ?? []).map((e) => e.observation);
      assert.deepEqual(obs, ["hello\ntail  \n\n\n\n(exit_code=0)", "/app\n\n\n(exit_code=0)", "ls: cannot access '/nonexistent-dir': No such file or directory\n\n\n(exit_code=2)", `${SUBMIT_MARKER}\n\n\n(exit_code=0)`]);

      // the response, rebuilt independently: turn ids and one wrapper per observation (the submit turn ends it)
      const c = server.completions.map((x) => x.ids);
      const w = (o: string) => encode(observationWrapper(o));
      assert.deepEqual(stream.responseIds, [...c[0]!, ...w(obs[0]!), ...c[1]!, ...w(obs[1]!), ...w(obs[2]!), ...c[2]!]);
      assert.deepEqual(stream.spans.map((s) => s.kind), ["sampled", "wrapper", "sampled", "wrapper", "wrapper", "sampled"]);
      assertExactStream(stream, server.completions);

      // wrappers are tokenized as whole strings by the server, exactly these bytes
      const wrapperTexts = server.tokenizeRequests.filter((r) => typeof r.prompt === "string").map((r) => r.prompt);
      assert.deepEqual(wrapperTexts, obs.slice(0, 3).map(observationWrapper));
      assert.ok(server.tokenizeRequests.every((r) => r.add_special_tokens === false));

      // pinned sampling, the sample's seed, and training's max_tokens rule
      for (const [i, req] of server.completions.entries()) {
        const b = req.body;
        assert.deepEqual(
          { temperature: b.temperature, top_p: b.top_p, top_k: b.top_k, min_p: b.min_p, repetition_penalty: b.repetition_penalty, presence_penalty: b.presence_penalty, frequency_penalty: b.frequency_penalty, seed: b.seed, logprobs: b.logprobs },
          { temperature: 1, top_p: 1, top_k: -1, min_p: 0, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0, seed: 7, logprobs: 1 },
        );
        assert.equal(b.return_token_ids, true);
        assert.equal(b.skip_special_tokens, false);
        assert.equal(b.include_stop_str_in_output, true);
        const response = req.promptIds.length - stream.promptIds.length;
        assert.equal(b.max_tokens, Math.min(16_384, 65_536 - response, 67_584 - req.promptIds.length), `max_tokens of turn ${i + 1}`);
      }
    } finally {
      await server.close();
    }
  });

  test("the response stops at 65,536 tokens: the last observation is cut to fit, then the episode ends", async () => {
    const filler = encode(" a")[0]!;
    const perTurn = 16_000;
    const script = (ctx: CompletionContext): ScriptedTurn => {
      const n = ctx.body.max_tokens as number;
      // four long turns, then a short one whose command floods the output
      const command = ctx.index < 4 ? "echo ok" : "seq 1 3000";
      const tail = encode(`</think>\n\n${call(command)}`);
      const fill = ctx.index < 4 ? perTurn : Math.min(200, n - tail.length - 1);
      return { ids: [...new Array(fill).fill(filler), ...tail] };
    };
    const server = await startTokenVllm({ maxModelLen: 200_000, complete: script });
    try {
      const tokens = createTokenClient({ baseUrl: server.baseUrl, model: "tmax-9b", timeoutMs: 60_000, maxRetries: 0 });
      const { trajectory, stream } = await withSandbox((sandbox) => runTokenEpisode({ taskName: "t", instruction: "Fill the context.", tokens, sandbox, seed: 1, startDir: "/app" }));
      assert.equal(trajectory.exitStatus, "token_limit", trajectory.error);
      assert.equal(stream.responseIds.length, 65_536);
      assert.equal(server.completions.length, 5);
      const last = stream.spans.at(-1)!;
      assert.equal(last.kind, "wrapper");
      const obs = trajectory.steps.at(-1)!.executions!.at(-1)!.observation;
      const full = encode(observationWrapper(obs));
      assert.ok(full.length > last.length, "the last wrapper was cut");
      assert.deepEqual(stream.responseIds.slice(last.start), full.slice(0, last.length));
      assertExactStream(stream, server.completions);
    } finally {
      await server.close();
    }
  });
});

describe("tmax rollout over the token loop", { skip: ENGINE_SKIP }, () => {
  test("end to end on an example task: records are exactly the streams the server saw", async () => {
    const solve = readFileSync(path.join(EXAMPLES, "hello-file", "solution", "solve.sh"), "utf8");
    const seeds = new Map<number, number>();
    const server = await startTokenVllm({
      complete: (ctx) => {
        if (ctx.body.max_tokens === 1) return { text: "x" }; // the CLI's capability probe
        const seed = ctx.body.seed as number;
        seeds.set(seed, (seeds.get(seed) ?? 0) + 1);
        // sample seed 3 (the first of the group) solves the task, the other submits at once
        return { text: `seed ${seed}</think>\n\n${call(seed === 3 ? `${solve}\necho ${SUBMIT_MARKER}` : `echo ${SUBMIT_MARKER}`)}` };
      },
    });
    try {
      const out = path.join(tmp, "rollout");
      const code = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "rollout", "--dataset", path.join(EXAMPLES, "hello-file"), "-U", "1", "-G", "2", "-n", "2", "--seed", "3", "--base-url", server.baseUrl, "--out", out, "--max-groups-per-step", "1"], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
        let log = "";
        child.stdout.on("data", (d) => (log += d));
        child.stderr.on("data", (d) => (log += d));
        child.on("close", (c) => {
          if (c !== 0) console.log(log);
          resolve(c ?? 1);
        });
      });
      assert.equal(code, 0);
      assert.deepEqual([...seeds.keys()].sort(), [3, 4]);
      const records: RolloutRecord[] = [];
      for await (const r of readRollouts(out)) records.push(r as RolloutRecord);
      assert.equal(records.length, 2);
      const episodes = server.completions.filter((c) => c.body.max_tokens !== 1);
      for (const r of records) {
        const mine = episodes.filter((c) => decode(c.ids).startsWith(`seed ${r.reward === 1 ? 3 : 4}`));
        const lastTurn = mine.at(-1)!;
        // submitted: the record is the last request's prompt, its sampled ids, then open-instruct's test report
        // (SWERLVanilluxSandboxEnv._run_tests) wrapped like any observation with mask 0, nothing re-rendered
        const passed = r.reward === 1;
        const report = `Test execution complete.\nExit code: 0\n[STDOUT]\n${passed ? "PASS: /app/hello.txt has the expected content" : "FAIL: /app/hello.txt does not exist"}\n\n[STDERR]\n\nReward: ${passed ? "1.0" : "0.0"}`;
        const reportIds = encode(observationWrapper(report));
        assert.deepEqual([...r.prompt_tokens, ...r.response_tokens], [...lastTurn.promptIds, ...lastTurn.ids, ...reportIds]);
        assert.deepEqual(r.response_mask.slice(-reportIds.length), new Array(reportIds.length).fill(0));
        assert.ok(server.tokenizeRequests.some((q) => q.prompt === observationWrapper(report)));
        assert.equal(r.exit_status, "submitted");
        assert.equal(r.num_model_tokens, mine.reduce((n, c) => n + c.ids.length, 0));
      }
      assert.deepEqual(records.map((r) => r.reward).sort(), [0, 1]);
    } finally {
      await server.close();
    }
  });
});

describe("tmax doctor --profile", () => {
  const doctor = (args: string[]) =>
    new Promise<string>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "doctor", "--skip-sandbox", ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
      let log = "";
      child.stdout.on("data", (d) => (log += d));
      child.stderr.on("data", (d) => (log += d));
      child.on("close", () => resolve(log));
    });

  test("warns when the server fills sampling fields from the model's generation config, and on a context length the profile did not use", async () => {
    const server = await startTokenVllm({ maxModelLen: 65_536, generationDefaults: { top_k: 20, min_p: 0, repetition_penalty: 1.05 } });
    try {
      const train = await doctor(["--profile", "train", "--base-url", server.baseUrl]);
      assert.match(train, /warn max_model_len 65536, but the train profile was run with 67584/);
      assert.match(train, /ok {3}\/tokenize and \/v1\/completions with token ids and logprobs work/);
      assert.match(train, /warn sampling defaults: unset sampling fields .* take the model's generation_config values.*--generation-config vllm/);
      const evalRun = await doctor(["--profile", "eval", "--base-url", server.baseUrl]);
      assert.match(evalRun, /ok {3}max_model_len 65536 \(as the eval profile expects\)/);
      assert.match(evalRun, /warn sampling defaults: .*eval requests leave them to the server/);
    } finally {
      await server.close();
    }
  });

  test("no warning when the server samples with vLLM's own defaults at training's max_model_len", async () => {
    const server = await startTokenVllm({});
    try {
      const out = await doctor(["--profile", "train", "--base-url", server.baseUrl]);
      assert.match(out, /ok {3}max_model_len 67584 \(as the train profile expects\)/);
      assert.match(out, /ok {3}sampling defaults: unset sampling fields behave like vLLM's own defaults/);
    } finally {
      await server.close();
    }
  });
});

describe("rollout rejects a sample whose stream is not exact", { skip: ENGINE_SKIP }, () => {
  test("an episode that errors mid-way is rejected with its reason and its group dropped whole, nothing spliced", async () => {
    const { runRollout } = await import("../../../src/jobs/rollout.js");
    const { modelConfigFromOptions } = await import("../../../src/model/client.js");
    const solve = readFileSync(path.join(EXAMPLES, "hello-file", "solution", "solve.sh"), "utf8");
    const server = await startTokenVllm({
      complete: (ctx) =>
        ctx.body.seed === 0
          ? { text: `ok</think>\n\n${call(`${solve}\necho ${SUBMIT_MARKER}`)}` }
          : ctx.promptIds.length > 1000 && ctx.index > 1
            ? { status: 400, errorMessage: "scripted failure" }
            : { text: `first</think>\n\n${call("echo step")}` },
    });
    try {
      const out = path.join(tmp, "rejects");
      const [summary] = await runRollout({
        datasetDir: path.join(EXAMPLES, "hello-file"), outDir: out, runName: "t", steps: 1, startStep: 1, uniqueTasks: 1, samplesPerTask: 2,
        concurrency: 1, maxGroupsPerStep: 1, timeoutMultiplier: 1, imageMap: {}, backend: "docker", network: "task", seed: 0, maxStaleness: 4, learnerBatch: false,
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "train", maxRetries: 0 }),
      });
      assert.equal(summary!.samples_rejected, 1);
      assert.match(summary!.rejections[0]!.reason, /episode error: .*scripted failure/);
      assert.equal(summary!.groups_kept, 0);
      assert.equal(summary!.samples, 0);
    } finally {
      await server.close();
    }
  });
});
