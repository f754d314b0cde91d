// Operating at scale, in real containers: the circuit breaker (model server killed and restarted mid-job),
// the engine preflight, prune by owner, and the CLI's typo/rollout guards.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { runJob } from "../../../src/jobs/runner.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { connectEngine, dockerBackend, OWNER_HOST_LABEL, OWNER_PID_LABEL, TEST_RUN_LABEL, TMAX_LABEL, TMAX_JOB_LABEL, ownerLabels } from "../../../src/sandbox/index.js";
import { startFakeVllm, type FakeContext, type FakeVllm } from "../../support/fake-vllm.js";
import { jobOptions } from "../../support/jobs.js";
import { BASE_IMAGE, ENGINE_SKIP, EXAMPLES, ROOT, TEST_RUN } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-scale-test-"));
after(() => rm(tmp, { recursive: true, force: true }));
const CLI = path.join(ROOT, "src/cli/main.ts");
const ours = (extra: string[] = []) =>
  spawnSync("podman", ["ps", "-aq", "--filter", "label=io.tmax.managed", "--filter", `label=io.tmax.test-run=${TEST_RUN}`, ...extra], { encoding: "utf8" }).stdout.trim();

function tmax(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

const solve = readFileSync(path.join(EXAMPLES, "hello-file/solution/solve.sh"), "utf8");
/** Stateless per episode: solve, then submit. */
const script = (ctx: FakeContext) => (ctx.turn === 0 ? { text: "THOUGHT: write it", commands: [solve] } : { text: "THOUGHT: done", commands: [`echo ${SUBMIT_MARKER}`] });

describe("circuit breaker", { skip: ENGINE_SKIP }, () => {
  test("model server killed and restarted mid-job: the job pauses, resumes, and every trial ends once with a real result", async () => {
    let server: FakeVllm = await startFakeVllm({ reply: script });
    const port = Number(new URL(server.baseUrl).port);
    after(() => server.close());
    const notices: string[] = [];
    let killed = false;
    let restarted: Promise<void> | undefined;
    const jobDir = path.join(tmp, "breaker");
    const results = await runJob(
      {
        ...jobOptions(tmp, {}),
        datasetDir: path.join(EXAMPLES, "hello-file"),
        jobDir,
        agent: "tmax",
        k: 5,
        concurrency: 2,
        infraRetries: 2,
        pauseAfter: 2,
        maxPauseSec: 300,
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, maxRetries: 0, retryBaseMs: 10, timeoutMs: 20_000 }),
      },
      {
        onNotice: (line) => notices.push(line),
        onProgress: (p) => {
          if (!killed && p.done >= 1) {
            killed = true;
            // the server dies with a trial in flight and comes back 10 s later at the same address
            restarted = server.close().then(async () => {
              await new Promise((r) => setTimeout(r, 10_000));
              server = await startFakeVllm({ reply: script, port });
            });
          }
        },
      },
    );
    await restarted;
    assert.ok(killed);
    assert.ok(notices.some((l) => /^paused: \d+ trials in a row failed on infrastructure/.test(l)), notices.join("\n"));
    assert.ok(notices.some((l) => /^resumed: the infrastructure answers again/.test(l)), notices.join("\n"));
    assert.deepEqual(results.map((r) => r.trial_name), [0, 1, 2, 3, 4].map((a) => `hello-file__${a}`));
    for (const r of results) {
      assert.equal(r.exception_info, null, `${r.trial_name}: ${r.exception_info?.exception_message}`);
      assert.equal(r.reward, 1);
    }
    const dirs = readdirSync(jobDir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    assert.deepEqual(dirs, results.map((r) => r.trial_name));
    const summary = JSON.parse(readFileSync(path.join(jobDir, "result.json"), "utf8"));
    assert.equal(summary.stats.n_completed_trials, 5);
    assert.equal(summary.stats.n_errored_trials, 0);
    assert.equal(summary.n_infra_errors, 0);
    assert.equal(ours(), "");
  });

  test("the model server never comes back: the job stops after the bound with one line, the trials left for --resume", async () => {
    const server = await startFakeVllm({ reply: script });
    const jobDir = path.join(tmp, "breaker-down");
    await server.close(); // gone before the first trial
    await assert.rejects(
      runJob({
        ...jobOptions(tmp, {}),
        datasetDir: path.join(EXAMPLES, "hello-file"),
        jobDir,
        agent: "tmax",
        k: 3,
        concurrency: 1,
        infraRetries: 0,
        pauseAfter: 1,
        maxPauseSec: 3,
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, maxRetries: 0, retryBaseMs: 10, timeoutMs: 5_000 }),
      }),
      (e: Error) => /^stopped: the infrastructure did not come back within 3s/.test(e.message) && !e.message.includes("\n"),
    );
    const summary = JSON.parse(readFileSync(path.join(jobDir, "result.json"), "utf8"));
    assert.equal(summary.finished_at, null);
    // the trial that tripped the breaker waited at the gate and was dropped, not stored as a result
    assert.equal(summary.stats.n_completed_trials, 0);
    assert.equal(ours(), "");
  });

  test("engine unreachable: one line, exit non-zero, no job dir", async () => {
    const jobDir = path.join(tmp, "no-engine");
    const r = await tmax(["eval", "--dataset", path.join(EXAMPLES, "hello-file"), "--agent", "oracle", "--job-dir", jobDir], { DOCKER_HOST: "unix:///nonexistent/podman.sock" });
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /cannot reach the container engine at unix:\/\/\/nonexistent\/podman\.sock.*tmax doctor/);
    assert.equal(existsSync(jobDir), false);
  });

  test("a job with errored trials exits non-zero and the summary separates infrastructure errors", async () => {
    const task = path.join(tmp, "no-solution");
    spawnSync("cp", ["-r", path.join(EXAMPLES, "hello-file"), task]);
    await rm(path.join(task, "solution"), { recursive: true, force: true });
    const r = await tmax(["eval", "--dataset", task, "--agent", "oracle", "--job-dir", path.join(tmp, "errored")]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /errors: 0 infrastructure .*, 1 task\/agent/);
  });
});

