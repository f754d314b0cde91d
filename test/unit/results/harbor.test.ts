// Harbor interoperability both ways: the files `tmax eval` writes validate against JSON Schemas derived from Harbor's
// models (oracle and the tmax agent with a scripted model), and report/explore read a job dir in Harbor's layout.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { loadJob, loadTrajectory } from "../../../src/explore/load.js";
import { renderReportHtml } from "../../../src/explore/report.js";
import { diffJobs, modelCard, renderCardMarkdown, renderMarkdown, reportJob, reportJson } from "../../../src/results/report.js";
import { RUN_ASSIGNMENT_BY_START } from "../../../src/results/read.js";
import { writeHarborJobDir, type HarborFixtureTrial } from "../../support/harbor.js";
import { writeJobDir } from "../../support/fixtures.js";
import { ROOT } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-harbor-test-"));
after(() => rm(tmp, { recursive: true, force: true }));
const cli = (args: string[]) => spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, encoding: "utf8" });

// 3 tasks × 2 attempts; run 0 = the earlier start of each task. Per run: run 0 = (1 + 0 + 1)/3, run 1 = (1 + 1 + 0)/3.
const harborTrials: HarborFixtureTrial[] = [
  { task: "chess-best-move", reward: 1, startSec: 0 },
  { task: "chess-best-move", reward: 1, startSec: 100 },
  { task: "fix-git", reward: 0, startSec: 10 },
  { task: "fix-git", reward: 1, startSec: 200 },
  { task: "regex-log", reward: 1, startSec: 20 },
  { task: "regex-log", reward: null, startSec: 300, exception: { type: "AgentTimeoutError", message: "agent timed out after 900s" } },
];

describe("a job dir in Harbor's layout", () => {
  test("report reads it: runs by start time, missing tmax fields said, never 'holds no job'", async () => {
    const { dir } = await writeHarborJobDir(tmp, { name: "harbor-tb2", model: "hosted_vllm/tmax-9b", k: 2, trials: harborTrials });
    const r = reportJob(dir);
    assert.equal(r.format, "harbor");
    assert.equal(r.benchmark, "terminal-bench@2.0");
    assert.equal(r.model, "hosted_vllm/tmax-9b");
    assert.equal(r.k, 2);
    assert.equal(r.runAssignment, RUN_ASSIGNMENT_BY_START);
    assert.deepEqual(r.scores.runMeans.map((x) => +x.toFixed(4)), [+(2 / 3).toFixed(4), +(2 / 3).toFixed(4)]);
    assert.equal(r.counts.errors, 1);
    assert.equal(r.counts.infra_errors, 0, "an agent timeout is not infrastructure");
    assert.ok(r.issues.some((i) => /lack tmax fields .*reward.*attempt|lack tmax fields .*attempt/.test(i.problem)), JSON.stringify(r.issues));
    // order independence of the order-independent uncertainty: SEM over per-task variance
    // chess 0 var, fix-git var 0.5/2, regex var 0.5/2 → √(0.5)/3
    assert.ok(Math.abs(r.uncertainty.semTasksFixed - Math.sqrt(0.5) / 3) < 1e-9);
    const md = renderMarkdown([r]);
    assert.match(md, /runs assigned per task by started_at/);
    const out = cli(["report", dir]);
    assert.equal(out.status, 0, out.stderr);
    assert.doesNotMatch(out.stdout + out.stderr, /holds no/);
    assert.match(out.stdout, /score: 66\.7%/);
  });

  test("exception.txt alone marks the error; a result.json with null metadata reads", async () => {
    const { dir } = await writeHarborJobDir(tmp, {
      name: "harbor-infra",
      model: "tmax-9b",
      k: 1,
      trials: [
        { task: "a", reward: 1, startSec: 0 },
        { task: "b", reward: null, startSec: 5, exception: { type: "DaytonaError", message: "sandbox creation failed", onlyTxt: true } },
      ],
    });
    const r = reportJob(dir);
    assert.equal(r.counts.errors, 1);
    assert.equal(r.counts.infra_errors, 1);
    assert.equal(r.scores.score.mean, 0.5);
    assert.equal(r.infraClean.mean, 1, "with the infrastructure error left out only task a remains");
    assert.equal(r.scores.errors[0]!.exception_type, "DaytonaError");
  });

  test("explore and the HTML report read it, including the message-list trajectory", async () => {
    const dir = path.join(tmp, "harbor-tb2");
    const job = await loadJob(dir);
    assert.equal(job.benchmark, "terminal-bench@2.0");
    assert.equal(job.model, "hosted_vllm/tmax-9b");
    assert.equal(job.k, 2);
    assert.equal(job.trials.length, 6);
    const t = job.trials.find((x) => x.trajectory)!;
    const { trajectory, issues } = await loadTrajectory(t.trajectory!);
    assert.ok(trajectory, JSON.stringify(issues));
    const steps = trajectory!.steps as { toolCall?: { command: string }; executions: { observation: string }[] }[];
    assert.equal(steps.length, 2);
    assert.equal(steps[0]!.toolCall!.command, "ls /app");
    assert.equal(steps[0]!.executions[0]!.observation, "data.txt\n");
    const html = await renderReportHtml([dir]);
    assert.match(html, /data-testid="model-card"/);
    assert.match(html, /data-benchmark="terminal-bench@2.0"[^>]*data-mean="66.7"/);
  });
});

