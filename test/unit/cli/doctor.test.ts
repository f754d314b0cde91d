// `tmax doctor --json` against a real HTTP server on a unix socket that answers like podman (and nothing more):
// the engine is named with its kind and socket, the base-image findings fail with a fix a global install can run.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { doctorCommand } from "../../../src/cli/doctor.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "tmax-doctor-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function json(run: () => Promise<number>): Promise<{ code: number; out: Record<string, unknown> }> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: unknown) => void lines.push(String(s));
  try {
    const code = await run();
    return { code, out: JSON.parse(lines.join("\n")) as Record<string, unknown> };
  } finally {
    console.log = log;
  }
}

test("doctor --json names the engine found (kind, rootless, socket) and what failed, with fixes", async () => {
  const socket = path.join(dir, "podman.sock");
  const server = http.createServer((req, res) => {
    const p = (req.url ?? "").replace(/^\/v[0-9.]+/, "").replace(/\?.*$/, "");
    const body = p === "/_ping" ? "OK" : p === "/version" ? { Version: "4.3.1", ApiVersion: "1.41", Components: [{ Name: "Podman Engine", Version: "4.3.1" }] } : p === "/libpod/info" ? { host: { security: { rootless: true } } } : undefined;
    if (body === undefined) {
      res.writeHead(404, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ message: "no such image" }));
    }
    res.writeHead(200, { "content-type": typeof body === "string" ? "text/plain" : "application/json" });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(socket, r));
  const saved = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = `unix://${socket}`;
  try {
    const { code, out } = await json(() => doctorCommand({ skipModel: true, json: true } as Parameters<typeof doctorCommand>[0]));
    assert.equal(code, 1);
    assert.equal(out.ok, false);
    const engine = out.engine as { host: string; kind: string; rootless: boolean; source: string };
    assert.deepEqual([engine.host, engine.kind, engine.rootless, engine.source], [`unix://${socket}`, "podman", true, "DOCKER_HOST"]);
    const findings = out.findings as { status: string; what: string; fix?: string }[];
    assert.ok(findings.some((f) => f.status === "ok" && /^container engine: podman \(rootless\) 4\.3\.1/.test(f.what)), JSON.stringify(findings));
    const image = findings.find((f) => /base image localhost\/tmax-base:bookworm/.test(f.what));
    assert.equal(image?.status, "fail");
    assert.match(image!.fix!, /^tmax setup/);
    assert.ok(findings.some((f) => f.status === "warn" && /host guard: not applicable to rootless podman/.test(f.what)));
    for (const f of findings) assert.doesNotMatch(f.fix ?? "", /npm run setup/);

    // nothing there: one failing finding, the fix for DOCKER_HOST, every candidate in `tried`
    process.env.DOCKER_HOST = `unix://${path.join(dir, "gone.sock")}`;
    const none = await json(() => doctorCommand({ skipModel: true, json: true } as Parameters<typeof doctorCommand>[0]));
    assert.equal(none.code, 1);
    assert.equal(none.out.engine, null);
    assert.equal((none.out.tried as unknown[]).length, 1);
    assert.match(String(none.out.fix), /unset DOCKER_HOST/);
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved;
    await new Promise<void>((r) => server.close(() => r()));
  }
});
