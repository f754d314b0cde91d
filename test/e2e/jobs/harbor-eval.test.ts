// `tmax eval` writes Harbor-valid job dirs (checked against JSON Schemas derived from Harbor's models), with the
// oracle and with the tmax agent on a scripted model; --resume as typed, --retry-errors, Ctrl-C, checks before the dir.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { loadTrajectory } from "../../../src/explore/load.js";
import { runJob } from "../../../src/jobs/runner.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";
import { startFakeVllm } from "../../support/fake-vllm.js";
import { assertHarbor } from "../../support/harbor.js";
import { jobOptions } from "../../support/jobs.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-harbor-eval-"));
after(() => rm(tmp, { recursive: true, force: true }));
const MAIN = path.join(ROOT, "src/cli/main.ts");
const cli = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, ...env } });
const json = (f: string) => JSON.parse(readFileSync(f, "utf8"));
const trialDirs = (job: string) => readdirSync(job, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(job, e.name));

/** Every file of a job dir against Harbor's schemas. */
function assertHarborJobDir(job: string): void {
  assertHarbor("job-config", json(path.join(job, "config.json")), `${job}/config.json`);
  assertHarbor("job-result", json(path.join(job, "result.json")), `${job}/result.json`);
  assertHarbor("job-lock", json(path.join(job, "lock.json")), `${job}/lock.json`);
  for (const t of trialDirs(job)) {
    assertHarbor("trial-config", json(path.join(t, "config.json")), `${t}/config.json`);
    assertHarbor("trial-result", json(path.join(t, "result.json")), `${t}/result.json`);
    const atif = path.join(t, "agent", "trajectory.json");
    if (existsSync(atif)) assertHarbor("atif", json(atif), atif);
  }
}

describe("tmax eval writes Harbor job dirs", { skip: ENGINE_SKIP }, () => {
  test("oracle, k=2: every file validates; stats.evals keyed agent__dataset with mean, pass@k, reward and exception stats", async () => {
    const opts = jobOptions(tmp, { agent: "oracle", k: 2, concurrency: 3 });
    const results = await runJob(opts);
    assert.equal(results.length, 6);
    assertHarborJobDir(opts.jobDir);
    const result = json(path.join(opts.jobDir, "result.json"));
    const config = json(path.join(opts.jobDir, "config.json"));
    assert.equal(result.id, config.job_id);
    assert.equal(config.n_attempts, 2);
    assert.deepEqual(config.agents.map((a: { name: string }) => a.name), ["oracle"]);
    assert.equal(result.n_total_trials, 6);
    const ev = result.stats.evals["oracle__tasks"];
    assert.ok(ev, Object.keys(result.stats.evals).join(","));
    assert.equal(ev.metrics[0].mean, 1);
    assert.equal(ev.pass_at_k["2"], 1);
    assert.equal(ev.reward_stats.reward["1"].length, 6);
    for (const t of trialDirs(opts.jobDir)) assert.equal(json(path.join(t, "config.json")).job_id, result.id);
  });

  test("the tmax agent with logprobs: ATIF trajectory with token ids and logprobs, rollout_details, native trajectory next to it", async () => {
    const server = await startFakeVllm({
      reply: (ctx) =>
        ctx.turn === 0 ? { thinking: "Write the file.", text: "THOUGHT: create it.", commands: ["printf 'Hello, tmax!\\n' > /app/hello.txt"] } : { text: "THOUGHT: done.", commands: [`echo ${SUBMIT_MARKER}`] },
    });
    try {
      const opts = jobOptions(tmp, {
        agent: "tmax",
        filters: { include: ["hello-file"] },
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, logprobs: true, tokenIds: true }),
      });
      const [r] = await runJob(opts);
      assert.equal(r!.reward, 1, r!.exception_info?.exception_message);
      assertHarborJobDir(opts.jobDir);
      const trial = path.join(opts.jobDir, "hello-file__0");
      const atif = json(path.join(trial, "agent", "trajectory.json"));
      assert.equal(atif.schema_version, "ATIF-v1.7");
      const agentSteps = atif.steps.filter((s: { source: string }) => s.source === "agent");
      assert.equal(agentSteps.length, 2);
      assert.ok(agentSteps[0].metrics.completion_token_ids.length > 0);
      assert.equal(agentSteps[0].metrics.logprobs.length, agentSteps[0].metrics.completion_token_ids.length);
      assert.equal(agentSteps[0].tool_calls[0].arguments.command, "printf 'Hello, tmax!\\n' > /app/hello.txt");
      const native = json(path.join(trial, "agent", "tmax-trajectory.json"));
      assert.equal(native.schema, "tmax.trajectory/v1");
      const res = json(path.join(trial, "result.json"));
      assert.equal(res.agent_result.rollout_details[0].completion_token_ids.length, 2);
      assert.deepEqual(res.agent_result.rollout_details[0].completion_token_ids[0], native.steps[0].model.completionTokenIds);
      assert.equal(res.agent_result.n_cache_tokens, null);
      assert.ok(json(path.join(opts.jobDir, "result.json")).stats.evals["tmax__tmax-9b__tasks"]);
      // the explorer reads the ATIF one the same way as the native one
      const fromAtif = await loadTrajectory(path.join(trial, "agent", "trajectory.json"));
      const fromNative = await loadTrajectory(path.join(trial, "agent", "tmax-trajectory.json"));
      const cmds = (t: typeof fromAtif) => (t.trajectory!.steps as { toolCall?: { command: string } }[]).map((s) => s.toolCall?.command);
      assert.deepEqual(cmds(fromAtif), cmds(fromNative));
    } finally {
      await server.close();
    }
  });
});

