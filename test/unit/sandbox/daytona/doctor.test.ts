// `tmax doctor --backend daytona` against the fake SDK of test/support/daytonaFake.ts and a fake registry.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { checkDaytona, doctorCommand } from "../../../../src/cli/doctor.js";
import { MISSING_SDK_MESSAGE } from "../../../../src/sandbox/daytona/sdk.js";
import { diagnoseDaytona, parseImageRef } from "../../../../src/sandbox/daytona/doctor.js";
import { errorWithStatus, fakeSdk } from "../../../support/daytonaFake.js";

const API_KEY = `sk-test-${randomBytes(6).toString("hex")}`;
const ENV = { DAYTONA_API_KEY: API_KEY };

/** A registry that knows `images` (repo:tag as in the URL), answers 401 with a Bearer challenge without a token. */
function fakeRegistry(images: string[], opts: { privateRepos?: string[] } = {}) {
  const requests: string[] = [];
  const impl = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    requests.push(`${init?.method ?? "GET"} ${url.host}${url.pathname}`);
    if (url.host === "auth.example") {
      const scope = url.searchParams.get("scope") ?? "";
      if (opts.privateRepos?.some((r) => scope.includes(r))) return new Response("denied", { status: 401 });
      return Response.json({ token: "anon-token" });
    }
    const auth = new Headers(init?.headers).get("authorization");
    if (auth !== "Bearer anon-token") {
      return new Response(null, { status: 401, headers: { "www-authenticate": 'Bearer realm="https://auth.example/token",service="registry.example"' } });
    }
    const m = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url.pathname);
    return new Response(null, { status: m && images.includes(`${url.host}/${m[1]}:${m[2]}`) ? 200 : 404 });
  }) as typeof fetch;
  return { fetch: impl, requests };
}

async function harborTask(t: { after: (fn: () => Promise<void>) => void }, name: string, toml: string, dockerfile = true): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-doctor-"));
  t.after(() => fs.rm(root, { recursive: true, force: true }));
  const dir = path.join(root, name);
  await fs.mkdir(path.join(dir, "environment"), { recursive: true });
  await fs.mkdir(path.join(dir, "tests"), { recursive: true });
  await fs.writeFile(path.join(dir, "task.toml"), toml);
  await fs.writeFile(path.join(dir, "instruction.md"), "Do it.\n");
  await fs.writeFile(path.join(dir, "tests/test.sh"), "#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n");
  if (dockerfile) await fs.writeFile(path.join(dir, "environment/Dockerfile"), "FROM debian:12\n");
  return dir;
}

test("parseImageRef applies Docker Hub's defaults and keeps other registries", () => {
  assert.deepEqual(parseImageRef("debian:12"), { host: "registry-1.docker.io", repo: "library/debian", reference: "12" });
  assert.deepEqual(parseImageRef("python"), { host: "registry-1.docker.io", repo: "library/python", reference: "latest" });
  assert.deepEqual(parseImageRef("org/app:2"), { host: "registry-1.docker.io", repo: "org/app", reference: "2" });
  assert.deepEqual(parseImageRef("ghcr.io/org/app:1.0"), { host: "ghcr.io", repo: "org/app", reference: "1.0" });
  assert.deepEqual(parseImageRef("localhost:5000/app"), { host: "localhost:5000", repo: "app", reference: "latest" });
  assert.deepEqual(parseImageRef("ghcr.io/org/app@sha256:abc"), { host: "ghcr.io", repo: "org/app", reference: "sha256:abc" });
});

test("no API key: one failing finding with the fix; nothing is asked of the API", async () => {
  const { sdk, state } = fakeSdk();
  const findings = await diagnoseDaytona({ env: {}, loadSdk: async () => sdk });
  assert.deepEqual(
    findings.map((f) => f.ok),
    [false, true],
  );
  assert.match(findings[0].what, /DAYTONA_API_KEY is not set/);
  assert.match(findings[0].fix ?? "", /export DAYTONA_API_KEY=/);
  assert.equal(state.configs.length, 0, "no client was made");
});

