// A trial's sandbox/ is what the agent left in /logs: opened on a trial dir, the explorer must not list a job or
// a rollout set the agent planted there (config.json of a job, *_rollouts_NNNNNN.jsonl).
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { discoverSources } from "../../../src/explore/load.js";

test("explorer discovery never descends into a trial's sandbox/", async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-explore-sandbox-"));
  try {
    const trial = path.join(tmp, "hello__abc");
    const planted = path.join(trial, "sandbox", "artifacts", "fake-job");
    await mkdir(path.join(planted, "t__1"), { recursive: true });
    await writeFile(path.join(trial, "result.json"), JSON.stringify({ task_name: "hello", trial_name: "hello__abc", reward: 0 }));
    await writeFile(path.join(planted, "config.json"), JSON.stringify({ schema: "tmax.job/v2", n_attempts: 1 }));
    await writeFile(path.join(planted, "t__1", "result.json"), JSON.stringify({ task_name: "x", reward: 1 }));
    await writeFile(path.join(trial, "sandbox", "artifacts", "evil_rollouts_000001.jsonl"), "{}\n");
    const d = await discoverSources(trial);
    assert.deepEqual([d.jobs, d.rollouts], [[], []]);
    // a dir named sandbox that is not inside a trial is still searched
    const other = path.join(tmp, "runs", "sandbox", "job");
    await mkdir(other, { recursive: true });
    await writeFile(path.join(other, "config.json"), JSON.stringify({ schema: "tmax.job/v2" }));
    assert.deepEqual((await discoverSources(path.join(tmp, "runs"))).jobs, [other]);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
