// Safety at scale: container ownership and prune selection, unique job ids, rollout --out/--continue/-G
// guards and the `run --task` typo guard. Engine-free; the real-container side is in test/e2e/jobs/scale.test.ts.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { checkTaskArgument } from "../../../src/cli/run.js";
import { ensureJobId, JOB_ID_FILE, readJobId, resolveJobRef } from "../../../src/jobs/identity.js";
import { runTrial } from "../../../src/trial/trial.js";
import { checkGroupSize, firstFreeStep, lastStepIn, runRollout } from "../../../src/jobs/rollout.js";
import { currentOwner, LOCK_FILE } from "../../../src/jobs/lock.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import {
  JOB_DIR_LABEL,
  JOB_ID_LABEL,
  OWNER_HOST_LABEL,
  OWNER_PID_LABEL,
  OWNER_START_LABEL,
  TEST_RUN_LABEL,
  ownerLabels,
  ownership,
  prunable,
} from "../../../src/sandbox/owner.js";
import { processStartTime } from "../../../src/util/process.js";
import type { SandboxBackend, SandboxSpec } from "../../../src/sandbox/types.js";
import { loadTask } from "../../../src/tasks/load.js";
import { EXAMPLES } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-scale-unit-"));
after(() => rm(tmp, { recursive: true, force: true }));

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(r.stdout.trim());
}

test("ownership: this process is alive, an exited pid or a reused pid is gone, another host or no labels unknown", () => {
  const mine = ownerLabels();
  assert.equal(mine[OWNER_PID_LABEL], String(process.pid));
  assert.equal(mine[OWNER_HOST_LABEL], os.hostname());
  assert.equal(mine[OWNER_START_LABEL], processStartTime(process.pid));
  assert.equal(ownership(mine), "alive");
  assert.equal(ownership({ ...mine, [OWNER_PID_LABEL]: String(deadPid()) }), "gone");
  assert.equal(ownership({ ...mine, [OWNER_START_LABEL]: "1" }), "gone", "same pid, another start time: reused");
  assert.equal(ownership({ ...mine, [OWNER_PID_LABEL]: String(deadPid()), [OWNER_HOST_LABEL]: "some-other-host" }), "unknown");
  assert.equal(ownership({}), "unknown");
  assert.equal(ownership(undefined), "unknown");
});

test("prunable: --job selects one job id, --all everything, the default only orphans; a test run sees only its own", () => {
  const saved = process.env.TMAX_TEST_RUN;
  delete process.env.TMAX_TEST_RUN;
  try {
    const alive = { ...ownerLabels(), [JOB_ID_LABEL]: "a" };
    const orphan = { ...ownerLabels(), [OWNER_PID_LABEL]: String(deadPid()), [JOB_ID_LABEL]: "b" };
    const legacy = { [JOB_ID_LABEL]: "c" }; // created before owner labels existed
    assert.deepEqual([alive, orphan, legacy].map((l) => prunable(l)), [false, true, false]);
    assert.deepEqual([alive, orphan, legacy].map((l) => prunable(l, { all: true })), [true, true, true]);
    assert.deepEqual([alive, orphan, legacy].map((l) => prunable(l, { job: "a" })), [true, false, false]);
    process.env.TMAX_TEST_RUN = "run-1";
    assert.equal(ownerLabels()[TEST_RUN_LABEL], "run-1");
    assert.equal(prunable({ ...orphan, [TEST_RUN_LABEL]: "run-2" }, { all: true }), false, "another test run's container");
    assert.equal(prunable({ ...orphan, [TEST_RUN_LABEL]: "run-1" }), true);
  } finally {
    if (saved === undefined) delete process.env.TMAX_TEST_RUN;
    else process.env.TMAX_TEST_RUN = saved;
  }
});

test("job ids: a UUID created once per dir and kept; --job takes a dir or an id", async () => {
  const a = path.join(tmp, "x", "job");
  const b = path.join(tmp, "y", "job"); // same basename, another job
  await mkdir(a, { recursive: true });
  await mkdir(b, { recursive: true });
  assert.equal(readJobId(a), undefined);
  const idA = await ensureJobId(a);
  const idB = await ensureJobId(b);
  assert.match(idA, /^[0-9a-f-]{36}$/);
  assert.notEqual(idA, idB);
  assert.equal(await ensureJobId(a), idA, "stable across resumes");
  assert.equal(resolveJobRef(a), idA);
  assert.equal(resolveJobRef(idB), idB);
  assert.throws(() => resolveJobRef(path.join(tmp, "nope")), /neither a job dir nor a job id/);
  await writeFile(path.join(tmp, "x", JOB_ID_FILE), "job\n");
  assert.throws(() => resolveJobRef(path.join(tmp, "x")), /holds no job id/);
});

