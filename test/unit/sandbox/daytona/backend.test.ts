// The experimental Daytona backend against the in-process fake of the SDK in test/support/daytonaFake.ts:
// creating sandboxes (params, images and snapshots in Harbor's order, quota waits), file copies, removal,
// prune, check, the API key and a missing SDK. Exec is in daytona-exec.test.ts.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { trackedCount } from "../../../../src/sandbox/cleanup.js";
import { ownerLabels } from "../../../../src/sandbox/owner.js";
import { MISSING_KEY_MESSAGE, MISSING_SDK_MESSAGE, daytonaBackend, snapshotName } from "../../../../src/sandbox/daytona/backend.js";
import type { Sandbox, SandboxSpec } from "../../../../src/sandbox/types.js";
import { API_KEY, FAST, errorWithStatus, fakeSdk, withSandbox, type FakeSandbox } from "../../../support/daytonaFake.js";

test("create maps the spec onto the SDK's create params and tracks the sandbox", async (t) => {
  const before = trackedCount();
  const { sandbox, state, root } = await withSandbox(t, {
    image: "debian:12",
    cpus: 1.5,
    memoryMb: 1536,
    env: { TASK: "x" },
    labels: { "io.tmax.job": "j1" },
    name: "My Task!",
  });
  assert.equal(sandbox.backend, "daytona");
  assert.equal(sandbox.image, "debian:12");
  assert.equal(sandbox.workdir, root, "workdir comes from the sandbox when the spec has none");
  assert.equal(trackedCount(), before + 1);
  const params = state.created[0];
  assert.equal(params.image, "debian:12");
  assert.deepEqual(params.resources, { cpu: 2, memory: 2 });
  assert.equal(params.networkBlockAll, true, "no network unless asked, like the docker backend");
  assert.deepEqual(params.labels, { "io.tmax.job": "j1", ...ownerLabels(), "io.tmax.managed": "1" });
  assert.deepEqual(params.envVars, { TASK: "x" });
  assert.match(params.name ?? "", /^tmax-my-task-[0-9a-f]{8}$/);
  assert.deepEqual(state.configs, [{ apiKey: API_KEY }]);
  const env = await sandbox.exec(["printenv", "TASK"]);
  assert.equal(env.stdout, "x\n");
  await sandbox.remove();
  assert.equal(trackedCount(), before);
});

test("network bridge keeps Daytona's network; spec.workdir is created and used", async (t) => {
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, apiUrl: "https://example.invalid/api", target: "eu", ...FAST });
  const probe = await backend.create({ image: "x" });
  t.after(() => probe.remove());
  const root = (state.sandboxes.get(probe.id) as FakeSandbox).root;
  const sandbox = await backend.create({ image: "x", network: "bridge", workdir: path.join(root, "w/app") });
  t.after(() => sandbox.remove());
  assert.equal(state.created[1].networkBlockAll, false);
  assert.equal(sandbox.workdir, path.join(root, "w/app"));
  assert.ok((await fs.stat(path.join(root, "w/app"))).isDirectory());
  assert.equal((await sandbox.exec(["pwd"])).stdout, `${path.join(root, "w/app")}\n`);
  assert.deepEqual(state.configs[0], { apiKey: API_KEY, apiUrl: "https://example.invalid/api", target: "eu" });
});

