// The container → host extractor, fed hand-made tar streams: only plain files and dirs, masked modes, no
// links, no escapes, caps from headers, and every failure ends the stream (no hang).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { test, type TestContext } from "node:test";
import tar from "tar-stream";
import { ExtractError, manifestText, newBudget, safeExtract } from "../../../../src/sandbox/bytes/safeExtract.js";

type Member = { name: string; type?: "file" | "directory" | "symlink" | "link" | "fifo"; mode?: number; body?: string | Buffer; size?: number; linkname?: string };

function tarOf(members: Member[]): Readable {
  const pack = tar.pack();
  (async () => {
    for (const m of members) {
      const type = m.type ?? "file";
      await new Promise<void>((resolve, reject) => {
        const header = { name: m.name, type, mode: m.mode ?? (type === "directory" ? 0o755 : 0o644), linkname: m.linkname, size: m.size };
        if (type === "file") pack.entry(header, m.body ?? "", (e) => (e ? reject(e) : resolve()));
        else pack.entry(header, (e) => (e ? reject(e) : resolve()));
      });
    }
    pack.finalize();
  })().catch((e) => pack.destroy(e));
  return pack as unknown as Readable;
}

async function tmp(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-extract-"));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

test("modes are masked: setuid/setgid/sticky/world-write never reach the host", async (t) => {
  const dir = await tmp(t);
  const budget = await safeExtract(
    tarOf([
      { name: "logs/", type: "directory", mode: 0o1777 },
      { name: "logs/rootsh", mode: 0o4755, body: "#!/bin/sh\n" },
      { name: "logs/sgid", mode: 0o2777, body: "x" },
      { name: "logs/ww", mode: 0o666, body: "y" },
      { name: "logs/open/", type: "directory", mode: 0o777 },
    ]),
    dir,
  );
  const mode = async (p: string) => (await fs.lstat(path.join(dir, p))).mode & 0o7777;
  assert.equal(await mode("logs/rootsh"), 0o755);
  assert.equal(await mode("logs/sgid"), 0o755);
  assert.equal(await mode("logs/ww"), 0o644);
  assert.equal(await mode("logs"), 0o755);
  assert.equal(await mode("logs/open"), 0o755);
  assert.equal(budget.files, 3);
});

test("symlinks and hard links are recorded, never created; writing through a planted link lands in a real dir", async (t) => {
  const dir = await tmp(t);
  const outside = await tmp(t);
  const budget = await safeExtract(
    tarOf([
      { name: "a/abs", type: "symlink", linkname: "/etc/passwd" },
      { name: "a/rel", type: "symlink", linkname: "../../../../etc/shadow" },
      { name: "a/esc", type: "symlink", linkname: outside },
      { name: "a/esc/planted", body: "through the link" },
      { name: "a/hard", type: "link", linkname: "etc/passwd" },
      { name: "a/env", type: "symlink", linkname: "/proc/self/environ" },
    ]),
    dir,
  );
  assert.deepEqual((await fs.readdir(outside)), [], "nothing written outside");
  for (const p of ["a/abs", "a/rel", "a/hard", "a/env"]) assert.equal(await fs.lstat(path.join(dir, p)).catch(() => null), null, p);
  const esc = await fs.lstat(path.join(dir, "a/esc"));
  assert.ok(esc.isDirectory() && !esc.isSymbolicLink());
  assert.equal(await fs.readFile(path.join(dir, "a/esc/planted"), "utf8"), "through the link");
  assert.deepEqual(budget.links.map((l) => [l.path, l.type, l.target]), [
    ["a/abs", "symlink", "/etc/passwd"],
    ["a/rel", "symlink", "../../../../etc/shadow"],
    ["a/esc", "symlink", outside],
    ["a/hard", "hardlink", "etc/passwd"],
    ["a/env", "symlink", "/proc/self/environ"],
  ]);
  assert.match(manifestText(budget), /symlink\ta\/abs\t-> \/etc\/passwd/);
});

test("the downloaded path itself being a link is refused", async (t) => {
  const dir = await tmp(t);
  const budget = await safeExtract(tarOf([{ name: "artifacts", type: "symlink", linkname: "/" }]), dir);
  assert.deepEqual(await fs.readdir(dir), []);
  assert.match(budget.skipped[0].reason, /itself is a link: refused/);
});

test("names outside the target are skipped: '..', absolute, NUL; fifos and devices are skipped", async (t) => {
  const dir = await tmp(t);
  const parent = path.dirname(dir);
  const marker = `tmax-escape-${process.pid}`;
  const budget = await safeExtract(
    tarOf([
      { name: `../${marker}`, body: "x" },
      { name: `a/../../${marker}`, body: "x" },
      { name: `/tmp/${marker}`, body: "x" },
      { name: "pipe", type: "fifo" },
      { name: "ok.txt", body: "fine" },
    ]),
    dir,
  );
  assert.equal(await fs.lstat(path.join(parent, marker)).catch(() => null), null);
  assert.equal(await fs.lstat(`/tmp/${marker}`).catch(() => null), null);
  assert.deepEqual(await fs.readdir(dir), ["ok.txt"]);
  assert.deepEqual(budget.skipped.map((s) => s.reason), ["name contains '..'", "name contains '..'", "absolute name", "fifo entry (only files and directories are kept)"]);
});

test("caps are decided from headers: single file, total, entries, depth", async (t) => {
  const dir = await tmp(t);
  const budget = newBudget({ maxFileBytes: 1000, maxTotalBytes: 1500, maxEntries: 6, maxDepth: 4 });
  await safeExtract(
    tarOf([
      { name: "big.bin", body: Buffer.alloc(2000, 1) },
      { name: "a.bin", body: Buffer.alloc(800, 1) },
      { name: "b.bin", body: Buffer.alloc(800, 1) },
      { name: "c.bin", body: Buffer.alloc(600, 1) },
      { name: "1/2/3/4/5/deep.txt", body: "deep" },
      { name: "e6", body: "x" },
      { name: "e7", body: "x" },
    ]),
    dir,
    budget,
  );
  assert.deepEqual((await fs.readdir(dir)).sort(), ["a.bin", "c.bin", "e6"]);
  assert.equal(budget.bytes, 1401);
  assert.deepEqual(budget.skipped.map((s) => s.path), ["big.bin", "b.bin", "1/2/3/4/5/deep.txt"]);
  assert.match(budget.error ?? "", /more than 6 entries/);
  // the budget is per trial: a second download is charged against what is left
  await safeExtract(tarOf([{ name: "more.bin", body: Buffer.alloc(200, 1) }]), path.join(dir, "second"), budget);
  assert.equal(await fs.lstat(path.join(dir, "second/more.bin")).catch(() => null), null);
});

test("a header claiming a huge (sparse) size is skipped without reading it into memory", async (t) => {
  const dir = await tmp(t);
  const budget = newBudget({ maxStreamBytes: 10 * 1024 * 1024 });
  // a hand-written header for a 3 GB file followed by only a little data: the cap stops before any buffering
  const pack = tar.pack();
  const entry = pack.entry({ name: "sparse.img", size: 3 * 1024 ** 3 });
  entry.write(Buffer.alloc(64 * 1024));
  const rss = process.memoryUsage().rss;
  const done = safeExtract(pack as unknown as Readable, dir, budget);
  // keep feeding zeros: the stream cap must stop reading
  const feed = setInterval(() => entry.write(Buffer.alloc(1024 * 1024)), 1);
  try {
    await done;
  } finally {
    clearInterval(feed);
    pack.destroy();
  }
  assert.deepEqual(await fs.readdir(dir), []);
  assert.match(budget.skipped[0].reason, /3221225472 bytes over/);
  assert.match(budget.error ?? "", /archive larger than/);
  assert.ok(process.memoryUsage().rss - rss < 200 * 1024 * 1024);
});

test("a truncated archive rejects with one line and destroys the source", async (t) => {
  const dir = await tmp(t);
  const full = await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    tarOf([{ name: "f.txt", body: Buffer.alloc(5000, 97) }]).on("data", (c) => chunks.push(c)).on("end", () => resolve(Buffer.concat(chunks)));
  });
  const source = Readable.from([full.subarray(0, 1024)]);
  const budget = newBudget();
  await assert.rejects(safeExtract(source, dir, budget), (e: Error) => e instanceof ExtractError && !e.message.includes("\n"));
  assert.ok(source.destroyed);
  assert.match(budget.error ?? "", /^extraction aborted/);
});

