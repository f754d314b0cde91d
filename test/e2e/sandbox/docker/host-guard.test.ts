// The host guard against real containers: a sandbox on a bridge network (a task with internet, a compose
// network, internal or not) cannot open a connection to any address of this host, the gateway included, while
// the bridge itself still works (another container on it is reachable, service names resolve); the cloud
// metadata address is dropped too, and so is a port another container publishes on the host (`-p`), which the
// engine's DNAT forwards before INPUT sees it.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { after, before, describe, test } from "node:test";
import { connectEngine, dockerBackend, TMAX_JOB_LABEL, type Sandbox, type SandboxSpec } from "../../../../src/sandbox/index.js";
import { guardMode, hostGuardStatus, removeHostGuard } from "../../../../src/sandbox/docker/hostGuard.js";
import { ENGINE_SKIP, TEST_RUN } from "../../../support/env.js";

const JOB = `host-guard-test-${randomBytes(4).toString("hex")}`;
const TB_BASE = "localhost/tb-base:bookworm";
const SKIP = ENGINE_SKIP || (guardMode() === "off" ? "skipped: TMAX_HOST_GUARD=0 (the host guard is switched off)" : false);
if (SKIP && !ENGINE_SKIP) console.log(`# ${SKIP}`);

/** This host's non-loopback IPv4 addresses, read after the bridges are up (their gateways are among them). */
function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => Boolean(a) && a!.family === "IPv4" && !a!.internal)
    .map((a) => a.address);
}

/** The gateways of a sandbox's networks (podman: 10.88.0.1, 10.89.x.1; Docker Engine: 172.17.0.1 on docker0, br-* above). */
async function gateways(docker: ReturnType<typeof connectEngine>, sb: Sandbox): Promise<string[]> {
  const info = await docker.getContainer((sb as unknown as { name: string }).name).inspect();
  return Object.values(info.NetworkSettings.Networks ?? {}).map((n) => n.Gateway).filter(Boolean);
}

/** One line per address: `open A` or `closed A` (a connect that neither succeeds nor fails in 5 s counts as closed). */
async function probe(sb: Sandbox, addresses: string[], port: number): Promise<Map<string, string>> {
  const script = addresses.map((a) => `if timeout 5 bash -c 'exec 3<>/dev/tcp/${a}/${port}' 2>/dev/null; then echo "open ${a}"; else echo "closed ${a}"; fi`).join("\n");
  const r = await sb.exec(["bash", "-c", script], { timeoutSec: 60 });
  return new Map(r.stdout.trim().split("\n").map((l) => [l.split(" ")[1]!, l.split(" ")[0]!]));
}

