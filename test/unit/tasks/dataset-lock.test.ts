// The dataset cache's lock (tasks/datasets.ts acquireLock, on util/lockFile.ts): a live owner is waited for and
// named, a dead one is taken over, a lock that cannot be read yet (its owner is still writing it) is never
// removed, and a release never deletes a lock another process took over.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { acquireLock } from "../../../src/tasks/datasets.js";
import { currentOwner } from "../../../src/util/lockFile.js";
import { processStartTime } from "../../../src/util/process.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-dataset-lock-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function ownerFile(file: string, pid: number): void {
  writeFileSync(file, `${JSON.stringify({ ...currentOwner(), pid, start: processStartTime(pid) ?? null })}\n`);
}

test("a live owner is waited for, then named in one line; once it is gone its lock is taken over", async (t) => {
  const file = path.join(tmp, "live.lock");
  const holder = spawn("sleep", ["60"], { stdio: "ignore" });
  t.after(() => holder.kill("SIGKILL"));
  ownerFile(file, holder.pid!);
  const t0 = Date.now();
  await assert.rejects(acquireLock(file, 600), (e: Error) => e.message.includes(`is held by process ${holder.pid}`) && !e.message.includes("\n"));
  assert.ok(Date.now() - t0 >= 600, "it waited");
  holder.kill("SIGKILL");
  await new Promise((resolve) => holder.once("exit", resolve));
  const release = await acquireLock(file, 600);
  assert.equal(JSON.parse(readFileSync(file, "utf8")).pid, process.pid);
  await release();
  assert.equal(existsSync(file), false);
});

test("a lock whose owner is still writing it (empty) is not removed; an old bare pid of a dead process is", async () => {
  const empty = path.join(tmp, "empty.lock");
  writeFileSync(empty, "");
  await assert.rejects(acquireLock(empty, 300), /cannot be read/);
  assert.equal(readFileSync(empty, "utf8"), "", "left as it was");
  const old = path.join(tmp, "old.lock");
  const dead = spawn("true");
  await new Promise((resolve) => dead.once("exit", resolve));
  writeFileSync(old, String(dead.pid)); // the format of older tmax releases
  const release = await acquireLock(old, 300);
  await release();
});

test("a release does not delete a lock that is no longer this process's", async () => {
  const file = path.join(tmp, "taken.lock");
  const release = await acquireLock(file, 300);
  const other = `${JSON.stringify({ ...currentOwner(), pid: 1, start: processStartTime(1) ?? null })}\n`;
  writeFileSync(file, other); // e.g. a user removed it and another run took it
  await release();
  assert.equal(readFileSync(file, "utf8"), other);
});