test("a trial labels its container with the job id and dir, never the dir's basename", async () => {
  const specs: SandboxSpec[] = [];
  const backend: SandboxBackend = {
    name: "docker",
    async create(spec) {
      specs.push(spec);
      throw new Error("no engine in this test");
    },
    prune: async () => 0,
    check: async () => ({ ok: true, detail: "" }),
  };
  const task = await loadTask(path.join(EXAMPLES, "hello-file"));
  const trialDir = path.join(tmp, "jobs", "j1", "hello-file__0");
  const result = await runTrial({ task, attempt: 0, trialDir, jobName: "j1", jobId: "1b4e28ba-2fa1-11d2-883f-0016d3cca427", agent: "nop", backend });
  assert.equal(result.exception_info?.exception_message, "no engine in this test");
  assert.equal(specs[0].labels?.[JOB_ID_LABEL], "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  assert.equal(specs[0].labels?.[JOB_DIR_LABEL], path.join(tmp, "jobs", "j1"));
});

test("rollout --out: empty starts at 1; non-empty refused without --continue; --continue goes after the last step", async () => {
  const out = path.join(tmp, "rollout");
  assert.equal(await firstFreeStep(out, {}), 1);
  assert.equal(await firstFreeStep(out, { startStep: 5 }), 5);
  await mkdir(path.join(out, "steps"), { recursive: true });
  await writeFile(path.join(out, "steps", "step_000002.json"), "{}");
  await mkdir(path.join(out, "trials", "step_000003", "t__g0_s0"), { recursive: true }); // an interrupted step 3
  assert.equal(lastStepIn(out), 3);
  await assert.rejects(firstFreeStep(out, {}), /is not empty; pass --continue/);
  assert.equal(await firstFreeStep(out, { continue: true }), 4);
  await assert.rejects(firstFreeStep(out, { continue: true, startStep: 3 }), /already has step 3/);
  assert.equal(await firstFreeStep(out, { continue: true, startStep: 10 }), 10);
});

test("rollout --out is one live run's: a dir another running rollout holds is refused in one line, nothing written", async (t) => {
  const out = path.join(tmp, "rollout-locked");
  await mkdir(out, { recursive: true });
  const holder = spawn("sleep", ["60"], { stdio: "ignore" }); // the other run: a live process on this host
  t.after(() => holder.kill("SIGKILL"));
  const owner = { ...currentOwner(), pid: holder.pid!, start: processStartTime(holder.pid!) ?? null };
  await writeFile(path.join(out, LOCK_FILE), `${JSON.stringify(owner)}\n`);
  assert.equal(await firstFreeStep(out, {}), 1, "the lock file alone does not make the dir non-empty");
  const opts = {
    datasetDir: path.join(EXAMPLES, "hello-file"),
    outDir: out,
    runName: "locked",
    steps: 1,
    uniqueTasks: 1,
    samplesPerTask: 2,
    concurrency: 1,
    maxGroupsPerStep: 1,
    timeoutMultiplier: 1,
    imageMap: {},
    backend: "local" as const,
    unsafe: true,
    network: "task" as const,
    seed: 1,
    maxStaleness: 4,
    model: modelConfigFromOptions({ baseUrl: "http://127.0.0.1:9/v1", profile: "train" }), // never asked
  };
  await assert.rejects(runRollout(opts), (e: Error) => e.message.includes(`is in use by process ${holder.pid}`) && !e.message.includes("\n"));
  assert.deepEqual(readdirSync(out), [LOCK_FILE], "nothing of the refused run is written");
  holder.kill("SIGKILL");
  await new Promise((resolve) => holder.once("exit", resolve));
  // its owner gone, the lock is taken over and the run goes on (0 steps: no model server is needed)
  assert.deepEqual(await runRollout({ ...opts, steps: 0 }), []);
  assert.ok(!readdirSync(out).includes(LOCK_FILE), "the lock is released when the run ends");
  assert.ok(readdirSync(out).includes("rollout.json"));
});

test("rollout -G below 2 is refused", () => {
  assert.throws(() => checkGroupSize(1), /at least 2 samples/);
  assert.throws(() => checkGroupSize(0), /at least 2 samples/);
  checkGroupSize(2);
});

test("run --task: a path-like argument that does not exist is an error, a sentence is an instruction", async () => {
  assert.throws(() => checkTaskArgument("examples/tasks/hello-fil"), /no such task directory/);
  assert.throws(() => checkTaskArgument("./hello"), /no such task directory/);
  assert.throws(() => checkTaskArgument("~/tasks/x"), /no such task directory/);
  const file = path.join(tmp, "file.txt");
  await writeFile(file, "x");
  assert.throws(() => checkTaskArgument(file), /is a file, not a task directory/);
  checkTaskArgument(path.join(EXAMPLES, "hello-file"));
  checkTaskArgument("create /tmp/out.txt holding hello");
  checkTaskArgument("wait");
});
