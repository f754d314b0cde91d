// Engine discovery against real HTTP servers on unix sockets in a temp dir, answering like Docker Engine and like
// podman; docker contexts read from a temp DOCKER_CONFIG.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { dockerContext, defaultEngineHost, engineCandidates, useEngineHost } from "../../../../src/sandbox/docker/engine.js";
import { discoverEngine, engineLine, fixFor, noEngineFix, probeEngine } from "../../../../src/sandbox/docker/discover.js";

type Flavour = { kind: "docker" | "podman"; rootless: boolean; hits?: string[]; slowVersionMs?: number };

function answer(f: Flavour, url: string): unknown {
  const p = url.replace(/^\/v[0-9.]+/, "");
  if (f.kind === "docker") {
    if (p === "/version") return { Version: "20.10.24", ApiVersion: "1.41", Components: [{ Name: "Engine", Version: "20.10.24" }] };
    if (p === "/info") return { SecurityOptions: ["name=seccomp,profile=default", ...(f.rootless ? ["name=rootless"] : [])] };
  } else {
    if (p === "/version") return { Version: "4.3.1", ApiVersion: "1.41", Components: [{ Name: "Podman Engine", Version: "4.3.1" }] };
    if (p === "/libpod/info") return { host: { security: { rootless: f.rootless } } };
    if (p === "/info") return { SecurityOptions: [] };
  }
  return undefined;
}

