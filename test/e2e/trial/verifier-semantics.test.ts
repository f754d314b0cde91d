// Harbor's verifier semantics by default, with forged rewards refused. The honest side: a solution that leaves
// a request-logging service and a daemon running (test/fixtures/tasks/service-logging, modelled on TB2's
// nginx-request-logging) scores 1 under `tmax eval` defaults, through the resident executor and through an
// exec per command. The other side: agents whose processes stay alive to write the reward the verifier did
// not write (after test.sh returns, a loop that stops as test.sh exits, an inotify watcher, a tests rewriter)
// are refused. Not caught reliably, and so not here: a process that spins on reward.txt and overwrites it in
// the microseconds between test.sh's write and its exit (docs/reward-integrity.md, residual risks).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { runJob } from "../../../src/jobs/runner.js";
import type { TrialResult } from "../../../src/results/schema.js";
import { ENGINE_SKIP } from "../../support/env.js";
import { FORGERIES, writeForgeryDataset } from "../../support/forgeries.js";
import { containersUnder, jobOptions, removeContainersUnder } from "../../support/jobs.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-semantics-test-"));
const dataset = path.join(tmp, "tasks");
const RUN = `semantics-${randomUUID()}`;

before(async () => {
  await writeForgeryDataset(dataset);
});
after(async () => {
  delete process.env.TMAX_EXECUTOR;
  removeContainersUnder(tmp);
  await rm(tmp, { recursive: true, force: true });
});

const byName = (results: TrialResult[]) => new Map(results.map((r) => [r.task_name, r]));
let runs = 0;
const run = (over: Parameters<typeof jobOptions>[1]) => runJob(jobOptions(tmp, { datasetDir: dataset, jobDir: path.join(tmp, `${RUN}-${runs++}`), concurrency: 2, ...over }));

describe("verifier semantics: Harbor's by default, forged rewards refused", { skip: ENGINE_SKIP }, () => {
  test("eval defaults (resident executor): the service/daemon oracle scores 1; every forgery is refused", async () => {
    const results = byName(await run({}));
    const service = results.get("service-logging")!;
    assert.equal(service.reward, 1, `${JSON.stringify(service.exception_info)} ${JSON.stringify(service.tamper)}`);
    assert.equal(service.tamper?.verifier_isolation, "shared");
    assert.equal(service.tamper?.flagged, false, JSON.stringify(service.tamper));
    assert.equal(service.tamper?.frozen, true, "the scan ran with the agent's processes paused");
    const honest = results.get("honest-answer")!;
    assert.deepEqual([honest.reward, honest.tamper?.forged ?? false, honest.tamper?.flagged], [1, false, false], JSON.stringify(honest.tamper));
    for (const name of Object.keys(FORGERIES)) {
      const r = results.get(name)!;
      assert.ok(r, name);
      assert.equal(r.tamper?.verifier_isolation, "shared", name);
      assert.equal(r.reward, 0, `${name} scored ${r.reward}: ${JSON.stringify(r.tamper)}`);
      assert.equal(r.tamper?.forged, true, `${name} not refused (raw ${JSON.stringify(r.verifier_result)}): ${JSON.stringify(r.tamper)}`);
    }
    assert.deepEqual(containersUnder(tmp), [], "no container of this file left");
  });

  test("eval defaults with an exec per command (TMAX_EXECUTOR=exec): the service/daemon oracle scores 1", async () => {
    process.env.TMAX_EXECUTOR = "exec";
    try {
      const results = byName(await run({ filters: { include: ["service-logging", "after-exit-writer"] } }));
      const service = results.get("service-logging")!;
      assert.equal(service.reward, 1, `${JSON.stringify(service.exception_info)} ${JSON.stringify(service.tamper)}`);
      assert.equal(service.tamper?.verifier_isolation, "shared");
      const forged = results.get("after-exit-writer")!;
      assert.deepEqual([forged.reward, forged.tamper?.forged], [0, true], JSON.stringify(forged.tamper));
    } finally {
      delete process.env.TMAX_EXECUTOR;
    }
    assert.deepEqual(containersUnder(tmp), [], "no container of this file left");
  });

  test("the same honest solution scores 0 under --verifier-isolation snapshot (what `tasks check --isolation` reports)", async () => {
    const results = byName(await run({ verifierIsolation: "snapshot", filters: { include: ["service-logging", "honest-answer"] } }));
    assert.equal(results.get("service-logging")!.reward, 0);
    assert.equal(results.get("service-logging")!.tamper?.verifier_isolation, "snapshot");
    assert.equal(results.get("honest-answer")!.reward, 1);
    assert.deepEqual(containersUnder(tmp), [], "no container of this file left");
  });
});