test("upload and download a directory and a file; missing paths", async (t) => {
  const { sandbox, root, state } = await withSandbox(t);
  const local = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-local-"));
  t.after(() => fs.rm(local, { recursive: true, force: true }));
  const src = path.join(local, "tests");
  await fs.mkdir(path.join(src, "nested"), { recursive: true });
  await fs.writeFile(path.join(src, "run.sh"), "#!/bin/sh\necho ok\n", { mode: 0o755 });
  await fs.writeFile(path.join(src, "nested/data ü.txt"), "data\n");
  await fs.symlink("run.sh", path.join(src, "link"));
  await fs.writeFile(path.join(local, "single.txt"), "single\n");

  await sandbox.upload(src, "up");
  await sandbox.upload(path.join(local, "single.txt"), path.join(root, "files"));
  assert.equal(await fs.readFile(path.join(root, "up/tests/nested/data ü.txt"), "utf8"), "data\n");
  assert.equal((await fs.stat(path.join(root, "up/tests/run.sh"))).mode & 0o777, 0o755);
  assert.equal(await fs.readlink(path.join(root, "up/tests/link")), "run.sh");
  assert.equal(await fs.readFile(path.join(root, "files/single.txt"), "utf8"), "single\n");
  assert.equal((await sandbox.exec(["./run.sh"], { cwd: "up/tests" })).stdout, "ok\n");

  const back = path.join(local, "back");
  assert.equal(await sandbox.download("up/tests", back), true);
  assert.equal(await fs.readFile(path.join(back, "tests/nested/data ü.txt"), "utf8"), "data\n");
  assert.equal((await fs.stat(path.join(back, "tests/run.sh"))).mode & 0o777, 0o755);
  assert.equal(await fs.lstat(path.join(back, "tests/link")).catch(() => null), null, "links are not recreated on the host");
  assert.equal(await sandbox.download(path.join(root, "files/single.txt"), back), true);
  assert.equal(await fs.readFile(path.join(back, "single.txt"), "utf8"), "single\n");
  assert.equal(await sandbox.download("no/such/path", back), false);
  // Only this sandbox's archives: other test files run at the same time and have their own in /tmp.
  const archives = state.transfers.filter((p) => /^\/tmp\/\.tmax-(put|get)-[0-9a-f]{16}\.tar$/.test(p));
  assert.ok(archives.length >= 3, `uploads and downloads went through temp archives: ${archives.join(", ")}`);
  assert.deepEqual(archives.filter((p) => existsSync(p)), [], "temp archives in the sandbox are removed");
});

test("writeFile creates parents and sets the mode; readFile returns bytes, null when missing", async (t) => {
  const { sandbox, root } = await withSandbox(t);
  await sandbox.writeFile("a/b/c.txt", "héllo\n", 0o600);
  assert.equal((await fs.stat(path.join(root, "a/b/c.txt"))).mode & 0o777, 0o600);
  assert.equal((await sandbox.readFile("a/b/c.txt"))?.toString(), "héllo\n");
  const bytes = Buffer.from([0, 1, 2, 255, 254]);
  await sandbox.writeFile(path.join(root, "bin.dat"), bytes);
  assert.deepEqual(await sandbox.readFile(path.join(root, "bin.dat")), bytes);
  assert.equal(await sandbox.readFile("missing.txt"), null);
  await assert.rejects(sandbox.readFile("a/b"), /cannot read/);
});

test("remove is idempotent, untracks, and later calls fail clearly", async (t) => {
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  const before = trackedCount();
  const sandbox = await backend.create({ image: "x" });
  t.after(() => sandbox.remove());
  const root = (state.sandboxes.get(sandbox.id) as FakeSandbox).root;
  await Promise.all([sandbox.remove(), sandbox.remove()]);
  await sandbox.remove();
  assert.equal(existsSync(root), false);
  assert.equal(trackedCount(), before);
  await assert.rejects(sandbox.exec(["true"]), /was removed/);

  // Deleted behind our back (e.g. by prune from another process): remove still succeeds.
  const other = await backend.create({ image: "x" });
  await state.sandboxes.get(other.id)!.delete();
  await other.remove();
  assert.equal(trackedCount(), before);
});

test("prune deletes only tmax sandboxes: of one job, all, or (default) those whose owner process is gone", async (t) => {
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  const made: Sandbox[] = [];
  for (const job of ["j1", "j1", "j2"]) made.push(await backend.create({ image: "x", labels: { "io.tmax.job": job } }));
  t.after(async () => {
    for (const s of made) await s.remove();
  });
  // Someone else's sandbox in the same account.
  const foreign = await new sdk.Daytona({ apiKey: API_KEY }).create({ image: "y", labels: { team: "other" } });
  t.after(() => foreign.delete().catch(() => undefined));

  assert.equal(await backend.prune({ job: "j1" }), 2);
  assert.deepEqual(made.map((s) => (state.sandboxes.get(s.id) as FakeSandbox).deleted), [true, true, false]);
  // j2's owner is this (live) process: the default prune keeps it, --all removes it
  assert.equal(await backend.prune(), 0);
  assert.equal(await backend.prune({ all: true }), 1);
  assert.equal((foreign as FakeSandbox).deleted, false);
  assert.equal(await backend.prune({ all: true }), 0);
});

