// A local user who can write under the dir the explorer (or `tmax report`) reads swaps a dir for a link to a
// root-only dir, over and over, while root reads the job. Reading by name after a check (realpath, then open)
// lost that race 253 times in 3,000; opening every component from a descriptor without following links must
// lose it 0 times. The swapper runs as `nobody` in its own process, bounded in time and tries.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startExplorer, type Explorer } from "../../../src/explore/server.js";
import { readJob } from "../../../src/results/read.js";
import { makeTrajectory, writeJobDir } from "../../support/fixtures.js";

const NOBODY = 65534;
const TRIES = 3000;
const SKIP = typeof process.getuid === "function" && process.getuid() === 0 ? false : "skipped: needs root (the reader runs as root, the swapper as nobody)";
if (SKIP) console.log(`# ${SKIP}`);

/**
 * Starts a process as nobody that swaps `name` in `dir` between a link to `inside` and a link to `outside`
 * (mode "links"), or between the real dir `name` and a link to `outside` (mode "dir"), until `stop` exists
 * or 120 s pass.
 */
function startSwapper(dir: string, name: string, inside: string, outside: string, mode: "links" | "dir", stop: string): ChildProcess {
  const code = `
    const fs = require("fs"), p = require("path");
    const [dir, name, inside, outside, mode, stop] = process.argv.slice(1);
    const at = p.join(dir, name), tmp = p.join(dir, ".swap"), kept = p.join(dir, ".kept");
    const end = Date.now() + 120000;
    for (let i = 0; Date.now() < end; i++) {
      if (i % 200 === 0 && fs.existsSync(stop)) break;
      try {
        if (mode === "links") {
          fs.rmSync(tmp, { force: true }); fs.symlinkSync(inside, tmp); fs.renameSync(tmp, at);
          fs.rmSync(tmp, { force: true }); fs.symlinkSync(outside, tmp); fs.renameSync(tmp, at);
        } else {
          fs.renameSync(at, kept); fs.symlinkSync(outside, at);
          fs.unlinkSync(at); fs.renameSync(kept, at);
        }
      } catch {}
    }
    if (mode === "dir" && fs.existsSync(kept)) { try { fs.unlinkSync(at); } catch {} fs.renameSync(kept, at); }
  `;
  return spawn(process.execPath, ["-e", code, dir, name, inside, outside, mode, stop], { uid: NOBODY, gid: NOBODY, stdio: "ignore" });
}

async function stopSwapper(child: ChildProcess, stop: string): Promise<void> {
  writeFileSync(stop, "");
  if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
}

describe("explorer and report readers against a link-swapping local user", { skip: SKIP }, () => {
  let tmp: string;
  let served: string;
  let secretDir: string;
  let explorer: Explorer | undefined;
  const MARK = `root-only-${randomBytes(6).toString("hex")}`;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-race-"));
    chmodSync(tmp, 0o755);
    // the root-only dir: a trajectory and a trial result holding the secret mark
    secretDir = path.join(tmp, "secret");
    mkdirSync(secretDir, { mode: 0o700 });
    writeFileSync(path.join(secretDir, "t.json"), JSON.stringify({ ...makeTrajectory({ task: MARK }), note: MARK }), { mode: 0o600 });
    writeFileSync(path.join(secretDir, "result.json"), JSON.stringify({ task_name: MARK, trial_name: MARK, reward: 1 }), { mode: 0o600 });
    // the served dir: a job, and a dir the local user owns
    served = path.join(tmp, "served");
    await writeJobDir(path.join(served, "jobs"), { jobName: "job", dataset: "/data/ds", model: "m", k: 1, trials: [{ task: "a", attempt: 0, reward: 1 }, { task: "b", attempt: 0, reward: 0 }] });
    const user = path.join(served, "jobs", "job", "b__0");
    mkdirSync(path.join(served, "pub", "real"), { recursive: true });
    writeFileSync(path.join(served, "pub", "real", "t.json"), JSON.stringify(makeTrajectory({ task: "public" })));
    for (const d of [path.join(served, "pub"), path.join(served, "pub", "real"), path.join(served, "jobs", "job"), user]) chownSync(d, NOBODY, NOBODY);
    explorer = await startExplorer({ dir: served, port: 0, cacheDir: null });
  });
  after(async () => {
    await explorer?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test(`explorer API: ${TRIES} reads of a path whose dir is swapped for a link to a root-only dir return 0 secret bytes`, async () => {
    const stop = path.join(tmp, "stop-1");
    const swapper = startSwapper(path.join(served, "pub"), "x", "real", secretDir, "links", stop);
    let leaked = 0;
    let answered = 0;
    try {
      for (let i = 0; i < TRIES; i++) {
        const body = await (await fetch(`${explorer!.url}api/trajectory-file?path=${encodeURIComponent("pub/x/t.json")}`)).text();
        answered++;
        if (body.includes(MARK)) leaked++;
      }
    } finally {
      await stopSwapper(swapper, stop);
    }
    assert.equal(answered, TRIES);
    assert.equal(leaked, 0, `${leaked} of ${TRIES} answers held the root-only file`);
  });

  test(`report's job reader: ${TRIES} reads of a job whose trial dir is swapped for a link return 0 secret bytes`, async () => {
    const job = path.join(served, "jobs", "job");
    const stop = path.join(tmp, "stop-2");
    const swapper = startSwapper(job, "b__0", "", secretDir, "dir", stop);
    let leaked = 0;
    try {
      // let the swapper start (its first rename) before reading
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < TRIES; i++) {
        const j = readJob(job);
        if (JSON.stringify(j).includes(MARK)) leaked++;
        if (i % 100 === 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      await stopSwapper(swapper, stop);
    }
    assert.equal(leaked, 0, `${leaked} of ${TRIES} reads held the root-only file`);
    assert.ok(existsSync(path.join(job, "b__0", "result.json")), "the swapper put the trial dir back");
  });

  test("without a race, the same reads work and links are refused, not followed", async () => {
    const ok = await (await fetch(`${explorer!.url}api/trajectory-file?path=${encodeURIComponent("pub/real/t.json")}`)).json();
    assert.equal(ok.trajectory?.task?.name, "public");
    const linked = await (await fetch(`${explorer!.url}api/trajectory-file?path=${encodeURIComponent("pub/x/t.json")}`)).text();
    assert.ok(!linked.includes(MARK));
    const j = readJob(path.join(served, "jobs", "job"));
    assert.deepEqual(j.trials.map((t) => t.task_name).sort(), ["a", "b"]);
  });
});
