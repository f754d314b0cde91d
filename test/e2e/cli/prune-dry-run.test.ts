// `tmax sandbox prune --dry-run --json` against the real engine: it lists a job's containers by the same rule as
// prune, removes nothing, and leaves a live owner's containers out of the default (owner gone) selection.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SandboxPruneJson } from "../../../src/cli/sandbox.js";
import { dockerBackend } from "../../../src/sandbox/index.js";
import { JOB_DIR_LABEL, JOB_ID_LABEL } from "../../../src/sandbox/owner.js";
import { runTmax } from "../../support/cli.js";
import { ENGINE_SKIP } from "../../support/env.js";

describe("sandbox prune --dry-run", { skip: ENGINE_SKIP }, () => {
  test("lists a job's containers and removes none", async () => {
    const backend = dockerBackend();
    const job = randomUUID();
    after(() => backend.prune({ job }));
    const labels = { [JOB_ID_LABEL]: job, [JOB_DIR_LABEL]: path.join("/tmp", `dry-run-${job.slice(0, 8)}`) };
    const sandboxes = await Promise.all([0, 1].map(() => backend.create({ image: "localhost/tmax-base:bookworm", labels })));

    const ofJob = await runTmax(["sandbox", "prune", "--dry-run", "--json", "--job", job], { NO_COLOR: "1" });
    assert.equal(ofJob.code, 0, ofJob.stderr);
    const doc = SandboxPruneJson.parse(JSON.parse(ofJob.stdout));
    assert.equal(doc.job, job);
    assert.deepEqual(doc.candidates.map((c) => c.id).sort(), sandboxes.map((s) => s.id).sort());
    assert.ok(doc.candidates.every((c) => c.kind === "container" && c.job === job && c.job_dir === labels[JOB_DIR_LABEL] && c.owner?.startsWith(`${process.pid}@`)));

    const ownerGone = SandboxPruneJson.parse(JSON.parse((await runTmax(["sandbox", "prune", "--dry-run", "--json"], { NO_COLOR: "1" })).stdout));
    assert.ok(!ownerGone.candidates.some((c) => c.job === job), "this process is alive: its containers are not leftovers");
    for (const s of sandboxes) assert.equal((await s.exec(["true"])).exitCode, 0, "still there after the dry runs");
  });
});
