// The one reader of job dirs (results/safeRead.ts): every component from a descriptor of the root, no link
// followed anywhere on the way, only regular files (a fifo does not block), nothing outside the root.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { isRegularFile, isRegularFileSync, listDir, listDirSync, readTail, readTextCapped, readTextCappedSync } from "../../../src/results/safeRead.js";

let tmp: string;
let root: string;
before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-saferead-"));
  root = path.join(tmp, "root");
  mkdirSync(path.join(root, "a", "b"), { recursive: true });
  writeFileSync(path.join(root, "a", "b", "f.json"), '{"ok":1}');
  writeFileSync(path.join(tmp, "outside.txt"), "outside");
  symlinkSync(path.join(tmp), path.join(root, "a", "up")); // a dir link out
  symlinkSync("b", path.join(root, "a", "inner")); // a dir link that stays inside
  symlinkSync("f.json", path.join(root, "a", "b", "same.json")); // a file link inside
  execFileSync("mkfifo", [path.join(root, "a", "fifo")]);
  // the root itself may be reached through a link (the operator's choice)
  symlinkSync(root, path.join(tmp, "root-link"));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test("reads nested regular files below the root, sync and async, also through a linked root", async () => {
  const f = path.join(root, "a", "b", "f.json");
  assert.equal(await readTextCapped(f, root), '{"ok":1}');
  assert.equal(readTextCappedSync(f, root), '{"ok":1}');
  assert.equal(await readTail(f, 3, root), '… [5 earlier bytes]\n:1}');
  assert.equal(await readTextCapped(path.join(tmp, "root-link", "a", "b", "f.json"), path.join(tmp, "root-link")), '{"ok":1}');
  assert.deepEqual((await listDir(path.join(root, "a"), root)).map((e) => e.name).sort(), ["b", "fifo", "inner", "up"]);
  assert.deepEqual(listDirSync(root, root).map((e) => e.name), ["a"]);
});

test("a link anywhere on the way is refused, inside the root or out of it", async () => {
  for (const rel of ["a/up/outside.txt", "a/inner/f.json", "a/b/same.json"]) {
    const file = path.join(root, rel);
    await assert.rejects(readTextCapped(file, root), /symbolic link/, rel);
    assert.throws(() => readTextCappedSync(file, root), /symbolic link/, rel);
    assert.equal(await isRegularFile(file, root), false, rel);
    assert.equal(isRegularFileSync(file, root), false, rel);
  }
  await assert.rejects(listDir(path.join(root, "a", "up"), root), /symbolic link/);
});

test("outside the root, `..`, a fifo, a dir and a missing file are not read", async () => {
  await assert.rejects(readTextCapped(path.join(tmp, "outside.txt"), root), /outside/);
  await assert.rejects(readTextCapped(`${root}/a/../../outside.txt`, root), /outside/);
  const t0 = Date.now();
  await assert.rejects(readTextCapped(path.join(root, "a", "fifo"), root), /not a regular file/);
  assert.ok(Date.now() - t0 < 2000, "a fifo does not block");
  assert.equal(await readTail(path.join(root, "a", "fifo"), 10, root), null);
  await assert.rejects(readTextCapped(path.join(root, "a"), root), /not a regular file/);
  await assert.rejects(readTextCapped(path.join(root, "a", "nope.json"), root), (e: NodeJS.ErrnoException) => e.code === "ENOENT" && e.message.includes("nope.json"));
  await assert.rejects(readTextCapped(path.join(root, "a", "b", "f.json"), root, 3), /too large/);
});
