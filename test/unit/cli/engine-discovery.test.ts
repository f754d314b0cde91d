// Which commands look for a container engine before they run: the CLI as a user runs it, with the docker CLI's
// current context pointing at a socket of this test's, so every discovery that happens is a connection counted.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { needsEngineDiscovery } from "../../../src/cli/options.js";
import { runTmax } from "../../support/cli.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-discovery-"));
after(() => rm(tmp, { recursive: true, force: true }));

describe("engine discovery is asked only by commands that use the engine", () => {
  test("eval -e local|daytona pings no socket; eval -e docker asks the current context first", async (t) => {
    const sock = path.join(tmp, "engine.sock");
    let connections = 0;
    const server = net.createServer((c) => {
      connections++;
      c.destroy(); // answers nothing: discovery goes on to the next candidate
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    t.after(() => server.close());
    const meta = path.join(tmp, "contexts", "meta", createHash("sha256").update("probe").digest("hex"));
    await mkdir(meta, { recursive: true });
    await writeFile(path.join(meta, "meta.json"), JSON.stringify({ Endpoints: { docker: { Host: `unix://${sock}` } } }));
    await writeFile(path.join(tmp, "config.json"), JSON.stringify({ currentContext: "probe" }));
    const env = { DOCKER_CONFIG: tmp, DOCKER_HOST: undefined, DOCKER_CONTEXT: undefined, NO_COLOR: "1" };
    const missing = path.join(tmp, "no-such-dataset");

    for (const backend of [["-e", "local", "--unsafe"], ["--backend", "daytona"], ["--env", "daytona"]]) {
      connections = 0;
      const r = await runTmax(["eval", "-d", missing, "-a", "nop", ...backend], env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^tmax: error: no such directory: .*no-such-dataset/);
      assert.equal(connections, 0, `${backend.join(" ")}: no engine socket is asked`);
    }
    connections = 0;
    const docker = await runTmax(["eval", "-d", missing, "-a", "nop"], env);
    assert.equal(docker.code, 1, docker.stderr);
    assert.ok(connections >= 1, "the docker backend asks the context's engine (the control: the probe socket is seen)");
  });

  test("the rule: engine commands only, DOCKER_HOST wins, never for daytona or local", () => {
    assert.equal(needsEngineDiscovery("eval", { backend: "docker" }, {}), true);
    assert.equal(needsEngineDiscovery("sandbox", {}, {}), false);
    assert.equal(needsEngineDiscovery("prune", { backend: "docker" }, {}), true);
    assert.equal(needsEngineDiscovery("prune", { backend: "daytona" }, {}), false);
    assert.equal(needsEngineDiscovery("run", { backend: "local" }, {}), false);
    assert.equal(needsEngineDiscovery("eval", { env: "daytona" }, {}), false);
    assert.equal(needsEngineDiscovery("setup", {}, {}), true);
    assert.equal(needsEngineDiscovery("eval", { backend: "docker" }, { DOCKER_HOST: "unix:///x.sock" }), false);
    assert.equal(needsEngineDiscovery("report", {}, {}), false);
  });
});