test("check: ok when sandboxes can be listed, a one-line reason and fix otherwise", async () => {
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  const ok = await backend.check();
  assert.equal(ok.ok, true);
  state.failList = errorWithStatus(`Unauthorized: bad key ${API_KEY}`, 401);
  const bad = await backend.check();
  assert.equal(bad.ok, false);
  assert.ok(!bad.detail.includes(API_KEY), bad.detail);
  assert.match(bad.detail, /cannot list Daytona sandboxes/);
  assert.match(bad.fix ?? "", /DAYTONA_API_KEY/);
  assert.ok(!bad.detail.includes("\n"));
});

test("the API key comes from DAYTONA_API_KEY, is required, and never shows in an error", async (t) => {
  const saved = process.env.DAYTONA_API_KEY;
  t.after(() => {
    if (saved === undefined) delete process.env.DAYTONA_API_KEY;
    else process.env.DAYTONA_API_KEY = saved;
  });
  delete process.env.DAYTONA_API_KEY;
  const { sdk, state } = fakeSdk();
  assert.throws(() => daytonaBackend({ sdk }), { message: MISSING_KEY_MESSAGE });
  assert.ok(!MISSING_KEY_MESSAGE.includes("\n"));

  process.env.DAYTONA_API_KEY = API_KEY;
  const backend = daytonaBackend({ sdk });
  state.failCreate = errorWithStatus(`internal error while handling request with key ${API_KEY}`, 500);
  const err = await backend.create({ image: "x" }).then(
    () => assert.fail("create should fail"),
    (e: Error) => e,
  );
  assert.equal(state.configs[0].apiKey, API_KEY);
  assert.match(err.message, /cannot create a Daytona sandbox from 'x': internal error .* \*\*\*/);
  assert.ok(!err.message.includes(API_KEY));
  state.failCreate = errorWithStatus(`denied for ${API_KEY}`, 401);
  const denied = await backend.create({ image: "x" }).catch((e: Error) => e);
  assert.match((denied as Error).message, /rejected the API key \(401\)/);
  assert.ok(!(denied as Error).message.includes(API_KEY));
  assert.ok(!JSON.stringify(denied).includes(API_KEY));
});

const sdkInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve("@daytonaio/sdk");
    return true;
  } catch {
    return false;
  }
})();

test(
  "without the SDK installed: one-line error from create and prune, check says how to fix",
  { skip: sdkInstalled ? "skipped: @daytonaio/sdk is installed here, so the missing-SDK path cannot be exercised" : false },
  async () => {
    const backend = daytonaBackend({ apiKey: API_KEY });
    await assert.rejects(backend.create({ image: "x" }), { message: MISSING_SDK_MESSAGE });
    await assert.rejects(backend.prune(), { message: MISSING_SDK_MESSAGE });
    const check = await backend.check();
    assert.deepEqual(check, { ok: false, detail: MISSING_SDK_MESSAGE, fix: "npm i -g @daytonaio/sdk" });
  },
);

test("an SDK loader that cannot find the SDK: create fails with the one-line fix, and it is tried again next time", async (t) => {
  let attempts = 0;
  const { sdk } = fakeSdk();
  let installed = false;
  const backend = daytonaBackend({
    apiKey: API_KEY,
    ...FAST,
    loadSdk: async () => {
      attempts++;
      if (!installed) throw new Error(MISSING_SDK_MESSAGE);
      return sdk;
    },
  });
  await assert.rejects(backend.create({ image: "x" }), { message: MISSING_SDK_MESSAGE });
  assert.deepEqual(await backend.check(), { ok: false, detail: MISSING_SDK_MESSAGE, fix: "npm i -g @daytonaio/sdk" });
  installed = true;
  const sandbox = await backend.create({ image: "x" });
  t.after(() => sandbox.remove());
  assert.equal(attempts, 3);
  assert.equal((await sandbox.exec(["echo", "ok"])).stdout, "ok\n");
});