/** A real HTTP server on a unix socket that answers /_ping, /version, /info (and podman's /libpod/info). */
async function fakeEngine(socket: string, f: Flavour): Promise<http.Server> {
  mkdirSync(path.dirname(socket), { recursive: true });
  const server = http.createServer((req, res) => {
    f.hits?.push(req.url ?? "");
    if (req.url === "/_ping") return void res.end("OK");
    if (f.slowVersionMs && /\/version$/.test(req.url ?? "")) return void setTimeout(() => res.end("{}"), f.slowVersionMs);
    const body = answer(f, req.url ?? "");
    if (body === undefined) {
      res.writeHead(404, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ message: "page not found" }));
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return server;
}

/** A socket file nobody listens on any more (ECONNREFUSED): a hard link outlives the server's own path. */
async function deadSocket(socket: string): Promise<void> {
  const live = `${socket}.live`;
  const s = await fakeEngine(live, { kind: "docker", rootless: false });
  linkSync(live, socket);
  await new Promise<void>((resolve) => s.close(() => resolve()));
}

const SEC = 1000;

describe("engine discovery", () => {
  let dir: string;
  const servers: http.Server[] = [];
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "tmax-discover-"));
  });
  after(async () => {
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
    useEngineHost(undefined);
  });
  const start = async (rel: string, f: Flavour) => {
    const socket = path.join(dir, rel);
    servers.push(await fakeEngine(socket, f));
    return `unix://${socket}`;
  };

  it("orders the candidates: docker context, Docker Engine, Docker Desktop, rootless podman, rootful podman, podman machine", () => {
    const home = path.join(dir, "home-order");
    const list = engineCandidates({ env: { XDG_RUNTIME_DIR: "/run/user/1000" }, home, uid: 1000, root: "/" });
    assert.deepEqual(
      list.map((c) => c.source),
      ["Docker Engine", "Docker Desktop", "rootless podman", "rootful podman", "podman machine", "podman machine"],
    );
    assert.equal(list[0]!.host, "unix:///var/run/docker.sock");
    assert.equal(list[2]!.host, "unix:///run/user/1000/podman/podman.sock");
    assert.equal(list[3]!.host, "unix:///run/podman/podman.sock");
    // root has no rootless podman socket of its own; without XDG_RUNTIME_DIR a user's is /run/user/<uid>
    assert.ok(!engineCandidates({ env: {}, home, uid: 0 }).some((c) => c.source === "rootless podman"));
    assert.equal(engineCandidates({ env: {}, home, uid: 1234 }).find((c) => c.source === "rootless podman")!.host, "unix:///run/user/1234/podman/podman.sock");
    // then podman's own fallback when /run/user/<uid> is not the user's (su/runuser: no login session)
    const rootless = (env: NodeJS.ProcessEnv) => engineCandidates({ env, home, uid: 1234 }).filter((c) => c.source === "rootless podman").map((c) => c.host);
    assert.deepEqual(rootless({}), ["unix:///run/user/1234/podman/podman.sock", "unix:///tmp/podman-run-1234/podman/podman.sock"]);
    assert.deepEqual(rootless({ TMPDIR: "/var/tmp" }).at(-1), "unix:///var/tmp/podman-run-1234/podman/podman.sock");
    assert.deepEqual(rootless({ XDG_RUNTIME_DIR: "/run/user/1234" }), ["unix:///run/user/1234/podman/podman.sock"]);
  });

  it("finds a rootless podman service in $TMPDIR/podman-run-<uid> when there is no XDG_RUNTIME_DIR", async () => {
    const root = path.join(dir, "root-tmp");
    await start("root-tmp/tmp/podman-run-1000/podman/podman.sock", { kind: "podman", rootless: true });
    const found = await discoverEngine({ env: {}, home: path.join(dir, "h"), uid: 1000, root });
    assert.equal(found.engine?.host, `unix://${path.join(root, "tmp/podman-run-1000/podman/podman.sock")}`);
    assert.equal(found.engine?.rootless, true);
    assert.deepEqual(found.tried.map((t) => t.source), ["Docker Engine", "Docker Desktop", "rootless podman", "rootless podman"]);
  });

  it("DOCKER_HOST alone when set, whatever else answers", async () => {
    const root = path.join(dir, "root-dh");
    await start("root-dh/var/run/docker.sock", { kind: "docker", rootless: false });
    const podman = await start("elsewhere/podman.sock", { kind: "podman", rootless: true });
    const found = await discoverEngine({ env: { DOCKER_HOST: podman }, home: path.join(dir, "h"), uid: 1000, root });
    assert.equal(found.tried.length, 1);
    assert.equal(found.engine?.host, podman);
    assert.equal(found.engine?.kind, "podman");
    assert.equal(found.engine?.rootless, true);
    assert.match(engineLine(found.engine!), /^podman \(rootless\) 4\.3\.1 \(API 1\.41\) at unix:\/\/.*podman\.sock \(DOCKER_HOST\)$/);
    assert.equal(defaultEngineHost({ env: { DOCKER_HOST: podman } }), podman);
  });

  it("finds Docker Engine's socket before podman's, and tells rootful Docker from rootless", async () => {
    const root = path.join(dir, "root-both");
    const docker = await start("root-both/var/run/docker.sock", { kind: "docker", rootless: false });
    await start("root-both/run/podman/podman.sock", { kind: "podman", rootless: false });
    const found = await discoverEngine({ env: {}, home: path.join(dir, "h"), uid: 0, root });
    assert.equal(found.engine?.host, docker);
    assert.equal(found.engine?.kind, "docker");
    assert.equal(found.engine?.rootless, false);
    assert.equal(found.engine?.version, "Docker Engine 20.10.24");
    assert.equal(found.tried.length, 1);

    const rootlessDocker = await start("rootless-docker.sock", { kind: "docker", rootless: true });
    const p = await probeEngine({ host: rootlessDocker, source: "DOCKER_HOST" });
    assert.equal(p.rootless, true);
  });

  it("without Docker: rootless podman of the user before rootful podman; missing sockets are skipped with a fix", async () => {
    const root = path.join(dir, "root-podman");
    const runtime = path.join(dir, "xdg-1000");
    const hits: string[] = [];
    const rootless = await start("xdg-1000/podman/podman.sock", { kind: "podman", rootless: true, hits });
    await start("root-podman/run/podman/podman.sock", { kind: "podman", rootless: false });
    const found = await discoverEngine({ env: { XDG_RUNTIME_DIR: runtime }, home: path.join(dir, "h"), uid: 1000, root });
    assert.equal(found.engine?.host, rootless);
    assert.equal(found.engine?.kind, "podman");
    assert.equal(found.engine?.rootless, true);
    assert.ok(hits.some((h) => /\/libpod\/info$/.test(h)), `libpod info asked: ${hits.join(" ")}`);
    assert.deepEqual(found.tried.map((t) => [t.source, t.ok, t.error]), [
      ["Docker Engine", false, "no socket"],
      ["Docker Desktop", false, "no socket"],
      ["rootless podman", true, undefined],
    ]);
    assert.match(found.tried[0]!.fix!, /usermod -aG docker|systemctl enable --now docker/);
  });

  it("rootful podman when it is the only one; a dead socket is passed over with its own fix", async () => {
    const root = path.join(dir, "root-rootful");
    await deadSocket(path.join(root, "var/run/docker.sock"));
    const podman = await start("root-rootful/run/podman/podman.sock", { kind: "podman", rootless: false });
    const found = await discoverEngine({ env: {}, home: path.join(dir, "h"), uid: 0, root, timeoutMs: 2 * SEC });
    assert.equal(found.engine?.host, podman);
    assert.equal(found.engine?.rootless, false);
    assert.equal(found.tried[0]!.error, "ECONNREFUSED");
    assert.match(found.tried[0]!.fix!, /systemctl enable --now docker/);
  });

  it("an engine that answers /_ping but is slow to describe itself is still the engine", async () => {
    const slow = await start("slow.sock", { kind: "podman", rootless: false, slowVersionMs: 1500 });
    const p = await probeEngine({ host: slow, source: "DOCKER_HOST" }, { detailTimeoutMs: 300 });
    assert.equal(p.ok, true);
    assert.equal(p.kind, undefined);
    assert.match(p.error!, /answers \/_ping, but \/version failed/);
    assert.match(engineLine(p), /^an engine at unix:.*slow\.sock \(DOCKER_HOST\)$/);
  });

  it("the current docker context of DOCKER_CONFIG comes first; DOCKER_CONTEXT overrides it", async () => {
    const config = path.join(dir, "docker-config");
    const meta = (name: string, host: string) => {
      const d = path.join(config, "contexts", "meta", createHash("sha256").update(name).digest("hex"));
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, "meta.json"), JSON.stringify({ Name: name, Metadata: {}, Endpoints: { docker: { Host: host, SkipTLSVerify: false } } }));
    };
    const desktop = await start("ctx/desktop.sock", { kind: "docker", rootless: false });
    const other = await start("ctx/other.sock", { kind: "podman", rootless: true });
    meta("desktop-linux", desktop);
    meta("other", other);
    writeFileSync(path.join(config, "config.json"), JSON.stringify({ auths: {}, currentContext: "desktop-linux" }));
    const root = path.join(dir, "root-ctx");
    await start("root-ctx/var/run/docker.sock", { kind: "docker", rootless: false });

    assert.deepEqual(dockerContext({ env: { DOCKER_CONFIG: config } }), { name: "desktop-linux", host: desktop });
    const found = await discoverEngine({ env: { DOCKER_CONFIG: config }, home: path.join(dir, "h"), uid: 0, root });
    assert.equal(found.engine?.host, desktop);
    assert.equal(found.engine?.source, "docker context desktop-linux");

    const chosen = await discoverEngine({ env: { DOCKER_CONFIG: config, DOCKER_CONTEXT: "other" }, home: path.join(dir, "h"), uid: 0, root });
    assert.equal(chosen.engine?.host, other);
    assert.equal(chosen.engine?.kind, "podman");

    // "default" means no context; ~/.docker is read when DOCKER_CONFIG is unset
    assert.equal(dockerContext({ env: { DOCKER_CONFIG: config, DOCKER_CONTEXT: "default" } }), undefined);
    const home = path.join(dir, "home-ctx");
    mkdirSync(path.join(home, ".docker"), { recursive: true });
    writeFileSync(path.join(home, ".docker", "config.json"), JSON.stringify({ currentContext: "gone" }));
    const gone = dockerContext({ env: {}, home });
    assert.equal(gone?.name, "gone");
    assert.match(gone!.error!, /context 'gone' does not exist/);
  });

  it("a broken context or config is reported and the next candidate is used", async () => {
    const config = path.join(dir, "bad-config");
    mkdirSync(config, { recursive: true });
    writeFileSync(path.join(config, "config.json"), "{ not json");
    const root = path.join(dir, "root-bad");
    const docker = await start("root-bad/var/run/docker.sock", { kind: "docker", rootless: false });
    const found = await discoverEngine({ env: { DOCKER_CONFIG: config }, home: path.join(dir, "h"), uid: 0, root });
    assert.equal(found.engine?.host, docker);
    assert.match(found.tried[0]!.error!, /cannot read .*config\.json/);
    assert.match(found.tried[0]!.fix!, /docker context use default/);
  });

  it("nothing answers: the fix starts what is installed, else installs an engine; never `npm run setup`", async () => {
    const root = path.join(dir, "root-none");
    mkdirSync(root, { recursive: true });
    const none = await discoverEngine({ env: {}, home: path.join(dir, "h"), uid: 1000, root, onPath: () => false });
    assert.equal(none.engine, undefined);
    assert.match(none.fix!, /apt-get install podman uidmap.*systemctl --user enable --now podman\.socket.*usermod -aG docker/);
    assert.match(noEngineFix(none.tried, { uid: 1000, onPath: (n) => n === "podman" }), /^`systemctl --user enable --now podman\.socket`$/);
    assert.match(noEngineFix(none.tried, { uid: 1000, onPath: (n) => n === "dockerd" }), /systemctl enable --now docker.*usermod -aG docker \$USER/);
    assert.match(noEngineFix(none.tried, { uid: 0, onPath: (n) => n === "podman" }), /^`systemctl enable --now podman\.socket`/);
    for (const p of none.tried) assert.doesNotMatch(p.fix ?? "", /npm run/);
    // a socket there but refused says most
    assert.match(fixFor({ host: "unix:///var/run/docker.sock", source: "Docker Engine" }, "EACCES", 1000), /sudo usermod -aG docker \$USER/);
    assert.match(fixFor({ host: "unix:///run/podman/podman.sock", source: "rootful podman" }, "EACCES", 1000), /systemctl --user enable --now podman\.socket/);
    assert.match(fixFor({ host: "unix:///run/user/1000/podman/podman.sock", source: "rootless podman" }, "ECONNREFUSED", 1000), /systemctl --user enable --now podman\.socket/);
  });

  it("the default client address: DOCKER_HOST, else discovery's choice, else the first socket that exists", async () => {
    const root = path.join(dir, "root-default");
    mkdirSync(path.join(root, "run/podman"), { recursive: true });
    writeFileSync(path.join(root, "run/podman/podman.sock"), "");
    useEngineHost(undefined);
    assert.equal(defaultEngineHost({ env: {}, home: path.join(dir, "h"), uid: 0, root }), `unix://${root}/run/podman/podman.sock`);
    useEngineHost("unix:///chosen.sock");
    assert.equal(defaultEngineHost({ env: {}, home: path.join(dir, "h"), uid: 0, root }), "unix:///chosen.sock");
    useEngineHost(undefined);
    assert.equal(defaultEngineHost({ env: {}, home: path.join(dir, "h"), uid: 0, root: path.join(dir, "empty") }), "unix:///run/podman/podman.sock");
  });
});
