// The sandbox layer against the real engine (podman's Docker API) and the host (local backend).
// Every container carries a per-run job label; the last test checks that none of them is left.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test, type TestContext } from "node:test";
import { pathToFileURL } from "node:url";
import {
  buildImage,
  connectEngine,
  dockerBackend,
  localBackend,
  SandboxError,
  TMAX_JOB_LABEL,
  TMAX_LABEL,
  type Sandbox,
  type SandboxSpec,
} from "../../../src/sandbox/index.js";
import { BASE_IMAGE, ENGINE_SKIP, ROOT, TB_BASE_IMAGE, TEST_RUN } from "../../support/env.js";

const JOB = `sandbox-test-${randomBytes(4).toString("hex")}`;
const docker = connectEngine();
const backend = dockerBackend({ docker });
const builtImages = new Set<string>();

async function sandbox(t: TestContext, spec: SandboxSpec = {}): Promise<Sandbox> {
  const sb = await backend.create({ image: BASE_IMAGE, ...spec, labels: { ...spec.labels, [TMAX_JOB_LABEL]: JOB } });
  t.after(() => sb.remove());
  return sb;
}

async function ourContainers(job = JOB): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${TMAX_JOB_LABEL}=${job}`] } });
  return list.map((c) => c.Id);
}

async function tempDir(t: TestContext, prefix = "tmax-sbx-"): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A build context whose hash is unique to this run (a nonce file), so tags never collide across runs. */
async function buildContext(t: TestContext, dockerfile: string, files: Record<string, string> = {}): Promise<string> {
  const dir = await tempDir(t, "tmax-ctx-");
  await fs.writeFile(path.join(dir, "Dockerfile"), dockerfile);
  await fs.writeFile(path.join(dir, ".nonce"), JOB + randomBytes(4).toString("hex"));
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  return dir;
}

after(async () => {
  if (ENGINE_SKIP) return;
  for (const tag of builtImages) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
});

describe("docker backend", { skip: ENGINE_SKIP }, () => {
  test("check() reports the engine", async () => {
    const health = await backend.check();
    assert.equal(health.ok, true);
    assert.match(health.detail, /at unix:\/\//);
  });

  test("create from an image: labels, name, workdir '/' when the image has none", async (t) => {
    const sb = await sandbox(t, { image: TB_BASE_IMAGE, name: "basic run" });
    assert.equal(sb.backend, "docker");
    assert.equal(sb.image, TB_BASE_IMAGE);
    assert.equal(sb.workdir, "/");
    const info = await docker.getContainer(sb.id).inspect();
    assert.equal(info.Config.Labels[TMAX_LABEL], "1");
    assert.equal(info.Config.Labels[TMAX_JOB_LABEL], JOB);
    assert.match(info.Name, /^\/?tmax-basic-run-[0-9a-f]{8}$/);
    assert.equal(info.State.Running, true);
    const r = await sb.exec(["python3", "-c", "print(6*7)"]);
    assert.equal(r.stdout, "42\n");
  });

  test("spec.workdir is created when missing and used as the default cwd", async (t) => {
    const sb = await sandbox(t, { workdir: "/work/deep/dir" });
    assert.equal(sb.workdir, "/work/deep/dir");
    const r = await sb.exec(["pwd"]);
    assert.equal(r.stdout, "/work/deep/dir\n");
  });

  test("exec separates stdout/stderr and reports exit codes", async (t) => {
    const sb = await sandbox(t);
    const r = await sb.exec(["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"]);
    assert.equal(r.stdout, "out\nout2\n");
    assert.equal(r.stderr, "err\n");
    assert.equal(r.exitCode, 3);
    assert.equal(r.timedOut, false);
    assert.equal(r.truncated, false);
    assert.ok(r.durationMs >= 0);
    assert.equal((await sb.exec(["true"])).exitCode, 0);
    assert.equal((await sb.exec(["sh", "-c", "kill -9 $$"])).exitCode, 137);
    const missing = await sb.exec(["no-such-binary"]);
    assert.equal(missing.exitCode, 127);
    assert.match(missing.stderr, /no-such-binary/);
    await assert.rejects(sb.exec([]), /argv is empty/);
  });

  test("exec passes env, cwd and user; spec.env is the container env", async (t) => {
    const sb = await sandbox(t, { env: { FROM_SPEC: "spec value" } });
    const r = await sb.exec(["sh", "-c", 'echo "$FROM_SPEC|$FROM_EXEC|$(pwd)|$(id -u)"'], {
      env: { FROM_EXEC: "exec value" },
      cwd: "/tmp",
      user: "nobody",
    });
    assert.equal(r.stdout, "spec value|exec value|/tmp|65534\n");
    // A relative cwd is relative to the workdir.
    await sb.exec(["mkdir", "-p", "/sub"]);
    assert.equal((await sb.exec(["pwd"], { cwd: "sub" })).stdout, "/sub\n");
  });

  test("timeout: the command is killed inside the container and the call returns promptly", async (t) => {
    const sb = await sandbox(t);
    const t0 = Date.now();
    const r = await sb.exec(["sleep", "200"], { timeoutSec: 2 });
    const elapsed = Date.now() - t0;
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, 124);
    assert.ok(elapsed >= 1900 && elapsed < 6000, `took ${elapsed} ms`);
    // Nothing keeps running after the timeout.
    const ps = await sb.exec(["sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"]);
    assert.doesNotMatch(ps.stdout.replaceAll("\0", " "), /sleep 200/);
    // A command that finishes in time is not marked.
    const ok = await sb.exec(["sh", "-c", "exit 5"], { timeoutSec: 10 });
    assert.deepEqual([ok.exitCode, ok.timedOut], [5, false]);
  });

  test("an image without timeout(1) falls back to the host watchdog, which kills the command", async (t) => {
    const context = await buildContext(t, `FROM ${BASE_IMAGE}\nRUN rm /usr/bin/timeout\n`);
    const tag = await buildImage({ contextDir: context }, docker);
    builtImages.add(tag);
    const sb = await sandbox(t, { image: tag });
    const t0 = Date.now();
    const r = await sb.exec(["sleep", "200"], { timeoutSec: 2 });
    assert.deepEqual([r.timedOut, r.exitCode], [true, 124]);
    assert.ok(Date.now() - t0 < 6000, `took ${Date.now() - t0} ms`);
    const ps = await sb.exec(["sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"]);
    assert.doesNotMatch(ps.stdout.replaceAll("\0", " "), /sleep 200/);
    // Untimed and in-time commands still work normally.
    assert.equal((await sb.exec(["sh", "-c", "echo fine"], { timeoutSec: 5 })).stdout, "fine\n");
  });

  test("abort signal stops a running exec", async (t) => {
    const sb = await sandbox(t);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const t0 = Date.now();
    await assert.rejects(sb.exec(["sleep", "60"], { signal: controller.signal }), { name: "AbortError" });
    assert.ok(Date.now() - t0 < 3000);
  });

  test("a 5 MB flood is capped at maxOutputBytes, drained fast, and stderr is capped separately", async (t) => {
    const sb = await sandbox(t);
    const cap = 1024 * 1024;
    const t0 = Date.now();
    const r = await sb.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' a; echo done >&2"], { maxOutputBytes: cap });
    const elapsed = Date.now() - t0;
    assert.equal(r.truncated, true);
    assert.equal(r.stdout.length, cap);
    assert.equal(r.stderr, "done\n");
    assert.equal(r.exitCode, 0);
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    const small = await sb.exec(["sh", "-c", "seq 1 1000; seq 1 1000 >&2"], { maxOutputBytes: 10 });
    assert.equal(small.stdout, "1\n2\n3\n4\n5\n");
    assert.equal(small.stderr, "1\n2\n3\n4\n5\n");
    assert.equal(small.truncated, true);
  });

  test("utf-8 split across writes decodes cleanly; binary output does not break anything", async (t) => {
    const sb = await sandbox(t);
    const split = await sb.exec(["sh", "-c", "printf '\\342'; sleep 0.2; printf '\\202\\254 ok\\n'"]);
    assert.equal(split.stdout, "€ ok\n");
    const binary = await sb.exec(["sh", "-c", "printf 'a\\377\\376b\\000c'"]);
    assert.equal(binary.stdout, "a\uFFFD\uFFFDb\0c");
    const cut = await sb.exec(["sh", "-c", "printf '€€€'"], { maxOutputBytes: 4 });
    assert.equal(cut.stdout, "€\uFFFD"); // a character cut by the cap is one U+FFFD, as Python decodes bytes[:cap]
    assert.equal(cut.truncated, true);
  });

  test("upload and download a directory and a file", async (t) => {
    const sb = await sandbox(t);
    const local = await tempDir(t);
    const src = path.join(local, "payload");
    await fs.mkdir(path.join(src, "nested/empty"), { recursive: true });
    await fs.writeFile(path.join(src, "a.txt"), "alpha\n");
    await fs.writeFile(path.join(src, "nested/run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
    await fs.symlink("a.txt", path.join(src, "link"));
    await fs.writeFile(path.join(local, "single.bin"), Buffer.from([0, 1, 2, 255]));

    await sb.upload(src, "/dest/dir");
    await sb.upload(path.join(local, "single.bin"), "/dest/dir");
    assert.equal((await sb.exec(["/dest/dir/payload/nested/run.sh"])).stdout, "ran\n");
    assert.equal((await sb.exec(["cat", "/dest/dir/payload/link"])).stdout, "alpha\n");
    assert.equal((await sb.exec(["test", "-d", "/dest/dir/payload/nested/empty"])).exitCode, 0);
    assert.equal((await sb.exec(["stat", "-c", "%s", "/dest/dir/single.bin"])).stdout, "4\n");
    // Existing dirs keep their mode (no tar entry is written for the parents).
    assert.equal((await sb.exec(["stat", "-c", "%a", "/tmp"])).stdout, "1777\n");

    const back = path.join(local, "back");
    assert.equal(await sb.download("/dest/dir/payload", back), true);
    assert.equal(await fs.readFile(path.join(back, "payload/a.txt"), "utf8"), "alpha\n");
    assert.equal((await fs.stat(path.join(back, "payload/nested/run.sh"))).mode & 0o111, 0o111);
    // downloads are data: the link is recorded, never recreated on the host
    assert.equal(await fs.lstat(path.join(back, "payload/link")).catch(() => null), null);
    assert.equal(await sb.download("/dest/dir/single.bin", back), true);
    assert.deepEqual(await fs.readFile(path.join(back, "single.bin")), Buffer.from([0, 1, 2, 255]));
    assert.equal(await sb.download("/does/not/exist", back), false);
  });

  test("writeFile/readFile: round trip, mode, relative paths, missing → null, symlinks followed", async (t) => {
    const sb = await sandbox(t, { workdir: "/app" });
    await sb.writeFile("/x/y/z.txt", "héllo\n");
    assert.equal((await sb.readFile("/x/y/z.txt"))?.toString(), "héllo\n");
    await sb.writeFile("run.sh", "#!/bin/sh\necho hi\n", 0o755);
    assert.equal((await sb.exec(["./run.sh"])).stdout, "hi\n");
    assert.equal((await sb.readFile("/app/run.sh"))?.toString(), "#!/bin/sh\necho hi\n");
    const bytes = Buffer.from([0, 255, 10, 13]);
    await sb.writeFile("/bin.dat", bytes);
    assert.deepEqual(await sb.readFile("/bin.dat"), bytes);
    await sb.writeFile("/x/y/z.txt", "replaced");
    assert.equal((await sb.readFile("/x/y/z.txt"))?.toString(), "replaced");
    assert.equal(await sb.readFile("/nope.txt"), null);
    assert.equal(await sb.readFile("/no/such/dir/file"), null);
    await sb.exec(["ln", "-s", "/x/y/z.txt", "/lnk"]);
    assert.equal((await sb.readFile("/lnk"))?.toString(), "replaced");
    await assert.rejects(sb.readFile("/x"), /not a regular file/);
  });

  test("network none has only loopback; bridge has an interface", async (t) => {
    const none = await sandbox(t);
    assert.equal((await none.exec(["ls", "/sys/class/net"])).stdout, "lo\n");
    const bridged = await sandbox(t, { network: "bridge" });
    assert.match((await bridged.exec(["ls", "/sys/class/net"])).stdout, /eth0|ens|enp/);
  });

  test("resource limits are applied", async (t) => {
    const sb = await sandbox(t, { cpus: 1.5, memoryMb: 512, pidsLimit: 256 });
    const info = await docker.getContainer(sb.id).inspect();
    assert.equal(info.HostConfig.NanoCpus, 1.5e9);
    assert.equal(info.HostConfig.Memory, 512 * 1024 * 1024);
    assert.equal(info.HostConfig.PidsLimit, 256);
    assert.equal(info.HostConfig.NetworkMode, "none");
    const defaults = await docker.getContainer((await sandbox(t)).id).inspect();
    assert.equal(defaults.HostConfig.PidsLimit, 4096);
  });

  test("storage_mb caps the writable layer where the engine can; elsewhere one warning and the sandbox runs", async (t) => {
    const info = (await docker.info()) as { DriverStatus?: string[][] };
    const backing = info.DriverStatus?.find((r) => r[0] === "Backing Filesystem")?.[1] ?? "unknown";
    const warnings: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void warnings.push(args.join(" "));
    let first: Sandbox, second: Sandbox;
    try {
      first = await sandbox(t, { storageMb: 64 });
      second = await sandbox(t, { storageMb: 64 });
    } finally {
      console.error = original;
    }
    const host = (await docker.getContainer(first.id).inspect()).HostConfig as { StorageOpt?: Record<string, string> };
    if (host.StorageOpt?.size) {
      assert.equal(host.StorageOpt.size, "64m");
      // the cap holds: writing past it fails inside the container
      const r = await first.exec(["bash", "-c", "head -c 100M /dev/zero > /big"], { timeoutSec: 60 });
      assert.notEqual(r.exitCode, 0, "a 100 MB write into a 64 MB layer fails");
      assert.deepEqual(warnings, []);
    } else {
      assert.notEqual(backing, "xfs", "xfs with pquota would have taken the cap");
      const storageWarnings = warnings.filter((w) => /storage limits .* not enforced/.test(w));
      assert.equal(storageWarnings.length, 1, `one warning per engine, not per sandbox: ${warnings.join(" | ")}`);
      assert.doesNotMatch(storageWarnings[0]!, /\n/);
    }
    assert.equal((await second.exec(["true"])).exitCode, 0, "the sandbox runs either way");
  });

  test("remove is fast and idempotent; exec afterwards fails with one line", async (t) => {
    const sb = await sandbox(t);
    const t0 = Date.now();
    await sb.remove();
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 2000, `remove took ${elapsed} ms`);
    await sb.remove();
    await Promise.all([sb.remove(), sb.remove()]);
    await assert.rejects(docker.getContainer(sb.id).inspect(), { statusCode: 404 });
    await assert.rejects(sb.exec(["true"]), (err: SandboxError) => err.kind === "exec_failed" && !err.message.includes("\n"));
  });

  test("a nonexistent image fails with image_not_found and leaves no container", async () => {
    const job = `${JOB}-missing`;
    await assert.rejects(
      backend.create({ image: "localhost/definitely-not-here:1", labels: { [TMAX_JOB_LABEL]: job } }),
      (err: SandboxError) =>
        err.kind === "image_not_found" &&
        err.message === "image 'localhost/definitely-not-here:1' not found locally; build it or check --image",
    );
    assert.deepEqual(await ourContainers(job), []);
  });

  test("an unreachable engine gives engine_unreachable in one line, and check() says how to fix it", async () => {
    const nowhere = dockerBackend({ host: "unix:///nonexistent/podman.sock" });
    await assert.rejects(
      nowhere.create({ image: BASE_IMAGE }),
      (err: SandboxError) =>
        err.kind === "engine_unreachable" && err.message.startsWith("cannot reach the container engine at unix:///nonexistent/podman.sock") && !err.message.includes("\n"),
    );
    const health = await nowhere.check();
    assert.equal(health.ok, false);
    assert.match(health.fix ?? "", /tmax doctor/);
  });

  test("prune removes labelled leftovers of one job only", async (t) => {
    const job = `${JOB}-prune`;
    const other = `${JOB}-keep`;
    const make = (j: string) =>
      // with the test run's label: prune under TMAX_TEST_RUN only touches this run's containers
      docker.createContainer({ Image: BASE_IMAGE, Cmd: ["sleep", "infinity"], Labels: { [TMAX_LABEL]: "1", [TMAX_JOB_LABEL]: j, "io.tmax.test-run": TEST_RUN! }, HostConfig: { NetworkMode: "none" } });
    const leftovers = [await make(job), await make(job), await make(other)];
    t.after(() => Promise.all(leftovers.map((c) => c.remove({ force: true }).catch(() => undefined))));
    await leftovers[0].start();
    assert.equal(await backend.prune({ job }), 2);
    assert.deepEqual(await ourContainers(job), []);
    assert.equal((await ourContainers(other)).length, 1);
    assert.equal(await backend.prune({ job }), 0);
    assert.equal(await backend.prune({ job: other }), 1);
  });

  test("prune removes a verifier snapshot and the agent container whose network namespace it shares, in one pass", async (t) => {
    const job = `${JOB}-prune-snap`;
    const labels = { [TMAX_LABEL]: "1", [TMAX_JOB_LABEL]: job, "io.tmax.test-run": TEST_RUN! };
    const agent = await docker.createContainer({ Image: BASE_IMAGE, Cmd: ["sleep", "infinity"], Labels: labels, HostConfig: { NetworkMode: "none" } });
    await agent.start();
    const snapshot = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: ["sleep", "infinity"],
      Labels: { ...labels, [`${TMAX_LABEL}.snapshot`]: "1" },
      HostConfig: { NetworkMode: `container:${agent.id}` },
    });
    await snapshot.start();
    t.after(() => Promise.all([snapshot, agent].map((c) => c.remove({ force: true }).catch(() => undefined))));
    assert.equal(await backend.prune({ job }), 2);
    assert.deepEqual(await ourContainers(job), []);
  });

  test("build: FROM rewritten through the image map, WORKDIR detected, second build is a cache hit", async (t) => {
    const context = await buildContext(t, "FROM python:3.11-slim\nWORKDIR /app\nCOPY hello.txt /app/\nCOPY sub/ /app/sub/\nCOPY . /ctx/\n", {
      "hello.txt": "hello from the context\n",
      "sub/x.txt": "x\n",
      "ignored.log": "should not be sent\n",
      "mod.pyc": "",
      "data1.csv": "",
      "docs/keep.md": "kept\n",
      "docs/drop.md": "",
      // a class, a range, an excluded dir with an exception inside it: as Docker, the dir is walked for it
      ".dockerignore": "*.log\n*.py[co]\ndata[0-9].csv\ndocs\n!docs/keep.md\n",
    });
    const imageMap = { "python:3.11-slim": BASE_IMAGE };
    const logs: string[] = [];
    const tag = await buildImage({ contextDir: context, imageMap }, docker, { onLog: (l) => logs.push(l) });
    builtImages.add(tag);
    assert.match(tag, /^localhost\/tmax-task:[0-9a-f]{16}$/);
    assert.ok(logs.some((l) => l.includes(BASE_IMAGE)), "the build used the mapped base image");

    const t0 = Date.now();
    const again = await buildImage({ contextDir: context, imageMap }, docker, { onLog: () => assert.fail("cache hit must not build") });
    assert.equal(again, tag);
    assert.ok(Date.now() - t0 < 1500, "cache hit is quick");

    const sb = await sandbox(t, { build: { contextDir: context, imageMap } });
    assert.equal(sb.image, tag);
    assert.equal(sb.workdir, "/app");
    assert.equal((await sb.exec(["cat", "hello.txt", "sub/x.txt"])).stdout, "hello from the context\nx\n");
    assert.equal((await sb.exec(["test", "-e", "/app/ignored.log"])).exitCode, 1);
    const sent = await sb.exec(["sh", "-c", "cd /ctx && find . -type f ! -name .nonce | sort"]);
    assert.equal(sent.stdout, "./.dockerignore\n./Dockerfile\n./docs/keep.md\n./hello.txt\n./sub/x.txt\n");

    // A change in the context means a new tag.
    await fs.writeFile(path.join(context, "hello.txt"), "changed\n");
    const changed = await buildImage({ contextDir: context, imageMap }, docker);
    builtImages.add(changed);
    assert.notEqual(changed, tag);
  });

  test("concurrent builds of one context run once", async (t) => {
    // a context of this run's own: an image left by an interrupted earlier run would make every build a cache hit
    const context = await buildContext(t, `FROM ${BASE_IMAGE}\nRUN echo building-once # ${process.pid}-${Date.now()}\n`);
    let builds = 0;
    const onLog = (line: string) => {
      if (line.trim() === "building-once") builds++;
    };
    const tags = await Promise.all([1, 2, 3, 4].map(() => buildImage({ contextDir: context }, docker, { onLog })));
    tags.forEach((tag) => builtImages.add(tag));
    assert.equal(new Set(tags).size, 1);
    assert.equal(builds, 1);
  });

  test("a failing Dockerfile gives build_failed in one line with the full log attached, and no container", async (t) => {
    const job = `${JOB}-buildfail`;
    const context = await buildContext(t, `FROM ${BASE_IMAGE}\nRUN echo about-to-fail && exit 7\n`);
    await assert.rejects(backend.create({ build: { contextDir: context }, labels: { [TMAX_JOB_LABEL]: job } }), (err: SandboxError) => {
      assert.equal(err.kind, "build_failed");
      assert.ok(!err.message.includes("\n"), err.message);
      assert.match(err.message, /exit status 7|exit code: 7|non-zero code: 7/); // podman, BuildKit, Docker's builder
      assert.match(err.message, /about-to-fail/);
      assert.match(err.log ?? "", /about-to-fail/);
      return true;
    });
    assert.deepEqual(await ourContainers(job), []);
    const buildContainers = await docker.listContainers({ all: true });
    assert.ok(!buildContainers.some((c) => c.Labels?.[TMAX_JOB_LABEL] === job));
  });

  test("a base image that is not local fails fast with an --image-map hint", async (t) => {
    const context = await buildContext(t, "FROM python:3.99-nowhere\nRUN true\n");
    const t0 = Date.now();
    await assert.rejects(
      buildImage({ contextDir: context }, docker),
      (err: SandboxError) =>
        err.kind === "build_failed" && /base image 'python:3.99-nowhere' \(Dockerfile line 1\) not found locally/.test(err.message) && /--image-map/.test(err.message),
    );
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(buildImage({ contextDir: path.join(context, "nope") }, docker), /is not a directory/);
  });

  test("a build over its time limit fails with build_timeout", async (t) => {
    // podman keeps running an abandoned build step in the background: keep the step short.
    const context = await buildContext(t, `FROM ${BASE_IMAGE}\nRUN sleep 8\n`);
    const t0 = Date.now();
    await assert.rejects(buildImage({ contextDir: context, timeoutSec: 2 }, docker), (err: SandboxError) => err.kind === "build_timeout" && !err.message.includes("\n"));
    assert.ok(Date.now() - t0 < 10_000);
  });

  test("SIGINT in a process with installSignalCleanup removes its sandboxes and exits 130", async (t) => {
    const job = `${JOB}-signal`;
    const dir = await tempDir(t);
    const script = path.join(dir, "child.mjs");
    const sandboxModule = pathToFileURL(path.join(ROOT, "src/sandbox/index.ts")).href;
    await fs.writeFile(
      script,
      [
        `import { dockerBackend, installSignalCleanup } from ${JSON.stringify(sandboxModule)};`,
        "installSignalCleanup();",
        `const backend = dockerBackend();`,
        `const a = await backend.create({ image: ${JSON.stringify(BASE_IMAGE)}, labels: { ${JSON.stringify(TMAX_JOB_LABEL)}: ${JSON.stringify(job)} } });`,
        `const b = await backend.create({ image: ${JSON.stringify(BASE_IMAGE)}, labels: { ${JSON.stringify(TMAX_JOB_LABEL)}: ${JSON.stringify(job)} } });`,
        "console.log('READY', a.id, b.id);",
        "setInterval(() => {}, 1000);",
      ].join("\n"),
    );
    t.after(() => backend.prune({ job }));
    const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    t.after(() => child.kill("SIGKILL"));
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const ids = await new Promise<string[]>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        const m = /READY (\w+) (\w+)/.exec(out);
        if (m) resolve([m[1], m[2]]);
      });
      child.on("exit", (code) => reject(new Error(`child exited ${code} before READY: ${stderr}`)));
    });
    assert.equal((await ourContainers(job)).length, 2);
    const t0 = Date.now();
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.kill("SIGINT");
    assert.equal(await exited, 130);
    assert.ok(Date.now() - t0 < 5000, `cleanup took ${Date.now() - t0} ms`);
    for (const id of ids) await assert.rejects(docker.getContainer(id).inspect(), { statusCode: 404 });
    assert.match(stderr, /removing 2 sandboxes/);
  });

  test("no container of this run is left", async () => {
    assert.deepEqual(await ourContainers(), []);
  });
});

