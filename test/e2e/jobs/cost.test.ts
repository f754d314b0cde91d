// Cost and the cost cap end to end: a scripted model server that reports token usage (some of it cached), real
// podman trials, cost_usd per trial and per job, --max-cost stopping new trials, and resume continuing.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { runJob } from "../../../src/jobs/runner.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { runTmax } from "../../support/cli.js";
import { startFakeVllm, type FakeContext } from "../../support/fake-vllm.js";
import { jobOptions } from "../../support/jobs.js";
import { ENGINE_SKIP, EXAMPLES } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-cost-test-"));
after(() => rm(tmp, { recursive: true, force: true }));

describe("cost_usd and --max-cost", { skip: ENGINE_SKIP }, () => {
  test("each trial's cost is its tokens × the price; the cap stops new trials; resume continues with a higher cap", async (t) => {
    const solve = readFileSync(path.join(EXAMPLES, "hello-file", "solution", "solve.sh"), "utf8");
    const server = await startFakeVllm({
      cachedTokens: 7,
      reply: (ctx: FakeContext) => (ctx.turn === 0 ? { text: "THOUGHT", commands: [solve] } : { text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`] }),
    });
    t.after(() => server.close());
    const price = { input: 3, output: 15, cached_input: 0.3 };
    const notices: string[] = [];
    const opts = jobOptions(tmp, {
      datasetDir: path.join(EXAMPLES, "hello-file"),
      agent: "tmax",
      model: modelConfigFromOptions({ baseUrl: server.baseUrl }),
      k: 3,
      concurrency: 1,
      price,
      maxCostUsd: 1e-9, // the first trial passes it
    });
    const jobResult = () => JSON.parse(readFileSync(path.join(opts.jobDir, "result.json"), "utf8"));

    const first = await runJob(opts, { onNotice: (l) => notices.push(l) });
    assert.equal(first.length, 1, "one trial started before the cap was reached");
    const a = first[0]!.agent_result!;
    assert.ok(a.n_input_tokens! > 0 && a.n_output_tokens! > 0);
    assert.equal(a.n_cache_tokens, 7 * 2, "two turns, 7 cached prompt tokens each");
    const want = ((a.n_input_tokens! - a.n_cache_tokens!) * 3 + a.n_cache_tokens! * 0.3 + a.n_output_tokens! * 15) / 1e6;
    assert.ok(Math.abs(a.cost_usd! - want) < 1e-12, `cost ${a.cost_usd} = ${want}`);
    const onDisk = JSON.parse(readFileSync(path.join(opts.jobDir, first[0]!.trial_name, "result.json"), "utf8"));
    assert.equal(onDisk.agent_result.cost_usd, a.cost_usd, "Harbor's result.json carries agent_result.cost_usd");
    assert.equal(notices.filter((l) => l.startsWith("cost cap reached")).length, 1, notices.join("\n"));
    assert.match(notices.find((l) => l.startsWith("cost cap"))!, /^cost cap reached: \$0\.\d{4} spent of --max-cost \$1e-9; no more trials start \(resume with a higher --max-cost to continue\)$/);
    assert.equal(jobResult().stats.cost_usd, a.cost_usd);
    assert.equal(jobResult().finished_at, null, "a capped job is not finished");

    // resume, no flags: the stored price and cap apply, and the cap is still reached
    notices.length = 0;
    const again = await runJob({ ...opts, price: undefined, maxCostUsd: undefined, resume: true }, { onNotice: (l) => notices.push(l) });
    assert.equal(again.length, 1);
    assert.equal(notices.filter((l) => l.startsWith("cost cap reached")).length, 1);

    // resume with a higher cap: the rest run, each with its cost, summed in the job result
    const done = await runJob({ ...opts, price: undefined, maxCostUsd: 10, resume: true });
    assert.equal(done.length, 3);
    assert.ok(done.every((r) => r.reward === 1 && typeof r.agent_result?.cost_usd === "number" && r.agent_result.cost_usd > 0));
    const total = done.reduce((s, r) => s + r.agent_result!.cost_usd!, 0);
    assert.ok(Math.abs(jobResult().stats.cost_usd - total) < 1e-12);
    assert.notEqual(jobResult().finished_at, null);
    const config = JSON.parse(readFileSync(path.join(opts.jobDir, "config.json"), "utf8"));
    assert.deepEqual([config.price, config.max_cost_usd], [price, 10], "the higher cap is stored for later resumes");
  });

  test("the CLI: a job the cap stopped says how many trials did not start and exits 1; finished, it exits 0", async (t) => {
    const server = await startFakeVllm({ reply: () => ({ text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`] }) });
    t.after(() => server.close());
    const dir = path.join(tmp, "cli-capped");
    const args = ["eval", "-d", path.join(EXAMPLES, "hello-file"), "-a", "tmax", "--base-url", server.baseUrl, "-k", "2", "-n", "1", "--price-input", "3", "--price-output", "15", "--job-dir", dir];
    const capped = await runTmax([...args, "--max-cost", "1e-9"]);
    assert.equal(capped.code, 1, capped.stdout + capped.stderr);
    assert.match(capped.stdout, /^incomplete: 1 of 2 trials did not start \(the --max-cost cap\); continue with a higher cap: tmax eval --resume .* --max-cost USD$/m);
    const resumed = await runTmax(["eval", "--resume", dir, "--max-cost", "10"]);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    assert.doesNotMatch(resumed.stdout, /incomplete/);
    assert.match(resumed.stdout, /over 2 trials/);
  });

  test("no price: cost_usd stays null; --max-cost without a price is refused before the job dir exists", async (t) => {
    const server = await startFakeVllm({ reply: () => ({ text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`] }) });
    t.after(() => server.close());
    const model = modelConfigFromOptions({ baseUrl: server.baseUrl });
    const opts = jobOptions(tmp, { datasetDir: path.join(EXAMPLES, "hello-file"), agent: "tmax", model });
    const [r] = await runJob(opts);
    assert.equal(r!.agent_result!.cost_usd, null);
    assert.equal(JSON.parse(readFileSync(path.join(opts.jobDir, "result.json"), "utf8")).stats.cost_usd, null);
    const capped = jobOptions(tmp, { datasetDir: path.join(EXAMPLES, "hello-file"), agent: "tmax", model, maxCostUsd: 5 });
    await assert.rejects(runJob(capped), (e: Error) => /--max-cost needs the model's price/.test(e.message) && !e.message.includes("\n"));
    assert.throws(() => readFileSync(path.join(capped.jobDir, "config.json")), /ENOENT/);
  });
});