test("a stalled archive stream ends at the deadline instead of hanging", async (t) => {
  const dir = await tmp(t);
  const source = new PassThrough();
  source.write(Buffer.alloc(100)); // part of a header, then nothing
  const budget = newBudget({ timeoutMs: 300 });
  const started = Date.now();
  await safeExtract(source, dir, budget).catch(() => undefined);
  assert.ok(Date.now() - started < 5000);
  assert.match(budget.error ?? "", /longer than/);
  assert.ok(source.destroyed);
});

test("a path too long for the filesystem aborts the extraction with a clear error", async (t) => {
  const dir = await tmp(t);
  const seg = "d".repeat(250);
  const name = Array.from({ length: 20 }, () => seg).join("/") + "/f.txt"; // ~5 KB > PATH_MAX
  const budget = newBudget();
  await assert.rejects(safeExtract(tarOf([{ name: "before.txt", body: "ok" }, { name, body: "x" }, { name: "after.txt", body: "x" }]), dir, budget), /ENAMETOOLONG/);
  assert.match(budget.error ?? "", /extraction aborted: ENAMETOOLONG/);
  assert.equal(await fs.readFile(path.join(dir, "before.txt"), "utf8"), "ok");
});

test("a full disk aborts the extraction (tiny tmpfs) and the process does not hang", { skip: process.getuid?.() === 0 ? false : "skipped: mounting a tmpfs needs root" }, async (t) => {
  const dir = await tmp(t);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", dir]);
  } catch {
    t.skip("skipped: cannot mount a tmpfs here");
    return;
  }
  try {
    const budget = newBudget();
    await assert.rejects(safeExtract(tarOf([{ name: "a.bin", body: Buffer.alloc(200_000, 1) }, { name: "b.bin", body: Buffer.alloc(200_000, 1) }]), dir, budget), /ENOSPC/);
    assert.match(budget.error ?? "", /ENOSPC/);
  } finally {
    execFileSync("umount", ["-l", dir]);
  }
});
