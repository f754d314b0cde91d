// The explorer end to end: the self-contained HTML report and the local web UI, driven in Debian's headless
// Chromium, over synthetic job dirs and rollout shards whose scores are computed by hand below.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { ROOT } from "../../support/env.js";
import { harborStyleResult, makeTrajectory, writeJobDir, writeRolloutShards, writeTrainerLogprobs, type FixtureTrial } from "../../support/fixtures.js";
import { buildReportData, renderReportHtml } from "../../../src/explore/report.js";
import { startExplorer } from "../../../src/explore/server.js";
import { discoverSources } from "../../../src/explore/load.js";
import { loadRunIndex, readSample, runIndexIsStale, stepAggregates } from "../../../src/explore/rlIndex.js";

const CHROMIUM = "/usr/bin/chromium";
const BROWSER_SKIP: string | false = existsSync(CHROMIUM) ? false : `skipped: ${CHROMIUM} not found (apt-get install -y chromium)`;
if (BROWSER_SKIP) console.log(`# ${BROWSER_SKIP}`);
const ARTIFACTS = path.join(ROOT, "test-artifacts");

let tmp: string;
let data: string; // jobs/ and rl/ below
let jobDirs: string[];
let browser: Browser | null = null;

// Rewards per run (attempt) × task for the tmax job: run means 2/3, 1, 1/3 →
// mean 66.7 %, sample std 33.3 %, SEM 33.3/√3 = 19.2 %.
const TASKS = ["build-cython", "count-lines", "fix-git"];
const QWEN_REWARDS = [
  [1, 0, 1],
  [1, 1, 1],
  [0, 0, 1],
];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-explore-"));
  data = path.join(tmp, "data");
  const jobsRoot = path.join(data, "jobs");
  const qwenTrials: FixtureTrial[] = [];
  QWEN_REWARDS.forEach((row, attempt) =>
    row.forEach((reward, i) =>
      qwenTrials.push({
        task: TASKS[i],
        attempt,
        reward,
        exitStatus: reward ? "submitted" : "step_limit",
        durationSec: 30 + 10 * i + 5 * attempt,
        inputTokens: 10000 + 1000 * i,
        outputTokens: 800 + 100 * attempt,
      }),
    ),
  );
  const qwen = await writeJobDir(jobsRoot, { jobName: "qwen-tb", dataset: "/data/tb2-mini", model: "qwen3.5-9b-tmax", k: 3, trials: qwenTrials });
  // run means (1+0+0)/3 and (1+1+1)/3 → mean 66.7 %, std 47.1 %, SEM 33.3 %
  const gpt = await writeJobDir(jobsRoot, {
    jobName: "gpt-tb",
    dataset: "/data/tb2-mini",
    model: "gpt-x",
    k: 2,
    trials: [
      { task: "fix-git", attempt: 0, reward: 1 },
      { task: "fix-git", attempt: 1, reward: 1 },
      { task: "count-lines", attempt: 0, reward: 0, exception: { type: "AgentTimeoutError", message: "agent ran past 900 s" } },
      { task: "count-lines", attempt: 1, reward: 1 },
      { task: "build-cython", attempt: 0, reward: 0 },
      { task: "build-cython", attempt: 1, reward: 1 },
    ],
  });
  // A job dir written by Harbor (missing tmax fields) with one truncated result.json.
  const harbor = path.join(jobsRoot, "harbor-job");
  await mkdir(path.join(harbor, "hello-world__AbC123x"), { recursive: true });
  await writeFile(path.join(harbor, "hello-world__AbC123x", "result.json"), JSON.stringify(harborStyleResult("hello-world", 1)));
  await mkdir(path.join(harbor, "hello-world__AbC123x", "agent"));
  await writeFile(
    path.join(harbor, "hello-world__AbC123x", "agent", "trajectory.json"),
    JSON.stringify({ schema_version: "ATIF-v1.2", session_id: "s1", steps: [{ step_id: 1, source: "agent", message: "echo hi" }] }),
  );
  await mkdir(path.join(harbor, "broken__x1"), { recursive: true });
  await writeFile(path.join(harbor, "broken__x1", "result.json"), '{"task_name": "broken", "rew');
  jobDirs = [qwen, gpt, harbor];

  // RL: 4 steps × 4 groups × 4 samples. Even groups always fail; odd groups solve step+1 of 4 samples.
  // Mean reward per step = 2·(step+1)/16 → 0.125, 0.25, 0.375, 0.5. Informative groups: 2 of 4 for
  // steps 0–2, none at step 3 (odd groups all 1, even all 0).
  const rl = path.join(data, "rl");
  await writeRolloutShards(rl, {
    run: "tiny",
    steps: 4,
    groups: 4,
    samplesPerGroup: 4,
    recordsPerShard: 24,
    responseTokens: 60,
    promptTokens: 20,
    reward: (step, g, s) => (g % 2 === 1 && s < step + 1 ? 1 : 0),
    trajectoryPath: (step, idx) => (step === 3 && idx === 5 ? "trajectories/s3_5.json" : null),
  });
  await mkdir(path.join(rl, "trajectories"));
  await writeFile(
    path.join(rl, "trajectories", "s3_5.json"),
    JSON.stringify(makeTrajectory({ task: "task-1", turns: [{ reasoning: "look", command: "cat /etc/os-release", exitCode: 0, observation: "Debian" }] })),
  );
  await appendFile(path.join(rl, "tiny_rollouts_000002.jsonl"), '{"step": 3, "sample_idx": 99, "prompt_idx": 1, "rew');
  // Trainer logprobs for steps 0 and 1: sample 0 moves μ = 0.5 → π = 0.7 (D = 0.2 > δ, A > 0, r > 1: all 4
  // tokens masked); sample 1 moves 0.5 → 0.55 (D = 0.05, kept). Masked 4/8 = 0.5; mean |π − μ| = 0.125.
  for (const step of [0, 1]) {
    const line = (sampleIdx: number, pi: number) => ({
      step,
      sample_idx: sampleIdx,
      token_ids: [11, 12, 13, 14, 15],
      trainer_logprobs: [Math.log(pi), Math.log(pi), -0.1, Math.log(pi), Math.log(pi)],
      vllm_logprobs: [Math.log(0.5), Math.log(0.5), -5, Math.log(0.5), Math.log(0.5)],
      response_mask: [1, 1, 0, 1, 1],
      advantage: 1,
    });
    await writeTrainerLogprobs(rl, "tiny", step, [line(0, 0.7), line(1, 0.55)]);
  }
  await mkdir(path.join(tmp, "empty"));
  await mkdir(ARTIFACTS, { recursive: true });
  if (!BROWSER_SKIP) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"],
    });
  }
});

