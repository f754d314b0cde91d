// DPPO rollout steps end to end: scripted policy with logprobs, real tasks, real verifiers, records on disk.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { exportRolloutsToParquet, readRolloutsParquet } from "../../../src/rl/parquet.js";
import { readLearnerBatch, readRollouts } from "../../../src/rl/records.js";
import { runRollout, type RolloutOptions } from "../../../src/jobs/rollout.js";
import type { RolloutRecord } from "../../../src/rl/schema.js";
import { generatedText, type FakeReply } from "../../support/fake-vllm.js";
import { startTokenVllm, type CompletionContext } from "../../support/vllm-tokens.js";

// rollouts sample token-in/token-out: the stand-in with the real tokenizer, scripted per request
const startFakeVllm = (o: { reply: (ctx: CompletionContext) => FakeReply | Promise<FakeReply> }) =>
  startTokenVllm({ complete: async (ctx) => { const r = await o.reply(ctx); return { text: generatedText(r), delayMs: r.delayMs }; } });
type FakeContext = CompletionContext;
import { ENGINE_SKIP, EXAMPLES, SHARED_SKIP, SHARED_TASKS } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-rollout-test-"));
after(() => rm(tmp, { recursive: true, force: true }));

const solutionOf = (dataset: string) =>
  Object.fromEntries(
    readdirSync(dataset, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => [readFileSync(path.join(dataset, e.name, "instruction.md"), "utf8").trim().slice(0, 120), readFileSync(path.join(dataset, e.name, "solution", "solve.sh"), "utf8")]),
  );

const base = (over: Partial<RolloutOptions> & Pick<RolloutOptions, "datasetDir" | "model">): RolloutOptions => ({
  outDir: path.join(tmp, `out-${Math.random().toString(36).slice(2, 8)}`),
  runName: "test",
  steps: 1,
  startStep: 1,
  uniqueTasks: 2,
  samplesPerTask: 4,
  concurrency: 4,
  maxGroupsPerStep: 6,
  timeoutMultiplier: 1,
  imageMap: {},
  backend: "docker",
  network: "task",
  seed: 7,
  maxStaleness: 4,
  learnerBatch: true,
  ...over,
});

describe("rollout on real Terminal-Bench 2 tasks", { skip: ENGINE_SKIP || SHARED_SKIP }, () => {
  test("2 tasks × 4 samples: rewards from the verifier, centered advantages, all-equal groups replaced", async () => {
    const solutions = solutionOf(SHARED_TASKS);
    // The first task the server sees always fails (its group must be dropped); every other task
    // alternates success and failure across samples. A success runs the task's solution and submits.
    let firstInstruction: string | null = null;
    const seen = new Map<string, number>();
    const server = await startFakeVllm({
      reply: (ctx: FakeContext) => {
        firstInstruction ??= ctx.instruction;
        const n = seen.get(ctx.instruction) ?? 0;
        seen.set(ctx.instruction, n + 1);
        const solve = Object.entries(solutions).find(([head]) => ctx.instruction.includes(head))![1];
        const succeed = ctx.instruction !== firstInstruction && n % 2 === 0;
        return { thinking: `sample ${n}`, text: "THOUGHT: go", commands: [succeed ? `${solve}\necho ${SUBMIT_MARKER}` : `echo ${SUBMIT_MARKER}`] };
      },
    });
    try {
      const opts = base({ datasetDir: SHARED_TASKS, model: modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "train" }) });
      const [summary] = await runRollout(opts);
      assert.equal(summary.groups_kept, 2);
      assert.equal(summary.groups_dropped_uniform, 1);
      assert.equal(summary.groups_drawn, 3);
      assert.equal(summary.samples, 8);
      assert.equal(summary.cap_reached, false);

      const records: RolloutRecord[] = [];
      for await (const r of readRollouts(opts.outDir)) records.push(r as RolloutRecord);
      assert.equal(records.length, 8);
      for (const r of records) {
        // the reward is the verifier's, read back from the trial's own result.json
        const trialDir = path.dirname(path.dirname(r.trajectory_path!));
        const result = JSON.parse(readFileSync(path.join(trialDir, "result.json"), "utf8"));
        assert.equal(r.reward, result.reward);
        assert.equal(r.response_tokens.length, r.logprobs.length);
        assert.equal(r.response_tokens.length, r.response_mask.length);
        assert.ok(r.response_mask.includes(1));
        assert.ok(r.prompt_tokens.length > 0);
        assert.equal(r.exit_status, "submitted");
        assert.equal(r.num_prompt_tokens, r.prompt_tokens.length);
        assert.equal(r.num_response_tokens, r.response_tokens.length);
        assert.equal(r.num_model_tokens, r.response_mask.filter((m) => m === 1).length);
        assert.equal(r.request_info.num_calls, 1);
        assert.equal(r.policy_version, "tmax-9b@0");
        // μ recorded for every model token, nothing for observation tokens
        r.response_mask.forEach((m, i) => (m === 0 ? assert.equal(r.logprobs[i], 0) : assert.ok(r.logprobs[i] <= 0)));
      }
      for (const g of [0, 1]) {
        const group = records.filter((r) => r.prompt_idx === g);
        assert.equal(group.length, 4);
        assert.equal(new Set(group.map((r) => r.task_name)).size, 1);
        assert.deepEqual(group.map((r) => r.reward).sort(), [0, 0, 1, 1]);
        assert.ok(Math.abs(group.reduce((s, r) => s + r.advantage, 0)) < 1e-12, "advantages sum to 0 per group");
        for (const r of group) assert.equal(r.advantage, r.reward - 0.5);
      }
      assert.ok(!records.some((r) => firstInstruction!.includes(readFileSync(path.join(SHARED_TASKS, r.task_name, "instruction.md"), "utf8").trim().slice(0, 120))));

      // the learner batch of the step holds the same samples
      const learnerFiles = readdirSync(path.join(opts.outDir, "learner"));
      assert.equal(learnerFiles.length, 1, learnerFiles.join(","));
      let batchSamples = 0;
      for await (const line of readLearnerBatch(path.join(opts.outDir, "learner", learnerFiles[0]))) batchSamples += line.kind === "pack" ? line.sample_idxs.length : 1;
      assert.equal(batchSamples, 8);

      // Parquet round trip of real records is lossless
      const file = path.join(tmp, "records.parquet");
      await exportRolloutsToParquet(records, file);
      const back: RolloutRecord[] = [];
      for await (const r of readRolloutsParquet(file)) back.push(r);
      assert.deepEqual(back, records);
    } finally {
      await server.close();
    }
  });
});