test("SDK not installed: the one-line fix is npm i -g @daytonaio/sdk", async () => {
  const findings = await diagnoseDaytona({
    env: ENV,
    loadSdk: async () => {
      throw new Error(MISSING_SDK_MESSAGE);
    },
  });
  assert.equal(findings.length, 2);
  assert.equal(findings[0].ok, true, "the key is set");
  assert.deepEqual(findings[1], { ok: false, what: "the Daytona SDK (@daytonaio/sdk) is not installed", fix: "npm i -g @daytonaio/sdk" });
  // any other load failure is shown as it is
  const broken = await diagnoseDaytona({
    env: ENV,
    loadSdk: async () => {
      throw new Error("cannot load the Daytona SDK (@daytonaio/sdk): Unexpected token");
    },
  });
  assert.deepEqual(broken[1], { ok: false, what: "cannot load the Daytona SDK (@daytonaio/sdk): Unexpected token", fix: "npm i -g @daytonaio/sdk" });
});

test("the key does not authenticate: a failing finding without the key in it", async () => {
  const { sdk, state } = fakeSdk();
  state.failList = errorWithStatus(`Unauthorized: invalid key ${API_KEY}`, 401, "DaytonaAuthenticationError");
  const findings = await diagnoseDaytona({ env: { ...ENV, DAYTONA_API_URL: "https://daytona.example/api", DAYTONA_TARGET: "eu" }, loadSdk: async () => sdk });
  const last = findings.at(-1)!;
  assert.equal(last.ok, false);
  assert.match(last.what, /cannot list Daytona sandboxes at https:\/\/daytona\.example\/api, target eu: Unauthorized: invalid key \*\*\*/);
  assert.ok(!JSON.stringify(findings).includes(API_KEY));
  assert.match(last.fix ?? "", /DAYTONA_API_KEY/);
  assert.deepEqual(state.configs, [{ apiKey: API_KEY, apiUrl: "https://daytona.example/api", target: "eu" }]);

  state.failList = Object.assign(new Error("connect ECONNREFUSED"), { name: "DaytonaConnectionError" });
  const offline = (await diagnoseDaytona({ env: ENV, loadSdk: async () => sdk })).at(-1)!;
  assert.equal(offline.ok, false);
  assert.match(offline.fix ?? "", /network access/);
});

test("usage: what the key's sandboxes use now (the SDK exposes no quota)", async (t) => {
  const { sdk } = fakeSdk();
  const client = new sdk.Daytona({ apiKey: API_KEY });
  const a = await client.create({ image: "x", resources: { cpu: 2, memory: 4, disk: 10 }, labels: { "io.tmax.managed": "1" } });
  const b = await client.create({ image: "y", resources: { cpu: 1, memory: 1, disk: 3 } });
  t.after(async () => {
    await a.delete();
    await b.delete();
  });
  b.state = "stopped";
  const findings = await diagnoseDaytona({ env: ENV, loadSdk: async () => sdk });
  assert.deepEqual(
    findings.map((f) => f.ok),
    [true, true, true, true],
  );
  assert.match(findings[2].what, /the API key authenticates/);
  assert.equal(findings[3].what, "quota: the SDK exposes none; in use now: 2 sandboxes, 1 started (2 vCPU, 4 GiB memory, 10 GiB disk), 1 made by tmax");
  assert.match(findings[3].fix ?? "", /tmax sandbox prune --backend daytona/);
});

