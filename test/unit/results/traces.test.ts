// `tmax traces export`: tmax's and Harbor's job dirs → SFT messages JSONL, Harbor's trace rows, Parquet. The JSONL
// is read back by Python's json module and the Parquet file by hyparquet; the messages must equal the trajectory's.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { toAtif } from "../../../src/results/atif.js";
import { readTraceParquet } from "../../../src/results/tracesParquet.js";
import { collectTraces, findJobDirs, harborRows, readConversation } from "../../../src/results/traces.js";
import { ROOT } from "../../support/env.js";
import { makeTrajectory, writeJobDir } from "../../support/fixtures.js";
import { writeHarborJobDir } from "../../support/harbor.js";

const root = await mkdtemp(path.join(tmpdir(), "tmax-traces-"));
after(() => rm(root, { recursive: true, force: true }));

function tmax(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src", "cli", "main.ts"), ...args], { encoding: "utf8", cwd: ROOT });
}

const job = await writeJobDir(root, {
  jobName: "tb-run",
  dataset: "/data/tasks",
  model: "tmax-9b",
  k: 2,
  trials: [
    { task: "hello", attempt: 0, reward: 1 },
    { task: "hello", attempt: 1, reward: 0 },
    { task: "count", attempt: 0, reward: 1 },
    { task: "count", attempt: 1, reward: 0, exception: { type: "AgentTimeoutError", message: "too slow" } },
  ],
});
const trajectoryMessages = async (trial: string) => JSON.parse(await readFile(path.join(job, trial, "agent", "trajectory.json"), "utf8")).messages;

test("sft export: successful trials only by default, every one with --all; Python's json reads the messages the trajectory has", async () => {
  const out = path.join(root, "sft.jsonl");
  const run = tmax(["traces", "export", job, "-o", out]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /2 row\(s\) from 2 trial\(s\)/);
  const py = spawnSync("python3", ["-c", "import json,sys\nfor l in open(sys.argv[1]):\n  r=json.loads(l)\n  print(json.dumps([r['metadata']['trial'], r['metadata']['reward'], r['messages'], r['tools'][0]['function']['name']]))", out], { encoding: "utf8" });
  assert.equal(py.status, 0, py.stderr);
  const rows = py.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((r) => [r[0], r[1]]).sort(), [["count__0", 1], ["hello__0", 1]]);
  for (const [trial, , messages, tool] of rows) {
    assert.deepEqual(messages, await trajectoryMessages(trial), `${trial}: messages as the trajectory holds them`);
    assert.equal(tool, "bash");
  }

  const all = path.join(root, "all.jsonl");
  assert.equal(tmax(["traces", "export", job, "-o", all, "--all"]).status, 0);
  const lines = (await readFile(all, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 4);
  assert.deepEqual(lines.map((l) => [l.metadata.trial, l.metadata.reward, l.metadata.exception]).sort(), [["count__0", 1, null], ["count__1", 0, "AgentTimeoutError"], ["hello__0", 1, null], ["hello__1", 0, null]]);
});

test("filters: --min-reward, --task, --job (by name), and a dir of job dirs", async () => {
  const other = await writeJobDir(root, { jobName: "other-run", dataset: "/data/tasks", model: "m", k: 1, trials: [{ task: "hello", attempt: 0, reward: 0.5 }] });
  const dirs = findJobDirs([root]).filter((d) => d === job || d === other);
  assert.equal(dirs.length, 2);
  assert.deepEqual(collectTraces(dirs, { minReward: 0.5, all: true }).map((r) => r.metadata.trial).sort(), ["count__0", "hello__0", "hello__0"]);
  assert.deepEqual(collectTraces(dirs, { tasks: ["count"], all: true }).map((r) => r.metadata.trial).sort(), ["count__0", "count__1"]);
  assert.deepEqual(collectTraces(dirs, { jobs: ["other-run"] }).map((r) => [r.metadata.job, r.metadata.reward]), [["other-run", 0.5]]);
  const bad = tmax(["traces", "export", path.join(root, "nowhere"), "-o", path.join(root, "x.jsonl")]);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim().split("\n").length, 1, "one line");
});

test("parquet export reads back (hyparquet) with the same messages and metadata", async () => {
  const out = path.join(root, "traces.parquet");
  const run = tmax(["traces", "export", job, "--format", "parquet", "-o", out, "--all"]);
  assert.equal(run.status, 0, run.stderr);
  const rows = await readTraceParquet(out);
  assert.equal(rows.length, 4);
  for (const r of rows) {
    assert.deepEqual(r.messages, await trajectoryMessages(String(r.trial)));
    assert.equal(typeof r.reward, "number");
  }
  assert.deepEqual(rows.map((r) => [r.trial, r.exception ?? null]).sort(), [["count__0", null], ["count__1", "AgentTimeoutError"], ["hello__0", null], ["hello__1", null]]);
});

test("harbor rows: one per assistant turn (or the last), text-only roles, reward bucket as Harbor writes it", async () => {
  const [row] = collectTraces([job], { tasks: ["hello"] });
  const turns = row!.messages.filter((m) => m.role === "assistant").length;
  const rows = harborRows(row!, "all");
  assert.equal(rows.length, turns);
  assert.deepEqual(rows.map((r) => r.episode), Array.from({ length: turns }, (_, i) => `episode-${i}`));
  const last = harborRows(row!, "last");
  assert.equal(last.length, 1);
  const conv = last[0]!.conversations as { role: string; content: string }[];
  assert.equal(conv.at(-1)!.role, "assistant");
  assert.ok(conv.every((m) => ["system", "user", "assistant"].includes(m.role)));
  assert.equal(last[0]!.result, "1.0");
  assert.equal(last[0]!.trial_name, "hello__0");
  assert.equal(last[0]!.run_id, "tb-run");
  const out = path.join(root, "harbor.jsonl");
  assert.equal(tmax(["traces", "export", job, "--format", "harbor", "--episodes", "last", "-o", out]).status, 0);
  assert.equal((await readFile(out, "utf8")).trim().split("\n").length, 2);
});