test("build: the image map rewrites FROM in a temp copy of the context handed to the Dockerfile builder", async (t) => {
  const ctx = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-ctx-"));
  t.after(() => fs.rm(ctx, { recursive: true, force: true }));
  const original = "FROM --platform=linux/amd64 python:3.11-slim AS base\nCOPY app.txt /app/\nFROM base\nRUN true\n";
  await fs.writeFile(path.join(ctx, "Dockerfile"), original);
  await fs.writeFile(path.join(ctx, "app.txt"), "app\n");
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });

  const sandbox = await backend.create({ build: { contextDir: ctx, imageMap: { "python:3.11-slim": "registry.example/tb-base:1" } } });
  t.after(() => sandbox.remove());
  const [built] = state.dockerfiles;
  assert.equal(built.text, "FROM --platform=linux/amd64 registry.example/tb-base:1 AS base\nCOPY app.txt /app/\nFROM base\nRUN true\n");
  assert.notEqual(path.dirname(built.path), ctx, "the task's own Dockerfile is left alone");
  assert.equal(await fs.readFile(path.join(ctx, "Dockerfile"), "utf8"), original);
  assert.deepEqual(state.created[0].image, { dockerfile: built.text });
  assert.equal(existsSync(built.path), false, "the temp copy is removed once the sandbox exists");
  assert.equal(sandbox.image, `dockerfile:${ctx}`);

  // No mapping that applies: the original Dockerfile is used in place.
  const plain = await backend.create({ build: { contextDir: ctx, imageMap: { "ubuntu:22.04": "x" } } });
  t.after(() => plain.remove());
  assert.equal(state.dockerfiles[1].path, path.join(ctx, "Dockerfile"));
  assert.equal(state.dockerfiles[1].text, original);

  await assert.rejects(backend.create({ build: { contextDir: path.join(ctx, "nope") } }), /is not a directory/);
  await assert.rejects(backend.create({}), /needs an image or a build context/);
});

test("build failures carry the snapshot log", async (t) => {
  const ctx = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-ctx-"));
  t.after(() => fs.rm(ctx, { recursive: true, force: true }));
  await fs.writeFile(path.join(ctx, "Dockerfile"), "FROM base\nRUN false\n");
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  state.failCreate = errorWithStatus("snapshot build failed", 400);
  await assert.rejects(backend.create({ build: { contextDir: ctx } }), (err: Error & { kind?: string; log?: string }) => {
    assert.equal(err.kind, "build_failed");
    assert.match(err.message, /the Dockerfile in .*: snapshot build failed$/);
    assert.equal(err.log, "Step 1/2 : FROM base\n");
    return true;
  });
  await assert.rejects(backend.create({ image: "x" }), { name: "SandboxError", kind: "create_failed" } as object);
});

async function taskContext(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-ctx-"));
  t.after(() => fs.rm(ctx, { recursive: true, force: true }));
  await fs.writeFile(path.join(ctx, "Dockerfile"), "FROM debian:12\nRUN true\n");
  return ctx;
}

test("snapshotName fills every {name}", () => {
  assert.equal(snapshotName("harbor__{name}__snapshot", "hello-world"), "harbor__hello-world__snapshot");
  assert.equal(snapshotName("{name}-{name}", "a"), "a-a");
  assert.equal(snapshotName("fixed", "a"), "fixed");
});