describe("prune by owner", { skip: ENGINE_SKIP }, () => {
  test("default prune removes only containers whose owner process is gone; --job by id; live owners are kept", async (t) => {
    const docker = connectEngine();
    const backend = dockerBackend({ docker });
    const dead = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).stdout.trim();
    const job = `scale-${process.pid}`;
    const labels = (owner: Record<string, string>) => ({ [TMAX_LABEL]: "1", [TMAX_JOB_LABEL]: job, [TEST_RUN_LABEL]: TEST_RUN!, ...owner });
    const make = (l: Record<string, string>) => docker.createContainer({ Image: BASE_IMAGE, Cmd: ["sleep", "infinity"], Labels: l, HostConfig: { NetworkMode: "none" } });
    const orphan = await make(labels({ [OWNER_PID_LABEL]: dead, [OWNER_HOST_LABEL]: os.hostname() }));
    const elsewhere = await make(labels({ [OWNER_PID_LABEL]: dead, [OWNER_HOST_LABEL]: "another-host" }));
    const live = await backend.create({ image: BASE_IMAGE, labels: { [TMAX_JOB_LABEL]: job } });
    t.after(async () => {
      await live.remove();
      for (const c of [orphan, elsewhere]) await c.remove({ force: true }).catch(() => undefined);
    });
    const info = await docker.getContainer(live.id).inspect();
    for (const [k, v] of Object.entries(ownerLabels())) assert.equal(info.Config.Labels[k], v, k);
    assert.equal(info.Config.Labels[TEST_RUN_LABEL], TEST_RUN);

    assert.equal(await backend.prune(), 1);
    assert.equal((await docker.getContainer(orphan.id).inspect().catch(() => null)), null);
    assert.ok(await docker.getContainer(elsewhere.id).inspect());
    assert.equal((await live.exec(["true"])).exitCode, 0, "a running trial of a live owner is untouched");
    const r = await tmax(["sandbox", "prune", "--job", "not-a-uuid-nor-dir"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /neither a job dir nor a job id/);
    assert.equal(await backend.prune({ job }), 2);
    assert.equal(ours(["--filter", `label=${TMAX_JOB_LABEL}=${job}`]), "");
  });
});

describe("CLI guards", () => {
  test("run --task with a path-like typo is one line and contacts nothing", async () => {
    const r = await tmax(["run", "--task", "examples/tasks/hello-fil", "--base-url", "http://127.0.0.1:9/v1"]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /--task examples\/tasks\/hello-fil: no such task directory/);
  });

  test("rollout refuses -G 1 and a non-empty --out without --continue, before contacting the model", async () => {
    const g1 = await tmax(["rollout", "--dataset", EXAMPLES, "-G", "1", "--base-url", "http://127.0.0.1:9/v1", "--out", path.join(tmp, "r-g1")]);
    assert.notEqual(g1.code, 0);
    assert.match(g1.stderr, /-G 1: a group needs at least 2 samples/);
    const out = path.join(tmp, "r-used");
    await mkdir(path.join(out, "steps"), { recursive: true });
    await writeFile(path.join(out, "steps", "step_000001.json"), "{}");
    const used = await tmax(["rollout", "--dataset", EXAMPLES, "-G", "2", "--base-url", "http://127.0.0.1:9/v1", "--out", out]);
    assert.notEqual(used.code, 0);
    assert.equal(used.stderr.trim().split("\n").length, 1, used.stderr);
    assert.match(used.stderr, /is not empty; pass --continue/);
    const cont = await tmax(["rollout", "--dataset", EXAMPLES, "-G", "2", "--continue", "--start-step", "1", "--base-url", "http://127.0.0.1:9/v1", "--out", out]);
    assert.match(cont.stderr, /already has step 1/);
  });
});