after(async () => {
  await browser?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A page that fails the test on any script error. */
async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1300, height: 900 } });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  return { page, errors };
}

test("report data: model-card cells are mean ± SEM over runs, with std and n", async () => {
  const { data: d } = await buildReportData(jobDirs, { baseDir: tmp });
  assert.deepEqual(d.benchmarks, ["tb2-mini", "terminal-bench"]);
  assert.deepEqual(d.models, ["gpt-5", "gpt-x", "qwen3.5-9b-tmax"]);
  const q = d.cells["tb2-mini"]["qwen3.5-9b-tmax"];
  assert.equal(q.n, 3);
  assert.ok(Math.abs(q.mean - 2 / 3) < 1e-12);
  assert.ok(Math.abs(q.std - 1 / 3) < 1e-12);
  assert.ok(Math.abs(q.sem - 1 / 3 / Math.sqrt(3)) < 1e-12);
  // the model card, as `tmax report` prints it: rows = model, columns = benchmark, each cell keyed by its job
  const qc = d.card.cells["qwen3.5-9b-tmax"]!["tb2-mini"]!;
  assert.equal(qc.job, "qwen-tb");
  assert.deepEqual([qc.runs, qc.trials, qc.errors], [3, 9, 0]);
  assert.ok(Math.abs(qc.sem - 1 / 3 / Math.sqrt(3)) < 1e-12);
  const gc = d.card.cells["gpt-x"]!["tb2-mini"]!;
  assert.deepEqual([gc.runs, gc.trials, gc.errors], [2, 6, 1]);
  const g = d.cells["tb2-mini"]["gpt-x"];
  assert.equal(g.n, 2);
  assert.ok(Math.abs(g.std - Math.SQRT2 / 3) < 1e-12);
  const h = d.cells["terminal-bench"]["gpt-5"];
  assert.equal(h.n, 1);
  assert.equal(h.mean, 1);
  const trial = d.trials.find((t) => t.model === "qwen3.5-9b-tmax" && t.task === "count-lines" && t.attempt === 0)!;
  assert.equal(trial.trajectoryHref, "./data/jobs/qwen-tb/count-lines__0/agent/trajectory.json");
  const problems = d.issues.map((i) => `${path.basename(path.dirname(i.file))}: ${i.problem}`);
  assert.ok(problems.some((p) => p.startsWith("hello-world__AbC123x: not a complete tmax trial result (missing attempt")), problems.join("\n"));
  assert.ok(problems.some((p) => p.startsWith("broken__x1: invalid JSON")), problems.join("\n"));
});

