// The README's main command with tmax as a user installs it: the checkout packed as a clone (prepare builds
// dist/), the tarball installed with `npm install -g --prefix`, then `tmax eval --dataset examples/tasks --agent
// oracle` run by the installed binary from another directory on the shipped examples, in real containers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ENGINE_SKIP, TEST_RUN } from "../../support/env.js";
import { packAndInstall, type Installed } from "../../support/install.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-install-e2e-"));
const containers = () => spawnSync("podman", ["ps", "-aq", "--filter", "label=io.tmax.managed", "--filter", `label=io.tmax.test-run=${TEST_RUN}`], { encoding: "utf8" }).stdout.trim();

describe("the installed tmax runs the README's main command", { skip: ENGINE_SKIP }, () => {
  let pkg: Installed;
  before(() => {
    pkg = packAndInstall(tmp);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test("tmax eval --dataset <installed examples> --agent oracle: reward 1 from another directory", async () => {
    const cwd = path.join(tmp, "elsewhere");
    mkdirSync(cwd);
    const jobDir = path.join(cwd, "jobs", "oracle");
    const args = ["eval", "--dataset", path.join(pkg.pkgDir, "examples", "tasks"), "--agent", "oracle", "--include", "hello-file", "--job-dir", jobDir];
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(pkg.bin, args, { cwd, env: { ...process.env, NO_COLOR: "1" } });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      child.on("exit", (code) => resolve({ code, out }));
    });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /1\.000/);
    const job = JSON.parse(readFileSync(path.join(jobDir, "result.json"), "utf8"));
    assert.equal(job.n_total_trials, 1);
    assert.equal(job.stats.n_completed_trials, 1);
    assert.equal(job.stats.n_errored_trials, 0);
    const evals = Object.values(job.stats.evals) as { metrics: { mean: number }[] }[];
    assert.deepEqual(evals.map((e) => e.metrics[0]!.mean), [1]);
    assert.equal(containers(), "", "no container of this run is left");
  });
});
