// `tmax tasks check --isolation`: the oracle of each task under shared, snapshot and kill; one line per task
// whose honest outcome differs; cached by content hash; rollout then gives that task Harbor's semantics.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { isolationFor } from "../../../src/jobs/rollout.js";
import { loadDataset } from "../../../src/tasks/load.js";
import { cachedIncompatible, cachedIsolationCheck, checkIsolation } from "../../../src/jobs/isolationCheck.js";
import { ENGINE_SKIP } from "../../support/env.js";
import { SERVICE_TASK, writeAnswerTask } from "../../support/forgeries.js";
import { cp } from "node:fs/promises";
import { containersUnder, removeContainersUnder } from "../../support/jobs.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-isolation-check-test-"));
const dataset = path.join(tmp, "tasks");
const savedCache = process.env.XDG_CACHE_HOME;

before(async () => {
  process.env.XDG_CACHE_HOME = path.join(tmp, "cache"); // the check's cache, private to this test
  await cp(SERVICE_TASK, path.join(dataset, "service-logging"), { recursive: true });
  await writeAnswerTask(dataset, "honest-answer", "echo 42 > /app/answer.txt\n");
});
after(async () => {
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
  removeContainersUnder(tmp);
  await rm(tmp, { recursive: true, force: true });
});

describe("tasks check --isolation", { skip: ENGINE_SKIP }, () => {
  test("reports the service/daemon task (1 shared, 0 snapshot and kill), caches it, and rollout gives it the shared verifier", async () => {
    const { tasks } = await loadDataset(dataset);
    const service = tasks.find((t) => t.name === "service-logging")!;
    const honest = tasks.find((t) => t.name === "honest-answer")!;
    assert.equal(isolationFor({ backend: "docker" }, service), undefined, "unchecked: rollout's strong default");
    const lines: string[] = [];
    const checks = await checkIsolation(dataset, { onLine: (l) => lines.push(l), workDir: tmp });
    assert.equal(checks.length, 2);
    assert.deepEqual(lines, ["service-logging: oracle scores shared 1, snapshot 0, kill 0: rollout gives it Harbor's semantics (shared) instead of snapshot/kill"]);
    assert.deepEqual(cachedIsolationCheck(honest)?.rewards, { shared: 1, snapshot: 1, kill: 1 });
    assert.ok(existsSync(path.join(tmp, "cache", "tmax", "isolation", `${service.checksum}.json`)));
    assert.equal(cachedIncompatible(service, "snapshot"), true);
    assert.equal(cachedIncompatible(honest, "snapshot"), false);
    assert.equal(isolationFor({ backend: "docker" }, service), "shared");
    assert.equal(isolationFor({ backend: "docker" }, honest), undefined);
    assert.equal(isolationFor({ backend: "docker", verifierIsolation: "kill" }, service), "kill", "the user's flag wins");
    assert.deepEqual(containersUnder(tmp), [], "no container of this file left");
  });
});
