// Pure parts of the sandbox layer: output capping/decoding, the exec stream demuxer, the cleanup registry,
// DOCKER_HOST parsing and backend selection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { installSignalCleanup, removeAllTracked, track, trackedCount, untrack, type Removable } from "../../../src/sandbox/cleanup.js";
import { parseDockerHost } from "../../../src/sandbox/docker/engine.js";
import { cappedBuffer, decodeUtf8, demuxer } from "../../../src/sandbox/bytes/execOutput.js";
import { createBackend } from "../../../src/sandbox/index.js";

function frame(stream: 1 | 2, payload: Buffer | string): Buffer {
  const data = Buffer.from(payload);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(data.length, 4);
  return Buffer.concat([header, data]);
}

test("demuxer separates stdout and stderr however the chunks split headers and payloads", () => {
  const wire = Buffer.concat([frame(1, "hello "), frame(2, "oops\n"), frame(1, ""), frame(1, "world\n"), frame(2, "€")]);
  for (const size of [1, 2, 3, 7, 8, 9, 13, wire.length]) {
    const got = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    const feed = demuxer((which, data) => got[which].push(Buffer.from(data)));
    for (let i = 0; i < wire.length; i += size) feed(wire.subarray(i, i + size));
    assert.equal(Buffer.concat(got.stdout).toString(), "hello world\n", `chunk size ${size}`);
    assert.equal(Buffer.concat(got.stderr).toString(), "oops\n€", `chunk size ${size}`);
  }
});

test("cappedBuffer keeps exactly cap bytes, flags truncation and keeps accepting input", () => {
  const buf = cappedBuffer(10);
  buf.push(Buffer.from("12345"));
  assert.equal(buf.truncated, false);
  buf.push(Buffer.from("6789abcdef"));
  buf.push(Buffer.from("more"));
  assert.equal(buf.truncated, true);
  assert.equal(buf.text(), "123456789a");
});

test("cappedBuffer decodes multi-byte characters split across chunks", () => {
  const euro = Buffer.from("€");
  const buf = cappedBuffer(100);
  buf.push(euro.subarray(0, 1));
  buf.push(euro.subarray(1, 2));
  buf.push(Buffer.concat([euro.subarray(2), Buffer.from("!")]));
  assert.equal(buf.text(), "€!");
});

test("cappedBuffer: a character cut by the cap is one U+FFFD, as Python decodes bytes[:cap] with errors='replace'", () => {
  const buf = cappedBuffer(4);
  buf.push(Buffer.from("€€")); // 6 bytes: the cap cuts the second euro after 1 byte
  assert.equal(buf.text(), "€\uFFFD"); // python3: "€€".encode()[:4].decode("utf-8", "replace")
  assert.equal(buf.truncated, true);
});

test("a leading BOM is kept, as Python's utf-8 codec keeps it (TextDecoder drops it by default)", () => {
  const buf = cappedBuffer(100);
  buf.push(Buffer.from([0xef, 0xbb, 0xbf, 0x68, 0x69]));
  assert.equal(buf.text(), "\uFEFFhi");
  assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf])), "\uFEFF");
});

test("invalid utf-8 becomes U+FFFD rather than failing", () => {
  const buf = cappedBuffer(100);
  buf.push(Buffer.from([0x61, 0xff, 0xfe, 0x62]));
  assert.equal(buf.text(), "a\uFFFD\uFFFDb");
});

test("parseDockerHost understands unix, tcp, https and ssh forms and rejects junk", () => {
  assert.deepEqual(parseDockerHost("unix:///run/podman/podman.sock"), { socketPath: "/run/podman/podman.sock" });
  assert.deepEqual(parseDockerHost("tcp://10.0.0.2:2375"), { protocol: "http", host: "10.0.0.2", port: "2375" });
  assert.equal(parseDockerHost("tcp://h:2376").protocol, "https");
  assert.deepEqual(parseDockerHost("ssh://me@box"), { protocol: "ssh", host: "box", port: 22, username: "me" });
  assert.throws(() => parseDockerHost("unix://"), /bad DOCKER_HOST/);
  assert.throws(() => parseDockerHost("ftp://x"), /unsupported scheme/);
});

test("createBackend: daytona needs an API key, local needs unsafe, unknown names fail", () => {
  const key = process.env.DAYTONA_API_KEY;
  delete process.env.DAYTONA_API_KEY;
  try {
    assert.throws(() => createBackend("daytona"), (err: Error) => /needs an API key/.test(err.message) && !err.message.includes("\n"));
  } finally {
    if (key !== undefined) process.env.DAYTONA_API_KEY = key;
  }
  assert.throws(() => createBackend("local"), (err: Error) => /--unsafe/.test(err.message) && !err.message.includes("\n"));
  assert.equal(createBackend("local", { unsafe: true }).name, "local");
  assert.equal(createBackend("docker", { host: "unix:///nonexistent.sock" }).name, "docker");
  assert.throws(() => createBackend("nope" as "docker"), /unknown sandbox backend/);
});

function fakeSandbox(id: string, delayMs: number, log: string[]): Removable {
  const sb: Removable = {
    id,
    remove: () =>
      new Promise((resolve) =>
        setTimeout(() => {
          log.push(id);
          untrack(sb);
          resolve();
        }, delayMs),
      ),
  };
  return sb;
}

test("removeAllTracked removes in parallel and stops waiting at the deadline", async () => {
  const log: string[] = [];
  const a = fakeSandbox("a", 20, log);
  const b = fakeSandbox("b", 20, log);
  const slow = fakeSandbox("slow", 2000, log);
  track(a);
  track(b);
  track(slow);
  const t0 = Date.now();
  const { removed, pending } = await removeAllTracked(300);
  assert.ok(Date.now() - t0 < 1000, "returned at the deadline");
  assert.equal(removed, 2);
  assert.equal(pending, 1);
  assert.deepEqual(log.sort(), ["a", "b"]);
  untrack(slow);
  assert.equal(trackedCount(), 0);
});

test("installSignalCleanup removes tracked sandboxes then exits 130; a second SIGINT exits at once", async () => {
  const log: string[] = [];
  const lines: string[] = [];
  const exits: number[] = [];
  const quick = fakeSandbox("quick", 10, log);
  track(quick);
  const uninstall = installSignalCleanup({ deadlineMs: 2000, log: (l) => lines.push(l), exit: (c) => exits.push(c) });
  try {
    process.emit("SIGINT");
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(log, ["quick"]);
    assert.deepEqual(exits, [130]);
    assert.match(lines[0], /removing 1 sandbox/);
  } finally {
    uninstall();
  }

  const slow = fakeSandbox("slow", 1500, log);
  track(slow);
  const exits2: number[] = [];
  const uninstall2 = installSignalCleanup({ deadlineMs: 5000, log: () => undefined, exit: (c) => exits2.push(c) });
  try {
    process.emit("SIGTERM");
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(exits2, [], "still cleaning");
    process.emit("SIGTERM");
    assert.deepEqual(exits2, [143], "second signal exits immediately");
  } finally {
    uninstall2();
    await slow.remove();
  }
});