describe("rollout staleness", { skip: ENGINE_SKIP }, () => {
  test("a group with a sample more than max-staleness policy versions behind is dropped whole", async () => {
    const versionFile = path.join(tmp, "policy-version");
    await writeFile(versionFile, "0\n");
    const solve = readFileSync(path.join(EXAMPLES, "hello-file", "solution", "solve.sh"), "utf8");
    let calls = 0;
    const server = await startFakeVllm({
      reply: async () => {
        calls++;
        // the learner moves on to version 10 while the first sample is being generated
        if (calls === 1) await writeFile(versionFile, "10\n");
        return { text: "THOUGHT", commands: [calls === 1 ? `${solve}\necho ${SUBMIT_MARKER}` : `echo ${SUBMIT_MARKER}`] };
      },
    });
    try {
      const opts = base({
        datasetDir: path.join(EXAMPLES, "hello-file"),
        uniqueTasks: 1,
        samplesPerTask: 2,
        concurrency: 1,
        maxGroupsPerStep: 1,
        policyVersionFile: versionFile,
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "train" }),
      });
      const [summary] = await runRollout(opts);
      assert.equal(summary.policy_version, 10);
      assert.equal(summary.samples_dropped_stale, 2, "both samples of the group, not only the stale one");
      assert.equal(summary.groups_dropped_stale, 1);
      assert.equal(summary.samples, 0);
    } finally {
      await server.close();
    }
  });
});

describe("rollout rewards", { skip: ENGINE_SKIP }, () => {
  test("an episode that never submits scores 0 even when the tests pass", async () => {
    const solve = readFileSync(path.join(EXAMPLES, "hello-file", "solution", "solve.sh"), "utf8");
    let calls = 0;
    // both samples solve the task; only the first submits, the second runs into the step cap
    const server = await startFakeVllm({
      reply: () => {
        calls++;
        return { text: "THOUGHT", commands: [calls === 1 ? `${solve}\necho ${SUBMIT_MARKER}` : solve] };
      },
    });
    try {
      const opts = base({
        datasetDir: path.join(EXAMPLES, "hello-file"),
        uniqueTasks: 1,
        samplesPerTask: 2,
        concurrency: 1,
        maxGroupsPerStep: 1,
        agentLimits: { maxSteps: 1 },
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "train" }),
      });
      const [summary] = await runRollout(opts);
      assert.equal(summary.groups_kept, 1);
      const records: RolloutRecord[] = [];
      for await (const r of readRollouts(opts.outDir)) records.push(r as RolloutRecord);
      const byStatus = Object.fromEntries(records.map((r) => [r.exit_status, r.reward]));
      assert.deepEqual(byStatus, { submitted: 1, step_limit: 0 });
      // the verifier itself passed both: the 0 comes from the missing submission
      for (const r of records) {
        const result = JSON.parse(readFileSync(path.join(path.dirname(path.dirname(r.trajectory_path!)), "result.json"), "utf8"));
        assert.equal(result.reward, 1);
      }
    } finally {
      await server.close();
    }
  });
});

describe("rollout infrastructure failure", { skip: ENGINE_SKIP }, () => {
  test("a group that fails entirely on infrastructure stops the step and no further groups are started", async () => {
    const ds = path.join(tmp, "infra-ds");
    await cp(path.join(EXAMPLES, "hello-file"), path.join(ds, "broken-env"), { recursive: true });
    // the container's idle process (`sleep`) is gone, so the environment cannot start: an infrastructure error
    await writeFile(path.join(ds, "broken-env", "environment", "Dockerfile"), "FROM localhost/tmax-base:bookworm\nRUN rm -f /bin/sleep /usr/bin/sleep\nWORKDIR /app\n");
    await cp(path.join(EXAMPLES, "hello-file"), path.join(ds, "slow"), { recursive: true });
    const server = await startFakeVllm({ reply: () => ({ text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`], delayMs: 3000 }) });
    try {
      const opts = base({ datasetDir: ds, uniqueTasks: 2, samplesPerTask: 2, concurrency: 4, maxGroupsPerStep: 6, model: modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "train" }) });
      await assert.rejects(runRollout(opts), /every sample of broken-env failed on infrastructure/);
      const stepDir = path.join(opts.outDir, "trials", "step_000001");
      const slowDone = () => readdirSync(stepDir).some((d) => d.startsWith("slow__") && existsSync(path.join(stepDir, d, "result.json")));
      const deadline = Date.now() + 60_000;
      while (!slowDone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok(slowDone(), "the group in flight finishes");
      await new Promise((r) => setTimeout(r, 2000));
      assert.deepEqual([...new Set(readdirSync(stepDir).map((d) => d.replace(/__.*/, "")))].sort(), ["broken-env", "slow"]);
    } finally {
      await server.close();
    }
  });
});