test("a task's snapshot: active, not active (with the reason), or missing (then its prebuilt image is looked up)", async (t) => {
  const { sdk, state } = fakeSdk();
  const registry = fakeRegistry(["registry.example/org/hello:1"]);
  const dir = await harborTask(t, "hello", '[environment]\ndocker_image = "registry.example/org/hello:1"\n');
  const deps = { env: ENV, loadSdk: async () => sdk, fetch: registry.fetch };
  const template = "tb__{name}__snap";

  state.snapshots.set("tb__hello__snap", { name: "tb__hello__snap", state: "active" });
  let f = await checkDaytona({ task: dir, snapshotTemplate: template }, deps);
  assert.equal(f.at(-1)!.ok, true);
  assert.equal(f.at(-1)!.what, "daytona: task hello: snapshot 'tb__hello__snap' is active; its sandboxes start from it");
  assert.deepEqual(registry.requests, [], "an active snapshot needs no registry");

  state.snapshots.set("tb__hello__snap", { name: "tb__hello__snap", state: "error", errorReason: "pull failed" });
  f = await checkDaytona({ task: dir, snapshotTemplate: template }, deps);
  const bad = f.find((x) => /snapshot 'tb__hello__snap'/.test(x.what))!;
  assert.equal(bad.ok, false);
  assert.match(bad.what, /is error \(pull failed\), so it is not used/);
  assert.match(bad.fix ?? "", /activate or rebuild/);
  assert.equal(f.at(-1)!.ok, true, "the fallback, the prebuilt image, exists");
  assert.match(f.at(-1)!.what, /prebuilt image 'registry.example\/org\/hello:1' exists in its registry/);

  state.snapshots.clear();
  f = await checkDaytona({ task: dir, snapshotTemplate: template }, deps);
  assert.deepEqual(
    f.slice(-2).map((x) => x.ok),
    ["warn", true],
  );
  assert.match(f.at(-2)!.what, /no snapshot 'tb__hello__snap'/);

  // without a template: straight to the image; one that is not there fails
  const gone = await harborTask(t, "gone", '[environment]\ndocker_image = "registry.example/org/gone:1"\n');
  f = await checkDaytona({ task: gone }, deps);
  assert.equal(f.at(-1)!.ok, false);
  assert.match(f.at(-1)!.what, /'registry.example\/org\/gone:1' is not in its registry/);
  // a Dockerfile-only task is built by Daytona
  const built = await harborTask(t, "built", "");
  f = await checkDaytona({ task: built }, deps);
  assert.equal(f.at(-1)!.ok, true);
  assert.match(f.at(-1)!.what, /Daytona builds its Dockerfile/);
  // not a task
  f = await checkDaytona({ task: path.join(os.tmpdir(), "no-such-task-" + randomBytes(3).toString("hex")) }, deps);
  assert.equal(f.length, 1);
  assert.equal(f[0].ok, false);
});

test("--image: a snapshot name or an image reference; private images are a warning", async () => {
  const { sdk, state } = fakeSdk();
  const registry = fakeRegistry(["registry.example/org/app:2"], { privateRepos: ["org/secret"] });
  const deps = { env: ENV, loadSdk: async () => sdk, fetch: registry.fetch };
  state.snapshots.set("my-snap", { name: "my-snap", state: "active" });
  assert.equal((await checkDaytona({ image: "my-snap" }, deps)).at(-1)!.what, "daytona: snapshot 'my-snap' is active");
  state.snapshots.set("old-snap", { name: "old-snap", state: "inactive" });
  const inactive = (await checkDaytona({ image: "old-snap" }, deps)).at(-1)!;
  assert.deepEqual([inactive.ok, inactive.what], [false, "daytona: snapshot 'old-snap' is inactive"]);
  assert.equal((await checkDaytona({ image: "registry.example/org/app:2" }, deps)).at(-1)!.ok, true);
  assert.equal((await checkDaytona({ image: "registry.example/org/app:3" }, deps)).at(-1)!.ok, false);
  const secret = (await checkDaytona({ image: "registry.example/org/secret:1" }, deps)).at(-1)!;
  assert.equal(secret.ok, "warn");
  assert.match(secret.fix ?? "", /Registries/);
  const offline = (await checkDaytona({ image: "registry.example/org/app:2" }, { ...deps, fetch: (async () => Promise.reject(new Error("getaddrinfo ENOTFOUND"))) as typeof fetch })).at(-1)!;
  assert.equal(offline.ok, "warn");
  assert.match(offline.what, /could not ask its registry \(getaddrinfo ENOTFOUND\)/);
});

test("doctor --backend daytona prints one line per finding and exits 1 when one fails", async (t) => {
  const { sdk, state } = fakeSdk();
  const lines: string[] = [];
  t.mock.method(console, "log", (line: string) => lines.push(line));
  state.snapshots.set("my-snap", { name: "my-snap", state: "active" });
  const o = { skipModel: true, backend: "daytona" as const, image: "my-snap" } as Parameters<typeof doctorCommand>[0];
  assert.equal(await doctorCommand(o, { env: ENV, loadSdk: async () => sdk }), 0);
  assert.equal(lines.length, 6); // the Node.js runtime line, then five Daytona findings
  assert.match(lines[0], /Node\.js v\d+/);
  assert.ok(lines.every((l) => !l.includes("\n")));
  assert.match(lines.at(-1)!, /snapshot 'my-snap' is active/);
  lines.length = 0;
  assert.equal(await doctorCommand(o, { env: {}, loadSdk: async () => sdk }), 1);
  assert.match(lines[1], /FAIL.*DAYTONA_API_KEY is not set.*fix: export DAYTONA_API_KEY=/);
});