describe("host guard: bridge containers cannot reach the host", { skip: SKIP }, () => {
  const docker = connectEngine();
  const backend = dockerBackend({ docker });
  const made: Sandbox[] = [];
  let server: http.Server;
  let port = 0;
  const remotes: string[] = [];

  before(async () => {
    // a service every host address answers on, as a model server started with --host 0.0.0.0 would
    server = http.createServer((req, res) => res.end("host secret\n"));
    server.on("connection", (s) => remotes.push(s.remoteAddress ?? "?"));
    await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await Promise.all(made.map((s) => s.remove().catch(() => undefined)));
    await new Promise((resolve) => server.close(resolve));
  });

  async function create(spec: SandboxSpec): Promise<Sandbox> {
    const sb = await backend.create({ image: TB_BASE, ...spec, labels: { ...spec.labels, [TMAX_JOB_LABEL]: JOB } });
    made.push(sb);
    return sb;
  }

  test("a sandbox with internet: every host address is closed, a neighbour on the bridge is open", async () => {
    // start from no guard (as after a reboot): the first bridge sandbox of a process installs it
    await removeHostGuard();
    assert.equal((await hostGuardStatus()).installed, false);
    const neighbour = await create({ network: "bridge", name: "guard-neighbour" });
    await neighbour.exec(["bash", "-c", "nohup python3 -m http.server 8080 >/dev/null 2>&1 &"], { timeoutSec: 10 });
    const sb = await create({ network: "bridge", name: "guard-agent" });
    const status = await hostGuardStatus();
    assert.equal(status.installed, true, `the guard is installed before the first bridge sandbox: ${status.detail}`);

    const addresses = hostAddresses();
    const gw = await gateways(docker, sb);
    assert.ok(gw.length && gw.every((g) => addresses.includes(g)), `the bridge's gateway (${gw.join(" ")}) is a host address: ${addresses.join(" ")}`);
    const t0 = Date.now();
    const seen = await probe(sb, addresses, port);
    for (const a of addresses) assert.equal(seen.get(a), "closed", `host address ${a}:${port} must not be reachable`);
    assert.ok(Date.now() - t0 < 5_000 * addresses.length, "refused, not left hanging");
    assert.deepEqual(remotes.filter((r) => !/127\.0\.0\.1|::1$/.test(r)), [], "the host server saw no connection from a container");

    // the cloud metadata address (instance credentials) is not reachable either
    assert.equal((await probe(sb, ["169.254.169.254"], 80)).get("169.254.169.254"), "closed", "169.254.169.254:80 must not be reachable");

    // the bridge itself works: the neighbour's port is reachable by its address
    const neighbourIp = (await neighbour.exec(["bash", "-c", "hostname -I"])).stdout.trim().split(/\s+/)[0]!;
    let open = "";
    for (let i = 0; i < 50 && open !== "open"; i++) {
      open = (await probe(sb, [neighbourIp], 8080)).get(neighbourIp) ?? "";
      if (open !== "open") await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(open, "open", "a container on the same bridge is reachable");
    // and the host itself still reaches its own server (the guard only filters traffic from the bridges)
    const body = await new Promise<string>((resolve, reject) =>
      http.get({ host: "127.0.0.1", port }, (res) => { let b = ""; res.on("data", (d) => (b += d)); res.on("end", () => resolve(b)); }).on("error", reject));
    assert.equal(body, "host secret\n");
  });

  test("an internal compose network: service names resolve and answer, the host's addresses (its gateway too) do not", async () => {
    const sb = await create({
      network: "none",
      name: "guard-compose",
      compose: {
        main: "main",
        services: [
          { name: "web", image: TB_BASE, command: ["python3", "-m", "http.server", "8000"], env: {}, dependsOn: [] },
          { name: "main", image: TB_BASE, env: {}, dependsOn: [{ service: "web", condition: "service_started" }] },
        ],
      },
    });
    const resolved = await sb.exec(["bash", "-c", "getent hosts web"], { timeoutSec: 20 });
    assert.equal(resolved.exitCode, 0, `DNS through the gateway still works: ${resolved.stderr}`);
    let web = "";
    for (let i = 0; i < 50 && web !== "open"; i++) {
      web = (await probe(sb, ["web"], 8000)).get("web") ?? "";
      if (web !== "open") await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(web, "open", "the sidecar answers by its service name");

    const addresses = hostAddresses();
    const gw = await gateways(docker, sb);
    assert.ok(gw.length && gw.every((g) => addresses.includes(g)), `the compose network's gateway (${gw.join(" ")}) is a host address: ${addresses.join(" ")}`);
    const seen = await probe(sb, addresses, port);
    for (const a of addresses) assert.equal(seen.get(a), "closed", `host address ${a}:${port} must not be reachable from a compose network`);
    assert.deepEqual(remotes.filter((r) => !/127\.0\.0\.1|::1$/.test(r)), [], "the host server saw no connection from a container");
  });
  test("a published container port (-p, as a containerised model server): closed through the host's IP and the gateway, open to a neighbour", async () => {
    // a free host port, then a container publishing it (the engine's DNAT, not a host process, answers there)
    const probeServer = http.createServer();
    await new Promise<void>((resolve) => probeServer.listen(0, "0.0.0.0", resolve));
    const published = (probeServer.address() as AddressInfo).port;
    await new Promise((resolve) => probeServer.close(resolve));
    const name = `guard-published-${randomBytes(3).toString("hex")}`;
    // through the engine's API, so that the same test runs on podman and on Docker Engine
    const publisher = await docker.createContainer({
      name, Image: TB_BASE, Cmd: ["python3", "-m", "http.server", "8000"],
      Labels: { "io.tmax.managed": "1", "io.tmax.test-run": TEST_RUN!, [TMAX_JOB_LABEL]: JOB },
      ExposedPorts: { "8000/tcp": {} },
      HostConfig: { PortBindings: { "8000/tcp": [{ HostPort: String(published) }] }, NetworkMode: "bridge" },
    });
    await publisher.start();
    try {
      const sb = await create({ network: "bridge", name: "guard-published-agent" });
      assert.equal((await hostGuardStatus()).installed, true);
      // the port is published and serves: the host reaches it through every address
      const hostGet = (host: string) => new Promise<number>((resolve) => http.get({ host, port: published, timeout: 5000 }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on("error", () => resolve(0)));
      let served = 0;
      for (let i = 0; i < 50 && served !== 200; i++) {
        served = await hostGet("127.0.0.1");
        if (served !== 200) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(served, 200, "the published port answers on the host");
      const addresses = hostAddresses();
      const gw = await gateways(docker, sb);
      assert.ok(gw.length && gw.every((g) => addresses.includes(g)), `the gateway (${gw.join(" ")}) is among the host's addresses: ${addresses.join(" ")}`);
      const t0 = Date.now();
      const seen = await probe(sb, addresses, published);
      for (const a of addresses) assert.equal(seen.get(a), "closed", `published port ${a}:${published} must not be reachable from a trial`);
      assert.ok(Date.now() - t0 < 3_000 * addresses.length, "refused at once, not left to time out");
      // the neighbour: the publishing container itself, by its address on the shared bridge
      const nets = (await publisher.inspect()).NetworkSettings.Networks ?? {};
      const ip = Object.values(nets).map((n) => n.IPAddress).find(Boolean) ?? "";
      assert.ok(ip && (await gateways(docker, sb)).some((g) => g.split(".").slice(0, 2).join(".") === ip.split(".").slice(0, 2).join(".")), `the publisher ${ip} is on the agent's bridge`);
      assert.equal((await probe(sb, [ip], 8000)).get(ip), "open", "a container on the same bridge is reachable");
    } finally {
      await publisher.remove({ force: true }).catch(() => undefined);
    }
  });
});