test("Harbor job dirs: a plain message list and ATIF trajectories become chat messages", async () => {
  const { dir, trialDirs } = await writeHarborJobDir(root, { name: "harbor-job", model: "hosted_vllm/tmax-9b", k: 1, trials: [{ task: "t1", reward: 1, startSec: 0 }] });
  const rows = collectTraces([dir]);
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0]!.messages, JSON.parse(await readFile(path.join(dir, trialDirs[0]!, "agent", "trajectory.json"), "utf8")));

  const t = makeTrajectory({ task: "t1" });
  await writeFile(path.join(dir, trialDirs[0]!, "agent", "trajectory.json"), JSON.stringify(toAtif(t, { sessionId: "s" })));
  const conv = readConversation(path.join(dir, trialDirs[0]!));
  assert.ok(!("problem" in conv));
  const assistants = conv.messages.filter((m) => m.role === "assistant");
  assert.equal(assistants.length, t.steps.length);
  assert.deepEqual(assistants.map((m) => JSON.parse((m.tool_calls as any)[0].function.arguments).command), t.steps.map((s) => s.toolCall!.command));
  assert.deepEqual(conv.messages.filter((m) => m.role === "tool").map((m) => m.content), t.steps.flatMap((s) => s.executions!.map((e) => e.observation)));
});

test("an export round-trips: traces import → job dirs the explorer loads → export again gives the same rows; bad rows are skipped by line", async () => {
  for (const format of ["sft", "parquet"] as const) {
    const file = path.join(root, `round.${format === "sft" ? "jsonl" : "parquet"}`);
    assert.equal(tmax(["traces", "export", job, "--format", format, "-o", file, "--all"]).status, 0);
    const out = path.join(root, `imported-${format}`);
    const run = tmax(["traces", "import", file, "-o", out]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /imported 4 trial\(s\) into 1 job dir/);
    const back = collectTraces(findJobDirs([out]), { all: true });
    const before = collectTraces([job], { all: true });
    const key = (r: { metadata: { trial: string } }) => r.metadata.trial;
    assert.deepEqual(back.sort((a, b) => key(a).localeCompare(key(b))).map((r) => [r.messages, r.tools, r.metadata.task, r.metadata.trial, r.metadata.reward, r.metadata.exception, r.metadata.job, r.metadata.model]),
      before.sort((a, b) => key(a).localeCompare(key(b))).map((r) => [r.messages, r.tools, r.metadata.task, r.metadata.trial, r.metadata.reward, r.metadata.exception, r.metadata.job, r.metadata.model]));
    // the explorer's loader sees the job, its trials and rewards, and draws each conversation
    const { discoverSources, loadJob, loadTrajectory } = await import("../../../src/explore/load.js");
    const found = await discoverSources(out);
    assert.equal(found.jobs.length, 1);
    const data = await loadJob(found.jobs[0]!);
    assert.deepEqual(data.trials.map((t) => [t.trial, t.reward]).sort(), [["count__0", 1], ["count__1", 0], ["hello__0", 1], ["hello__1", 0]]);
    assert.equal(typeof loadTrajectory, "function");
    // importing into a dir that holds something is refused, nothing written
    const again = tmax(["traces", "import", file, "-o", out]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /is not empty: import into a new dir/);
  }
  // untrusted rows: a path in a name stays inside, a bad row is one note with its line, a duplicate is skipped
  const bad = path.join(root, "bad.jsonl");
  const good = (trial: string, jobName = "../../escape") => JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "ok" }], metadata: { job: jobName, task: "t", trial, reward: 1, exception: null } });
  await writeFile(bad, [good("../t__0"), "{not json", JSON.stringify({ messages: [], metadata: {} }), good("../t__0"), ""].join("\n"));
  const out = path.join(root, "imported-bad");
  const run = tmax(["traces", "import", bad, "-o", out]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /row 2 skipped: not JSON/);
  assert.match(run.stderr, /row 3 skipped: messages: /);
  assert.match(run.stderr, /row 4 skipped: trial "\.\.\/t__0" of job "\.\.\/\.\.\/escape" appears twice/);
  const dirs = findJobDirs([out]);
  assert.equal(dirs.length, 1);
  assert.ok(dirs[0]!.startsWith(out + path.sep), dirs[0]);
  assert.equal(collectTraces(dirs)[0]!.metadata.job, "../../escape", "the name is kept in the job's config, the dir is safe");
});

test("a job run with --disable-verification says so wherever its scores are read (tmax report's notes)", async () => {
  const { cp } = await import("node:fs/promises");
  const copy = path.join(root, "not-verified");
  await cp(job, copy, { recursive: true });
  const config = JSON.parse(await readFile(path.join(copy, "config.json"), "utf8"));
  await writeFile(path.join(copy, "config.json"), JSON.stringify({ ...config, verifier: { disable: true } }));
  const { readJob } = await import("../../../src/results/read.js");
  assert.deepEqual(readJob(copy).issues.map((i) => i.problem), ["run with --disable-verification: no test ran, its rewards (0) are not scores"]);
  assert.deepEqual(readJob(job).issues, []);
  const report = tmax(["report", copy]);
  assert.equal(report.status, 0, report.stderr);
  assert.match(report.stdout + report.stderr, /--disable-verification: no test ran/);
});