test("image choice: an active snapshot of the template, else the Dockerfile (forced or no prebuilt), else the prebuilt image", async (t) => {
  const ctx = await taskContext(t);
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, snapshotTemplate: "tmax__{name}__snap", ...FAST });
  const make = async (spec: SandboxSpec, notes: string[] = []) => {
    const sb = await backend.create(spec, { onNote: (n) => notes.push(n) });
    t.after(() => sb.remove());
    return { sb, params: state.created.at(-1)! };
  };
  const task = (extra: Partial<SandboxSpec>): SandboxSpec => ({ name: "hello", cpus: 2, memoryMb: 2048, storageMb: 5000, build: { contextDir: ctx }, ...extra });

  // no snapshot yet: prebuilt image when the task names one, the Dockerfile otherwise
  const prebuilt = await make(task({ prebuilt: "ghcr.io/org/hello:1" }));
  assert.equal(prebuilt.params.image, "ghcr.io/org/hello:1");
  assert.equal(prebuilt.sb.image, "ghcr.io/org/hello:1");
  assert.deepEqual(prebuilt.params.resources, { cpu: 2, memory: 2, disk: 5 });
  assert.equal(prebuilt.params.snapshot, undefined);
  const built = await make(task({}));
  assert.deepEqual(built.params.image, { dockerfile: "FROM debian:12\nRUN true\n" });
  assert.equal(built.sb.image, `dockerfile:${ctx}`);
  const forced = await make(task({ prebuilt: "ghcr.io/org/hello:1", forceBuild: true }));
  assert.deepEqual(forced.params.image, { dockerfile: "FROM debian:12\nRUN true\n" });

  // a snapshot that is not active is passed over
  state.snapshots.set("tmax__hello__snap", { name: "tmax__hello__snap", state: "building" });
  assert.equal((await make(task({ prebuilt: "ghcr.io/org/hello:1" }))).params.image, "ghcr.io/org/hello:1");

  // an active one wins, even over --force-build (with a note), and carries its own resources
  state.snapshots.set("tmax__hello__snap", { name: "tmax__hello__snap", state: "active" });
  const snap = await make(task({ prebuilt: "ghcr.io/org/hello:1" }));
  assert.equal(snap.params.snapshot, "tmax__hello__snap");
  assert.equal("image" in snap.params, false);
  assert.equal("resources" in snap.params, false);
  assert.equal(snap.sb.image, "snapshot:tmax__hello__snap");
  assert.equal(snap.params.ephemeral, true);
  assert.equal(snap.params.networkBlockAll, true);
  const notes: string[] = [];
  const forcedSnap = await make(task({ forceBuild: true }), notes);
  assert.equal(forcedSnap.params.snapshot, "tmax__hello__snap");
  assert.match(notes.join("\n"), /--force-build: the active Daytona snapshot 'tmax__hello__snap' is used anyway/);
  assert.equal((await forcedSnap.sb.exec(["echo", "from snapshot"])).stdout, "from snapshot\n");

  // another task has no snapshot
  assert.equal((await make(task({ name: "other", prebuilt: "ghcr.io/org/other:1" }))).params.image, "ghcr.io/org/other:1");
  // without a template no snapshot is looked up
  const plain = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  const p = await plain.create(task({ prebuilt: "ghcr.io/org/hello:1" }));
  t.after(() => p.remove());
  assert.equal(state.created.at(-1)!.image, "ghcr.io/org/hello:1");
});

test("the snapshot template comes from TMAX_DAYTONA_SNAPSHOT_TEMPLATE", async (t) => {
  const saved = process.env.TMAX_DAYTONA_SNAPSHOT_TEMPLATE;
  t.after(() => {
    if (saved === undefined) delete process.env.TMAX_DAYTONA_SNAPSHOT_TEMPLATE;
    else process.env.TMAX_DAYTONA_SNAPSHOT_TEMPLATE = saved;
  });
  process.env.TMAX_DAYTONA_SNAPSHOT_TEMPLATE = "env-{name}";
  const { sdk, state } = fakeSdk();
  state.snapshots.set("env-t1", { name: "env-t1", state: "active" });
  const sb = await daytonaBackend({ sdk, apiKey: API_KEY, ...FAST }).create({ name: "t1", image: "debian:12" });
  t.after(() => sb.remove());
  assert.equal(state.created[0].snapshot, "env-t1");
});

test("a create refused for a full quota is waited out (Harbor: CPU limit exceeded); other refusals are not", async (t) => {
  const { sdk, state } = fakeSdk();
  let full = 2;
  class Busy extends sdk.Daytona {
    async create(...args: Parameters<InstanceType<typeof sdk.Daytona>["create"]>) {
      if (full > 0) {
        full--;
        throw errorWithStatus("Total CPU limit exceeded. Maximum allowed: 10", 403, "DaytonaForbiddenError");
      }
      return super.create(...args);
    }
  }
  const backend = daytonaBackend({ sdk: { Daytona: Busy, Image: sdk.Image }, apiKey: API_KEY, ...FAST });
  const notes: string[] = [];
  const sandbox = await backend.create({ image: "x" }, { onNote: (n) => notes.push(n) });
  t.after(() => sandbox.remove());
  assert.equal(full, 0);
  assert.equal(notes.length, 2);
  assert.match(notes[0], /Daytona quota in use \(Total CPU limit exceeded/);
  // more than `attempts` refusals: the last one is reported
  full = 5;
  await assert.rejects(backend.create({ image: "x" }), /CPU limit exceeded/);
  assert.equal(full, 2, "three tries");
  full = 0;
  state.failCreate = errorWithStatus("invalid image name", 400);
  const before = state.created.length;
  await assert.rejects(backend.create({ image: "x" }), /invalid image name/);
  assert.equal(state.created.length, before + 1, "tried once");
});
