// Rootless podman's host needs and failure hints: the tun device check, the hints engine messages get, and whether
// a build may limit memory, asked of real HTTP servers on unix sockets answering like podman's libpod /info.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import { podmanLimitsMemory } from "../../../../src/sandbox/docker/buildNetwork.js";
import { engineMessage } from "../../../../src/sandbox/docker/engine.js";
import { rootlessHint, tunProblem, withRootlessHint } from "../../../../src/sandbox/docker/rootless.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "tmax-rootless-"));
const servers: http.Server[] = [];
after(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An engine on a unix socket whose /libpod/info says `info` (undefined: 404, as Docker Engine answers). */
async function engine(name: string, info: unknown): Promise<Docker> {
  const socketPath = path.join(dir, `${name}.sock`);
  const server = http.createServer((req, res) => {
    if (info !== undefined && /\/libpod\/info$/.test(req.url ?? "")) {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(info));
    } else {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: "page not found" }));
    }
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  servers.push(server);
  return new Docker({ socketPath });
}

describe("rootless podman on this host", () => {
  it("the tun device: a missing one is a problem with a fix; one this process may read and write is none", () => {
    const missing = tunProblem(path.join(dir, "no-such-tun"));
    assert.match(missing!.what, /does not exist: rootless podman's networking/);
    assert.match(missing!.fix, /modprobe tun.*podman system migrate/);
    const present = path.join(dir, "tun");
    writeFileSync(present, "");
    assert.equal(tunProblem(present), undefined);
  });

  it("names the fix for the two failures rootless networking gives, and nothing for other messages", () => {
    const tun = 'slirp4netns failed: "open(\\"/dev/net/tun\\"): Permission denied\\nWARNING: Support for seccomp is experimental"';
    assert.match(rootlessHint(tun)!, /sudo chmod 0666 \/dev\/net\/tun`, then `podman system migrate`/);
    const netns = "failed to mount runtime directory for rootless netns: no such file or directory";
    assert.match(rootlessHint(netns)!, /half-made.*`podman system migrate` resets it/);
    assert.equal(rootlessHint("no such image: localhost/x"), undefined);
    assert.equal(withRootlessHint("no such image"), "no such image");
    // engine errors carry it, once
    const once = engineMessage({ statusCode: 500, json: { message: netns } });
    assert.equal(once.split("podman system migrate").length, 2);
    assert.equal(withRootlessHint(once), once);
  });

  it("a build limits memory unless the engine has no memory controller (rootless on cgroup v1)", async () => {
    assert.equal(await podmanLimitsMemory(await engine("v1-rootless", { host: { cgroupControllers: [], cgroupVersion: "v1" } })), false);
    assert.equal(await podmanLimitsMemory(await engine("v2", { host: { cgroupControllers: ["cpu", "memory", "pids"] } })), true);
    assert.equal(await podmanLimitsMemory(await engine("docker", undefined)), true);
  });
});