describe("the model card over several job dirs", () => {
  test("rows keyed by job when model names collide; markdown, JSON and HTML agree; --label", async () => {
    const mk = (name: string, rewards: number[][]) =>
      writeJobDir(tmp, { jobName: name, dataset: "/data/tb2-offline", model: "tmax-9b", k: rewards[0]!.length, trials: rewards.flatMap((rs, ti) => rs.map((reward, attempt) => ({ task: `t${ti}`, attempt, reward }))) });
    const a = await mk("ckpt-100", [[1, 1], [0, 1], [0, 0]]);
    const b = await mk("ckpt-200", [[1, 0], [1, 1], [1, 0]]);
    const { dir: h } = await writeHarborJobDir(tmp, { name: "harbor-card", model: "tmax-9b", k: 2, trials: harborTrials });
    const reports = [reportJob(a), reportJob(b), reportJob(h, "tmax-9b (Harbor)")];
    const card = modelCard(reports);
    assert.deepEqual(card.rows, ["tmax-9b (ckpt-100)", "tmax-9b (ckpt-200)", "tmax-9b (Harbor)"]);
    assert.deepEqual(card.columns, ["tb2-offline", "terminal-bench@2.0"]);
    const md = renderCardMarkdown(card);
    const json = reportJson(reports) as { card: typeof card };
    const html = await renderReportHtml([a, b, h], { card });
    for (const row of card.rows) {
      for (const col of card.columns) {
        const cell = json.card.cells[row]?.[col];
        if (!cell) continue;
        const mean = (100 * cell.mean).toFixed(1);
        const sem = (100 * cell.sem).toFixed(1);
        assert.ok(md.includes(`| ${row} | `) && md.includes(`${mean} ± ${sem} SEM`), `markdown lacks ${row}/${col} ${mean} ± ${sem}`);
        assert.match(html, new RegExp(`data-row="${row.replace(/[()]/g, "\\$&")}" data-benchmark="${col}" data-job="${cell.job}" data-mean="${mean}" data-sem="${sem}"`));
      }
    }
    // CLI: same numbers, labels applied in order
    const out = cli(["report", a, b, "--label", "step 100", "--label", "step 200", "--json"]);
    assert.equal(out.status, 0, out.stderr);
    const parsed = JSON.parse(out.stdout);
    assert.deepEqual(parsed.card.rows, ["step 100", "step 200"]);
    assert.equal(parsed.card.cells["step 100"]["tb2-offline"].mean, json.card.cells["tmax-9b (ckpt-100)"]!["tb2-offline"]!.mean);
    // the bootstrap is seeded: the same numbers on every call
    assert.deepEqual(reportJob(a).uncertainty.bootstrap, reports[0]!.uncertainty.bootstrap);
  });

  test("--diff: tasks that flipped solved→failed and back", async () => {
    const a = path.join(tmp, "ckpt-100");
    const b = path.join(tmp, "ckpt-200");
    const d = diffJobs(reportJob(a), reportJob(b));
    assert.deepEqual(Object.fromEntries(d.tasks.map((t) => [t.task, t.change])), { t0: "same", t1: "same", t2: "failed→solved" });
    const rev = diffJobs(reportJob(b), reportJob(a));
    assert.equal(rev.counts["solved→failed"], 1);
    const out = cli(["report", a, b, "--diff"]);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /\| t2 \| 0\/2 \(0\.0%\) \| 1\/2 \(50\.0%\) \| failed→solved \|/);
  });
});

