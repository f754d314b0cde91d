// Scores and pages of real jobs: oracle and nop on Terminal-Bench 2 tasks, scored, compared, rendered.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { runJob, type JobOptions } from "../../../src/jobs/runner.js";
import { renderComparison, renderMarkdown, reportJob } from "../../../src/results/report.js";
import { writeReportHtml } from "../../../src/explore/report.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { startFakeVllm } from "../../support/fake-vllm.js";
import { jobOptions } from "../../support/jobs.js";
import { ENGINE_SKIP, EXAMPLES, ROOT, SHARED_SKIP, SHARED_TASKS } from "../../support/env.js";

const CHROMIUM = "/usr/bin/chromium";
const BROWSER_SKIP: string | false = existsSync(CHROMIUM) ? false : `skipped: ${CHROMIUM} not found (apt-get install -y chromium)`;

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-report-test-"));
after(() => rm(tmp, { recursive: true, force: true }));

const job = (over: Partial<JobOptions>) => jobOptions(tmp, { datasetDir: SHARED_TASKS, k: 2, ...over });

describe("reports of real Terminal-Bench 2 jobs", { skip: ENGINE_SKIP || SHARED_SKIP }, () => {
  let oracleDir: string;
  let nopDir: string;
  before(async () => {
    const oracle = job({ agent: "oracle" });
    const nop = job({ agent: "nop" });
    await runJob(oracle);
    await runJob(nop);
    oracleDir = oracle.jobDir;
    nopDir = nop.jobDir;
  });

  test("markdown and JSON scores: per-run means, std and SEM labelled, pass@k, per-task table", () => {
    const oracle = reportJob(oracleDir);
    assert.equal(oracle.benchmark, "tb2-offline");
    assert.equal(oracle.model, "oracle");
    assert.deepEqual(oracle.scores.runMeans, [1, 1]);
    assert.equal(oracle.scores.score.mean, 1);
    assert.equal(oracle.scores.score.std, 0);
    assert.equal(oracle.scores.passAtK["2"].value, 1);
    assert.equal(oracle.scores.tasks.length, 4);
    const md = renderMarkdown([oracle]);
    assert.match(md, /\*\*score: 100\.0%\*\* — sample std 0\.0 · SEM 0\.0 \(std\/√2 runs\)/);
    assert.match(md, /\| regex-log \| 2 \| 2 \| 1\.000 \| 1\.000 \| 1\.000 \| 0 \|/);
    const table = renderComparison([oracle, reportJob(nopDir)]);
    // the model card: rows = model, columns = benchmark (all trials, then infrastructure errors left out)
    assert.match(table, /^\| model \| tb2-offline \| tb2-offline excl\. infra \|/);
    assert.match(table, /\| oracle \| 100\.0 ± 0\.0 SEM \(std 0\.0, 2 runs\); 8 trials, 0 errors \| 100\.0 \(0 infra errors left out\) \|/);
    assert.match(table, /\| nop \| 0\.0 ± 0\.0 SEM \(std 0\.0, 2 runs\); 8 trials, 0 errors \|/);
    assert.match(table, /SEM over runs/);
  });

  test("the HTML report of the oracle job renders in Chromium", { skip: BROWSER_SKIP }, async () => {
    const out = path.join(tmp, "tb2.html");
    await writeReportHtml([oracleDir, nopDir], out);
    const html = readFileSync(out, "utf8");
    assert.equal(/<script[^>]+src=["']https?:/.test(html), false, "no network at view time");
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`file://${out}`);
      const cell = (model: string) => page.locator(`td.cell[data-benchmark="tb2-offline"][data-row="${model}"]`);
      assert.equal(await cell("oracle").locator(".mean").textContent(), "100.0 ± 0.0 SEM");
      assert.equal(await cell("nop").locator(".mean").textContent(), "0.0 ± 0.0 SEM");
      assert.equal(await page.locator("#charts canvas").count(), 5);
      assert.equal(await page.locator("#trials tbody tr").count(), 16);
      await mkdir(path.join(ROOT, "test-artifacts"), { recursive: true });
      await page.screenshot({ path: path.join(ROOT, "test-artifacts", "report-tb2.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});

describe("agent timeout", { skip: ENGINE_SKIP }, () => {
  test("an agent that runs out of time is recorded and the verifier still runs", async () => {
    const ds = path.join(tmp, "slow");
    await cp(path.join(EXAMPLES, "hello-file"), path.join(ds, "hello-file"), { recursive: true });
    const toml = path.join(ds, "hello-file", "task.toml");
    await writeFile(toml, readFileSync(toml, "utf8").replace(/\[agent\][^[]*/, "[agent]\ntimeout_sec = 3.0\n\n"));
    const server = await startFakeVllm({ reply: () => ({ text: "THOUGHT: wait", commands: ["sleep 60"] }) });
    try {
      const started = Date.now();
      const [r] = await runJob(job({ datasetDir: ds, agent: "tmax", k: 1, concurrency: 1, model: modelConfigFromOptions({ baseUrl: server.baseUrl }) }));
      assert.ok(Date.now() - started < 40_000);
      assert.equal(r.exception_info?.exception_type, "AgentTimeoutError");
      assert.equal(r.agent_result?.exit_status, "timeout");
      assert.deepEqual(r.verifier_result, { rewards: { reward: 0 } });
      assert.ok(r.verifier);
    } finally {
      await server.close();
    }
  });
});
