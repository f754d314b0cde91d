// A Harbor user's `harbor run` / `harbor jobs resume` typed at tmax: the model card's job config overridden to the
// oracle on one example task, resumed with `tmax jobs resume -p`; and Harbor's model flags against a vLLM-like server
// (-m hosted_vllm/…, --ak api_base, --extra-instruction, --ve reaching the verifier).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { startFakeVllm } from "../../support/fake-vllm.js";
import { ENGINE_SKIP, EXAMPLES, ROOT, TEST_RUN } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-harbor-run-"));
const closers: (() => Promise<void>)[] = [];
after(async () => {
  await Promise.all(closers.map((c) => c()));
  await rm(tmp, { recursive: true, force: true });
});

const CLI = path.join(ROOT, "src/cli/main.ts");
function tmax(args: string[]) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}
const containers = () => spawnSync("podman", ["ps", "-aq", "--filter", "label=io.tmax.managed", "--filter", `label=io.tmax.test-run=${TEST_RUN}`], { encoding: "utf8" }).stdout.trim();
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));

describe("harbor run flags on tmax eval", { skip: ENGINE_SKIP }, () => {
  test("-c the model card's config, overridden to the oracle on one task; tmax jobs resume -p continues it", async () => {
    const jobs = path.join(tmp, "jobs");
    const args = ["eval", "-c", "examples/jobs/tmax-9b-card.yaml", "-p", EXAMPLES, "-a", "oracle", "-k", "1", "-i", "hello-file", "-o", jobs, "--job-name", "card", "-q"];
    const printed = await tmax([...args, "--print-config"]);
    assert.equal(printed.code, 0, printed.stderr);
    const effective = JSON.parse(printed.stdout);
    assert.deepEqual(effective.agents, [{ name: "oracle" }]);
    assert.equal(effective.tmax.max_steps, 64, "the card's settings come from the file");

    const r = await tmax(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mean reward 1\.000 over 1 trials/);
    assert.doesNotMatch(r.stdout, /hello-file__0 .*reward/, "-q: no per-trial lines");
    const jobDir = path.join(jobs, "card");
    const config = json(path.join(jobDir, "config.json"));
    assert.equal(config.n_attempts, 1);
    assert.equal(config.n_concurrent_trials, 4, "the file's n_concurrent_trials");
    assert.deepEqual(config.datasets[0].task_names, ["hello-file"]);
    assert.equal(config.agents[0].name, "oracle");
    assert.equal(config.agent_limits, undefined, "the oracle has no model limits");

    const resumed = await tmax(["jobs", "resume", "-p", jobDir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed/);
    assert.match(resumed.stdout, /mean reward 1\.000 over 1 trials/);
    const refused = await tmax(["jobs", "resume", "-p", jobDir, "--upload"]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr.trim(), /^tmax: error: --upload uploads the job to Harbor Hub; .*: not in tmax$/);
    assert.equal(containers(), "", "no container left");
  });

  test("-m hosted_vllm/served-x --ak api_base=…: the server gets served-x; --extra-instruction reaches the model, --ve the verifier", async () => {
    // hello-file whose verifier also wants the job's --ve variable
    const task = path.join(tmp, "tasks/hello-ve");
    await cp(path.join(EXAMPLES, "hello-file"), task, { recursive: true });
    await writeFile(path.join(task, "tests/test.sh"), '#!/bin/bash\nmkdir -p /logs/verifier\nif [ "$JUDGE_TOKEN" = "from-ve" ] && printf \'Hello, tmax!\\n\' | cmp -s - /app/hello.txt; then echo 1; else echo 0; fi > /logs/verifier/reward.txt\n');
    const solve = readFileSync(path.join(task, "solution/solve.sh"), "utf8");
    const s = await startFakeVllm({ model: "served-x", reply: (ctx) => (ctx.turn === 0 ? { text: "THOUGHT", commands: [solve] } : { text: "THOUGHT", commands: [`echo ${SUBMIT_MARKER}`] }) });
    closers.push(() => s.close());
    const jobDir = path.join(tmp, "jobs/model");
    const r = await tmax(["eval", "-p", path.dirname(task), "-m", "hosted_vllm/served-x", "--ak", `api_base=${s.baseUrl}`, "--ak", "temperature=0.2", "--extra-instruction", "Say nothing more.", "--ve", "JUDGE_TOKEN=from-ve", "--job-dir", jobDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mean reward 1\.000 over 1 trials/);
    assert.equal(s.requests[0].model, "served-x");
    assert.equal(s.requests[0].temperature, 0.2);
    assert.match(s.requests[0].messages[1].content, /newline and contain nothing else\.\n\nSay nothing more\.\n<\/task>/);
    const config = json(path.join(jobDir, "config.json"));
    assert.equal(config.agents[0].model_name, "hosted_vllm/served-x");
    assert.deepEqual(config.verifier_env_keys, ["JUDGE_TOKEN"]);
    assert.doesNotMatch(readFileSync(path.join(jobDir, "config.json"), "utf8"), /from-ve/);
    // the value is never stored: a resume without it is one line
    const again = await tmax(["eval", "--resume", jobDir]);
    assert.equal(again.code, 2, "the command line lacks what the job needs: a usage error, nothing ran");
    assert.match(again.stderr, /the job ran with --ve JUDGE_TOKEN, whose values are never stored: give --ve JUDGE_TOKEN=… again/);
    assert.equal(containers(), "", "no container left");
  });
});