test("HTML report in Chromium: table values, 5 charts, trajectory reader, issues", { skip: BROWSER_SKIP }, async () => {
  const out = path.join(tmp, "report.html");
  await writeFile(out, await renderReportHtml(jobDirs, { baseDir: tmp }));
  const { page, errors } = await openPage();
  try {
    await page.goto(`file://${out}`);
    const cell = (model: string) => page.locator(`td.cell[data-benchmark="tb2-mini"][data-row="${model}"]`);
    assert.equal(await cell("qwen3.5-9b-tmax").locator(".mean").textContent(), "66.7 ± 19.2 SEM");
    assert.equal(await cell("qwen3.5-9b-tmax").locator(".detail").first().textContent(), "std 33.3 · 3 runs · 9 trials · 0 errors");
    assert.equal(await cell("gpt-x").locator(".mean").textContent(), "66.7 ± 33.3 SEM");
    assert.equal(await cell("gpt-x").locator(".detail").first().textContent(), "std 47.1 · 2 runs · 6 trials · 1 errors");
    assert.match((await page.locator(".legend").first().textContent())!, /SEM over runs/);
    assert.equal(await page.locator("#charts canvas").count(), 5);
    // every chart drew something
    const drawn = (await page.evaluate(
      `Array.from(document.querySelectorAll("#charts canvas")).map((c) => Chart.getChart(c).data.datasets.length)`,
    )) as number[];
    assert.ok(drawn.every((n) => n > 0), `datasets per chart: ${drawn}`);
    const issues = (await page.locator("[data-testid=issues]").textContent())!;
    assert.match(issues, /hello-world__AbC123x\/result\.json — not a complete tmax trial result \(missing attempt/);
    assert.match(issues, /broken__x1\/result\.json — invalid JSON/);
    await page.screenshot({ path: path.join(ARTIFACTS, "report.png"), fullPage: true });

    const row = page.locator("#trials tbody tr", { hasText: "count-lines" }).filter({ hasText: "qwen3.5-9b-tmax" }).first();
    await row.click();
    const view = page.locator("#trajectory-view");
    await view.locator("[data-testid=trajectory]").waitFor();
    const commands = await view.locator("pre.cmd").allTextContents();
    assert.deepEqual(commands, ["$ ls -la /app", "$ python3 solve.py --task count-lines", "$ echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"]);
    assert.ok((await view.locator(".exec-head .badge").allTextContents()).includes("exit 1"));
    // thinking is collapsed
    assert.equal(await view.locator("details.thinking[open]").count(), 0);
    assert.equal(await view.locator("details.thinking").count(), 3);
    // the trajectory file link is relative to the report
    assert.equal(await view.locator("a", { hasText: "open trajectory.json" }).getAttribute("href"), "./data/jobs/qwen-tb/count-lines__0/agent/trajectory.json");
    await view.screenshot({ path: path.join(ARTIFACTS, "report-trajectory.png") });

    await page.locator("#f-reward").selectOption("1");
    assert.equal(await page.locator("#f-count").textContent(), "11 of 16 trials");
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test("rollout index: streamed aggregates, DPPO stats, truncated line reported, seek to one sample, cache", async () => {
  const d = await discoverSources(data);
  assert.equal(d.rollouts.length, 1);
  const set = d.rollouts[0];
  assert.equal(set.shards.length, 3);
  assert.equal(set.trainerLogprobs.length, 2);
  const cacheDir = path.join(tmp, "cache-unit");
  const ix = await loadRunIndex(set, { cacheDir });
  assert.equal(ix.samples.step.length, 64);
  const steps = stepAggregates(ix);
  assert.deepEqual(steps.map((s) => s.meanReward), [0.125, 0.25, 0.375, 0.5]);
  assert.deepEqual(steps.map((s) => s.fracInformative), [0.5, 0.5, 0.5, 0]);
  assert.equal(steps[0].fracMasked, 0.5);
  assert.ok(Math.abs(steps[0].meanAbsDiff! - 0.125) < 1e-12);
  assert.equal(steps[2].fracMasked, null);
  assert.ok(ix.issues.some((i) => i.file.endsWith("tiny_rollouts_000002.jsonl") && /^line 17: invalid JSON/.test(i.problem)), JSON.stringify(ix.issues));
  const one = await readSample(ix, 2, 5);
  assert.equal(one.record!.step, 2);
  assert.equal(one.record!.sample_idx, 5);
  assert.equal(one.trainer, null);
  const withTrainer = await readSample(ix, 1, 0);
  assert.deepEqual(withTrainer.trainer!.token_ids, [11, 12, 13, 14, 15]);
  // second load comes from the per-file cache: nothing is scanned
  assert.equal((await readdir(cacheDir)).length, 5);
  let scanned = -1;
  const again = await loadRunIndex(set, { cacheDir, onProgress: (p) => (scanned = p.bytesTotal) });
  assert.equal(scanned, 0);
  assert.equal(again.buildMs, 0);
  assert.deepEqual(stepAggregates(again), steps);
  assert.deepEqual(again.issues, ix.issues);
});

test("rollout index: a growing run rescans only the new shard", async () => {
  const dir = path.join(tmp, "growing");
  const first = await writeRolloutShards(dir, { run: "live", steps: 2, groups: 2, samplesPerGroup: 4, recordsPerShard: 8, responseTokens: 30, promptTokens: 5 });
  const memo = new Map();
  const set1 = (await discoverSources(dir)).rollouts[0];
  const ix1 = await loadRunIndex(set1, { cacheDir: null, memo });
  assert.equal(ix1.samples.step.length, 16);
  // the trainer writes step 2 into a new shard
  const more = await writeRolloutShards(path.join(tmp, "growing-tmp"), { run: "live", steps: 3, groups: 2, samplesPerGroup: 4, recordsPerShard: 8, responseTokens: 30, promptTokens: 5 });
  const newShard = path.join(dir, path.basename(more.files[2]));
  await writeFile(newShard, await readFile(more.files[2]));
  assert.equal(first.files.length, 2);
  const set2 = (await discoverSources(dir)).rollouts[0];
  assert.equal(await runIndexIsStale(set2, ix1), true);
  let scanned = -1;
  const ix2 = await loadRunIndex(set2, { cacheDir: null, memo, onProgress: (p) => (scanned = p.bytesTotal) });
  assert.equal(scanned, (await stat(newShard)).size);
  assert.equal(ix2.samples.step.length, 24);
  assert.deepEqual(stepAggregates(ix2).map((s) => s.step), [0, 1, 2]);
  assert.equal(await runIndexIsStale(set2, ix2), false);
});

test("web UI in Chromium: trial conversation, RL charts, sample view, issues, server survives bad requests", { skip: BROWSER_SKIP }, async () => {
  const explorer = await startExplorer({ dir: data, port: 0, cacheDir: path.join(tmp, "cache-ui") });
  const get = (p: string) => fetch(new URL(p, explorer.url));
  const { page, errors } = await openPage();
  try {
    // overview → job → trial
    await page.goto(explorer.url);
    await page.locator("a", { hasText: "qwen-tb" }).click();
    await page.locator("tr[data-trial='count-lines__0']").click();
    await page.locator("[data-testid=trajectory]").waitFor();
    assert.match(page.url(), /#\/trial\/jobs%2Fqwen-tb\/count-lines__0$/);
    const commands = await page.locator("pre.cmd").allTextContents();
    assert.deepEqual(commands, ["$ ls -la /app", "$ python3 solve.py --task count-lines", "$ echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"]);
    assert.deepEqual(await page.locator(".exec-head .badge").allTextContents(), ["exit 0", "exit 1", "exit 0"]);
    assert.match((await page.locator("pre.obs").nth(1).textContent())!, /ValueError: bad input/);
    assert.equal(await page.locator("details.thinking[open]").count(), 0);
    // per-token logprob heat-map of turn 1, collapsed until opened
    const lp = page.locator("summary", { hasText: "token logprobs (6 tokens" });
    await lp.click();
    assert.deepEqual(await page.locator(".turn[data-step='0'] .heatmap span").allTextContents(), ["<tool_call>", "ls", " -la", " /app", "</tool_call>", "<|im_end|>"]);
    assert.equal(await page.locator(".turn[data-step='0'] .heatmap span").nth(2).getAttribute("title"), "logprob -1.300");
    await page.screenshot({ path: path.join(ARTIFACTS, "explore-trial.png"), fullPage: true });

    // filters on the job page
    await page.goto(`${explorer.url}#/job/jobs%2Fqwen-tb`);
    await page.locator("select[data-filter=exit]").selectOption("step_limit");
    assert.equal(await page.locator("tr[data-trial]:visible").count(), 3);

    // RL page: reward per step from the index
    await page.goto(`${explorer.url}#/rl/rl%3A%3Atiny`);
    const rewardCanvas = page.locator("[data-chart='Mean reward per step'] canvas");
    await rewardCanvas.waitFor();
    // a string, not a function: tsx would wrap named inner functions in a helper the page does not have
    const series = (await page.evaluate(`(() => {
      const get = (title) => Chart.getChart(document.querySelector("[data-chart='" + title + "'] canvas")).data.datasets[0].data;
      return { reward: get("Mean reward per step"), informative: get("Informative groups per step"), masked: get("DPPO trust region") };
    })()`)) as { reward: number[]; informative: number[]; masked: number[] };
    assert.deepEqual(series.reward, [0.125, 0.25, 0.375, 0.5]);
    assert.deepEqual(series.informative, [50, 50, 50, 0]);
    assert.deepEqual(series.masked, [50, 50]);
    assert.equal(await page.locator(".chart-card canvas").count(), 6);
    assert.match((await page.locator("[data-testid=issues]").textContent())!, /tiny_rollouts_000002\.jsonl — line 17: invalid JSON/);
    await page.locator("select[data-filter=step]").selectOption("3");
    await page.waitForFunction(() => document.querySelectorAll("[data-testid=sample-table] tbody tr").length === 16);
    await page.screenshot({ path: path.join(ARTIFACTS, "explore-rl.png"), fullPage: true });
    await page.locator("tr[data-sample='3:5']").click();
    await page.locator("h1", { hasText: "Step 3 · sample 5" }).waitFor();
    assert.match((await page.locator("h2", { hasText: "Tool calls" }).textContent())!, /Tool calls \(\d+\)/);
    assert.ok((await page.locator(".heatmap span").count()) > 0);
    await page.locator("[data-testid=open-trajectory]").click();
    await page.locator("[data-testid=trajectory]").waitFor();
    assert.deepEqual(await page.locator("pre.cmd").allTextContents(), ["$ cat /etc/os-release"]);
    assert.equal((await get("/api/trajectory-file?path=..%2F..%2Fetc%2Fpasswd")).status, 403);
    await page.goto(`${explorer.url}#/sample/rl%3A%3Atiny/1/0`);
    await page.locator("h2", { hasText: "Learner vs sampler" }).waitFor();
    assert.equal(await page.locator(".heatmap span.masked").count(), 4);
    await page.screenshot({ path: path.join(ARTIFACTS, "explore-sample.png"), fullPage: true });

    // bad input shown in the page
    await page.goto(`${explorer.url}#/job/jobs%2Fharbor-job`);
    const jobIssues = (await page.locator("[data-testid=issues]").textContent())!;
    assert.match(jobIssues, /result\.json — not a complete tmax trial result \(missing attempt, reward\b.*\)/);
    assert.match(jobIssues, /broken__x1\/result\.json — invalid JSON/);
    await page.screenshot({ path: path.join(ARTIFACTS, "explore-bad-job.png"), fullPage: true });
    await page.locator("tr[data-trial='hello-world__AbC123x']").click();
    await page.locator("[data-testid=trajectory]").waitFor();
    // Harbor's ATIF trajectories are read natively (src/results/atif.ts): the agent's step is shown as a conversation
    assert.match((await page.locator("[data-testid=trajectory]").textContent())!, /echo hi/);
    await page.goto(`${explorer.url}#/job/nope`);
    assert.match((await page.locator("[data-testid=issues]").textContent())!, /no job dir "nope"/);

    // the server answers bad requests and keeps serving
    assert.equal((await get("/api/job?id=nope")).status, 404);
    assert.equal((await get("/api/rl/sample?id=rl%3A%3Atiny&step=x&idx=1")).status, 400);
    assert.equal((await get("/api/trial?job=jobs%2Fqwen-tb&trial=..%2F..%2Fetc")).status, 404);
    assert.equal((await get("/nothing")).status, 404);
    const sources = await get("/api/sources");
    assert.equal(sources.status, 200);
    assert.equal(((await sources.json()) as { jobs: unknown[] }).jobs.length, 3);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await explorer.close();
  }
});

test("web UI over an empty dir: an issues panel, not a blank page", { skip: BROWSER_SKIP }, async () => {
  const explorer = await startExplorer({ dir: path.join(tmp, "empty"), port: 0, cacheDir: null });
  const { page, errors } = await openPage();
  try {
    await page.goto(explorer.url);
    const text = (await page.locator("[data-testid=issues]").textContent())!;
    assert.match(text, /no job directories or rollout shards \(\*_rollouts_NNNNNN\.jsonl\) found within 3 levels/);
    assert.match((await page.locator(".empty").textContent())!, /Nothing to show yet/);
    await page.screenshot({ path: path.join(ARTIFACTS, "explore-empty.png"), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await explorer.close();
  }
});

test("report over an empty job dir and a missing one: issues, no crash", async () => {
  const html = await renderReportHtml([path.join(tmp, "empty"), path.join(tmp, "missing")]);
  assert.match(html, /no trials with result\.json/);
  assert.match(html, /cannot open job dir: file not found/);
  assert.match(html, /No finished trials to score/);
});
