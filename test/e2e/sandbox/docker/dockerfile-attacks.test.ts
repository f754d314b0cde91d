// Dockerfiles written to slip past a line-by-line text check, built on the real engine: a quoted ADD URL, an ADD
// URL split by a continuation, an ADD hidden in a heredoc (podman 4.3 reads the heredoc's lines as instructions),
// and a bind mount made writable by `rw=false` (podman 4.3 ignores the value). Each must be refused before the
// engine runs it: the 127.0.0.1-only host service sees no request and no image is built.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { buildImage, connectEngine, SandboxError } from "../../../../src/sandbox/index.js";
import { ENGINE_SKIP } from "../../../support/env.js";

describe("Dockerfile attacks on the build", { skip: ENGINE_SKIP }, () => {
  const docker = connectEngine();
  let tmp: string;
  let server: http.Server;
  let port = 0;
  let hits = 0;
  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-dockerfile-attacks-"));
    server = http.createServer((_req, res) => {
      hits++;
      res.end("host secret\n");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    await fs.rm(tmp, { recursive: true, force: true });
  });

  async function attempt(name: string, body: string): Promise<unknown> {
    const ctx = await fs.mkdtemp(path.join(tmp, `${name}-`));
    await fs.writeFile(path.join(ctx, "Dockerfile"), `FROM localhost/tmax-base:bookworm\n${body}\nRUN cat /k 2>/dev/null; echo ${Date.now()}\n`);
    await fs.writeFile(path.join(ctx, "f"), "x");
    const before = hits;
    let tag: string | undefined;
    try {
      tag = await buildImage({ contextDir: ctx, timeoutSec: 180 }, docker);
      return new Error(`built ${tag}`);
    } catch (err) {
      return err;
    } finally {
      if (tag) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
      assert.equal(hits - before, 0, `${name}: the build reached the host service`);
    }
  }

  const cases: Array<[string, () => string, RegExp]> = [
    ["quoted-url", () => `ADD "http://127.0.0.1:${port}/k" /k`, /line 2: ADD "\\"http:\/\/127\.0\.0\.1:\d+\/k\\"" is refused \(the engine would fetch it from the host's network/],
    ["split-url", () => `ADD ht\\\ntp://127.0.0.1:${port}/k /k`, /line 2: ADD "http:\/\/127\.0\.0\.1:\d+\/k" is refused/],
    ["heredoc-add", () => `RUN <<EOF\nADD http://127.0.0.1:${port}/k /k\nEOF`, /line 3: ADD "http:\/\/127\.0\.0\.1:\d+\/k" is refused/],
    ["rw-false-mount", () => "RUN --mount=type=bind,source=.,target=/ctx,rw=false touch /ctx/planted", /line 2: RUN --mount=type=bind,source=\.,target=\/ctx,rw=false is refused \(a writable bind mount/],
  ];
  for (const [name, body, message] of cases) {
    test(`${name}: refused in one line, before the engine runs it`, async () => {
      const err = await attempt(name, body());
      assert.ok(err instanceof SandboxError, String(err));
      assert.equal(err.kind, "build_failed");
      assert.match(err.message, message);
      assert.ok(!err.message.includes("\n"));
    });
  }
});
