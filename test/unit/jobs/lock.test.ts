// The job-dir lock: created exclusively (two processes racing for one dir, many times: exactly one wins each
// time), taken over only from an owner that is provably gone (dead pid, or a reused pid with another start
// time), never from a live process or another host; released on release, exit and SIGTERM.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { LOCK_FILE, currentOwner, lockJobDir, type LockOwner } from "../../../src/jobs/lock.js";
import { processStartTime } from "../../../src/util/process.js";

const CHILD = path.resolve(import.meta.dirname, "../../support/lockChild.ts");

interface Child {
  proc: ChildProcessWithoutNullStreams;
  ask(line: string): Promise<string>;
}

function startChild(t: import("node:test").TestContext): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", CHILD], { stdio: "pipe" });
  t.after(() => void proc.kill("SIGKILL"));
  const waiting: ((l: string) => void)[] = [];
  createInterface({ input: proc.stdout }).on("line", (l) => waiting.shift()?.(l));
  return {
    proc,
    ask: (line) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        proc.stdin.write(`${line}\n`);
      }),
  };
}

async function tempDir(t: import("node:test").TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-lock-"));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(r.stdout.trim());
}

const writeLock = (dir: string, owner: Partial<LockOwner>) =>
  fs.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ ...currentOwner(), ...owner }));

test("two processes racing for one job dir: exactly one wins, every time (free dir and stale lock)", async (t) => {
  const root = await tempDir(t);
  const [a, b] = [startChild(t), startChild(t)];
  const rounds = 120;
  const winners = { a: 0, b: 0 };
  for (let i = 0; i < rounds; i++) {
    const dir = path.join(root, `job-${i}`);
    await fs.mkdir(dir);
    if (i % 2 === 1) await writeLock(dir, { pid: deadPid(), start: null }); // both find a stale lock to take over
    const [ra, rb] = await Promise.all([a.ask(`lock ${dir}`), b.ask(`lock ${dir}`)]);
    const won = [ra, rb].filter((r) => r === "won").length;
    assert.equal(won, 1, `round ${i}: a=${ra} b=${rb}`);
    const loser = ra === "won" ? rb : ra;
    assert.match(loser, /^lost job dir .* is in use /, `round ${i}`);
    if (ra === "won") winners.a++;
    else winners.b++;
    await (ra === "won" ? a : b).ask("release");
    assert.equal(existsSync(path.join(dir, LOCK_FILE)), false, "released");
  }
  assert.equal(winners.a + winners.b, rounds);
});

test("a stale lock whose pid is dead is taken over", async (t) => {
  const dir = await tempDir(t);
  await writeLock(dir, { pid: deadPid() });
  const release = await lockJobDir(dir);
  const owner = JSON.parse(await fs.readFile(path.join(dir, LOCK_FILE), "utf8"));
  assert.equal(owner.pid, process.pid);
  assert.equal(owner.host, os.hostname());
  assert.equal(owner.start, processStartTime(process.pid));
  assert.equal(typeof owner.user, "string");
  await release();
  assert.equal(existsSync(path.join(dir, LOCK_FILE)), false);
  // an older tmax's lock (a bare pid) of a dead process too
  await fs.writeFile(path.join(dir, LOCK_FILE), String(deadPid()));
  await (await lockJobDir(dir))();
});

test("the live lock of another process is refused in one line that says how to force it", async (t) => {
  const dir = await tempDir(t);
  const holder = startChild(t);
  assert.equal(await holder.ask(`lock ${dir}`), "won");
  const before = await fs.readFile(path.join(dir, LOCK_FILE), "utf8");
  await assert.rejects(lockJobDir(dir), (err: Error) => {
    assert.doesNotMatch(err.message, /\n/);
    assert.match(err.message, new RegExp(`is in use by process ${holder.proc.pid}`));
    assert.match(err.message, new RegExp(`remove ${path.join(dir, LOCK_FILE).replace(/[.]/g, "\\.")} and run again`));
    return true;
  });
  assert.equal(await fs.readFile(path.join(dir, LOCK_FILE), "utf8"), before, "the holder's lock is untouched");
  // the same holder after its process is gone: taken over
  holder.proc.kill("SIGKILL");
  await new Promise((r) => holder.proc.once("exit", r));
  await (await lockJobDir(dir))();
});

test("a lock from another host is never taken over, even with a pid that is dead here", async (t) => {
  const dir = await tempDir(t);
  await writeLock(dir, { pid: deadPid(), host: "build-node-7" });
  await assert.rejects(lockJobDir(dir), /is in use by process \d+ .*on host build-node-7, which tmax cannot check from here; if that run is over, remove /);
  await fs.writeFile(path.join(dir, LOCK_FILE), "");
  await assert.rejects(lockJobDir(dir), /cannot be read/, "an unreadable lock is not taken over either");
});

test("pid reuse: the same pid with another start time is stale; with the same start time it is alive", async (t) => {
  const dir = await tempDir(t);
  const other = startChild(t); // a live process that is not the lock's owner
  const pid = other.proc.pid!;
  await new Promise((r) => setTimeout(r, 200)); // its /proc entry is there
  const start = processStartTime(pid)!;
  assert.ok(start, "this test needs /proc");
  await writeLock(dir, { pid, start });
  await assert.rejects(lockJobDir(dir), new RegExp(`in use by process ${pid}`));
  await writeLock(dir, { pid, start: String(Number(start) - 1) }); // the owner started earlier: the pid was reused since
  await (await lockJobDir(dir))();
});

test("the lock goes with its process: on exit and on SIGTERM", async (t) => {
  for (const how of ["exit", "SIGTERM"] as const) {
    const dir = await tempDir(t);
    const holder = startChild(t);
    assert.equal(await holder.ask(`lock ${dir}`), "won");
    assert.ok(existsSync(path.join(dir, LOCK_FILE)));
    const exited = new Promise((r) => holder.proc.once("exit", r));
    if (how === "exit") holder.proc.stdin.write("exit\n");
    else holder.proc.kill("SIGTERM");
    await exited;
    assert.equal(existsSync(path.join(dir, LOCK_FILE)), false, `released on ${how}`);
  }
});