describe("resume as typed", { skip: ENGINE_SKIP }, () => {
  test("bad options are refused before the job dir exists", () => {
    const cases: [string[], RegExp][] = [
      [["-k", "0"], /n-attempts must be an integer ≥ 1/],
      [["--agent-timeout-multiplier", "Infinity"], /--agent-timeout-multiplier must be a finite number > 0/],
      [["-e", "local"], /pass --unsafe/],
      [["-e", "daytona"], /DAYTONA_API_KEY/],
    ];
    for (const [flags, message] of cases) {
      const dir = path.join(tmp, `refused-${flags.join("")}`);
      const out = cli(["eval", "-d", EXAMPLES, "-a", "nop", "--job-dir", dir, ...flags], { DAYTONA_API_KEY: "" });
      assert.equal(out.status, 1, out.stdout);
      assert.match(out.stderr, message);
      assert.equal(existsSync(dir), false, `${flags.join(" ")} created ${dir}`);
    }
  });

  test("--resume DIR alone continues with the stored config; a differing flag is refused naming it; Harbor aliases", () => {
    const dir = path.join(tmp, "typed");
    const first = cli(["eval", "-d", EXAMPLES, "-a", "nop", "--n-attempts", "1", "--n-concurrent", "2", "--include", "hello-file", "--include", "word-count", "--verifier-timeout-multiplier", "2", "--pull", "never", "--integrity", "off", "--job-dir", dir]);
    assert.equal(first.status, 0, first.stderr);
    assert.equal(json(path.join(dir, "config.json")).verifier_timeout_multiplier, 2);
    // image and verifier choices are stored too, and a differing one is refused by name
    assert.equal(json(path.join(dir, "config.json")).pull, "never");
    const refusedPull = cli(["eval", "--resume", dir, "--pull", "always", "--integrity", "strict"]);
    assert.equal(refusedPull.status, 2, "a flag that does not fit the stored job is a usage error: nothing ran");
    assert.match(refusedPull.stderr, /--pull \(stored "never", given "always"\).*--integrity \(stored "off", given "strict"\)/);
    const refused = cli(["eval", "--resume", dir, "-k", "2"]);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /-k\/--n-attempts \(stored 1, given 2\)/);
    const refused2 = cli(["eval", "--resume", dir, "--agent", "oracle", "--include", "hello-file"]);
    assert.equal(refused2.status, 2);
    assert.match(refused2.stderr, /--agent .*--include/);
    // same values repeated, another concurrency: fine; nothing left to run
    const again = cli(["eval", "--resume", dir, "-a", "nop", "--n-attempts", "1", "-n", "4", "--include", "word-count", "--include", "hello-file"]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /over 2 trials/);
    // --retry-errors re-runs a trial that ended in an infrastructure error
    const victim = path.join(dir, "hello-file__0", "result.json");
    const r = json(victim);
    writeFileSync(victim, JSON.stringify({ ...r, exception_info: { exception_type: "EnvironmentError", exception_message: "engine went away", exception_traceback: "x", occurred_at: r.finished_at, infrastructure: true } }));
    const retried = cli(["eval", "--resume", dir, "--retry-errors"]);
    assert.equal(retried.status, 0, retried.stderr);
    const after = json(victim);
    assert.notEqual(after.id, r.id);
    assert.equal(after.exception_info, null);
    assertHarbor("job-result", json(path.join(dir, "result.json")));
  });

  test("Ctrl-C prints the exact resume command, which finishes the job", async () => {
    const dir = path.join(tmp, "interrupted");
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, "eval", "-d", EXAMPLES, "-a", "oracle", "-k", "3", "-n", "1", "--job-dir", dir], { cwd: ROOT });
    let out = "";
    child.stdout.on("data", (b) => (out += b));
    child.stderr.on("data", (b) => (out += b));
    const done = () => (existsSync(dir) ? readdirSync(dir).filter((d) => existsSync(path.join(dir, d, "result.json"))).length : 0);
    const deadline = Date.now() + 180_000;
    while (done() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGINT");
    const code = await new Promise((r) => child.once("exit", r));
    assert.equal(code, 130, out);
    const command = /tmax eval --resume (\S+)/.exec(out);
    assert.ok(command, out);
    assert.equal(command[1], dir);
    const resumed = cli(["eval", "--resume", command[1]!]);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.equal(done(), 9);
    for (const t of trialDirs(dir)) assert.equal(json(path.join(t, "result.json")).reward, 1);
  });
});