describe("local backend", () => {
  test("refuses without unsafe", () => {
    assert.throws(() => localBackend(), (err: Error) => /pass --unsafe/.test(err.message) && !err.message.includes("\n"));
    assert.throws(() => localBackend({ unsafe: false }), /--unsafe/);
  });

  test("runs commands in a temp workdir with the same exec semantics", async (t) => {
    const local = localBackend({ unsafe: true });
    process.env.TMAX_TEST_SECRET_KEY = "sk-should-not-leak";
    t.after(() => delete process.env.TMAX_TEST_SECRET_KEY);
    const sb = await local.create({ env: { SPEC_VAR: "s" } });
    t.after(() => sb.remove());
    assert.equal(sb.backend, "local");
    assert.ok(existsSync(sb.workdir));

    const r = await sb.exec(["sh", "-c", 'echo "$SPEC_VAR $EXEC_VAR $(pwd)"; echo err >&2; exit 4'], { env: { EXEC_VAR: "e" } });
    assert.equal(r.stdout, `s e ${await fs.realpath(sb.workdir)}\n`);
    assert.equal(r.stderr, "err\n");
    assert.equal(r.exitCode, 4);
    assert.doesNotMatch((await sb.exec(["env"])).stdout, /sk-should-not-leak/);
    assert.equal((await sb.exec(["no-such-binary-xyz"])).exitCode, 127);

    const t0 = Date.now();
    const slow = await sb.exec(["sh", "-c", "sleep 200 & sleep 200"], { timeoutSec: 1 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.exitCode, 124);
    assert.ok(Date.now() - t0 < 4000);

    const flood = await sb.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' a"], { maxOutputBytes: 1000 });
    assert.equal(flood.stdout.length, 1000);
    assert.equal(flood.truncated, true);

    await sb.writeFile("dir/f.txt", "content", 0o600);
    assert.equal((await sb.readFile("dir/f.txt"))?.toString(), "content");
    assert.equal((await fs.stat(path.join(sb.workdir, "dir/f.txt"))).mode & 0o777, 0o600);
    assert.equal(await sb.readFile("missing.txt"), null);
    const outside = await tempDir(t);
    assert.equal(await sb.download("dir", outside), true);
    assert.equal(await fs.readFile(path.join(outside, "dir/f.txt"), "utf8"), "content");
    await sb.upload(path.join(outside, "dir"), "copied");
    assert.equal((await sb.exec(["cat", "copied/dir/f.txt"])).stdout, "content");
    assert.equal(await sb.download("nope", outside), false);
  });

  test("remove kills processes the sandbox left running and deletes its dir", async (t) => {
    const sb = await localBackend({ unsafe: true }).create({});
    t.after(() => sb.remove());
    const r = await sb.exec(["sh", "-c", "nohup sleep 300 >/dev/null 2>&1 & echo $!"]);
    const pid = Number(r.stdout.trim());
    assert.ok(pid > 0);
    assert.doesNotThrow(() => process.kill(pid, 0), "background process is running");
    await sb.remove();
    await sb.remove();
    assert.equal(existsSync(sb.workdir), false);
    assert.equal(await gone(pid), true, `process ${pid} survived remove()`);
  });
});

/** Waits (up to 2 s) until `pid` no longer exists or is a zombie waiting to be reaped. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    const stat = readIfExists(`/proc/${pid}/stat`);
    if (!stat || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
