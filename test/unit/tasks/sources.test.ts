// Unit tests of the task-source pieces: registry format and dataset refs, registry auth lookup and pull retry
// classification, image digests, compose parsing, multi-step task loading and reward aggregation.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { pickDigest } from "../../../src/sandbox/docker/images.js";
import { isRetryablePullError } from "../../../src/sandbox/docker/pull.js";
import { lookupAuth, registryHost } from "../../../src/sandbox/docker/registryAuth.js";
import { gpuCheck } from "../../../src/sandbox/docker/gpus.js";
import { durationSec, readComposeFile, substitute } from "../../../src/tasks/compose.js";
import { loadTask } from "../../../src/tasks/load.js";
import { findDataset, loadRegistry, parseDatasetRef } from "../../../src/tasks/registry.js";
import { aggregateStepRewards, meetsMinReward } from "../../../src/tasks/steps.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-sources-unit-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const write = (file: string, text: string) => {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
};

describe("registry", () => {
  test("dataset refs: name@version, name, org/name@ref", () => {
    assert.deepEqual(parseDatasetRef("terminal-bench@2.0"), { name: "terminal-bench", version: "2.0" });
    assert.deepEqual(parseDatasetRef("terminal-bench"), { name: "terminal-bench" });
    assert.deepEqual(parseDatasetRef("laude/terminal-bench@latest"), { name: "laude/terminal-bench", version: "latest" });
  });

  test("Harbor's format; latest picks the highest version; unknown names and versions say what exists", async () => {
    const file = path.join(tmp, "registry.json");
    const task = { name: "t", git_url: "https://example.invalid/r.git", git_commit_id: "abc", path: "tasks/t" };
    writeFileSync(file, JSON.stringify([{ name: "tb", version: "2.0", description: "", tasks: [task] }, { name: "tb", version: "10.0", tasks: [] }, { name: "tb", version: "9.1", tasks: [] }]));
    const reg = await loadRegistry(file, tmp);
    assert.equal(findDataset(reg, { name: "tb", version: "latest" }).version, "10.0");
    assert.equal(findDataset(reg, { name: "org/tb", version: "2.0" }).tasks[0]!.path, "tasks/t");
    assert.throws(() => findDataset(reg, { name: "tb", version: "3" }), /no version '3'.*versions: 2\.0, 10\.0, 9\.1/);
    assert.throws(() => findDataset(reg, { name: "nope" }), /no dataset named 'nope'.*it has: tb/);
    writeFileSync(file, JSON.stringify([{ name: "tb", tasks: [] }]));
    await assert.rejects(loadRegistry(file, tmp), /not in Harbor's format at \[0\.version\]/);
  });

  test("git values that would be options or remote helpers on the host are refused in one line", async () => {
    // measured before the check: git_commit_id "--upload-pack=touch <file>;git-upload-pack" ran touch on the host
    const file = path.join(tmp, "hostile-registry.json");
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ git_commit_id: "--upload-pack=touch /tmp/x;git-upload-pack" }, /\[0\.tasks\.0\.git_commit_id\]: git_commit_id must be a commit id or ref name/],
      [{ git_commit_id: "abc..def" }, /git_commit_id must be/],
      [{ git_url: "ext::sh -c touch% /tmp/x" }, /\[0\.tasks\.0\.git_url\]: a git_url with a remote helper/],
      [{ git_url: "--upload-pack=x" }, /git_url must not start with '-'/],
      [{ path: "./--stdin" }, /\[0\.tasks\.0\.path\]: a task path must not start with '-'/],
    ];
    for (const [over, re] of cases) {
      const task = { name: "t", git_url: "https://example.invalid/r.git", git_commit_id: "0123abc", path: "tasks/t", ...over };
      writeFileSync(file, JSON.stringify([{ name: "d", version: "1", tasks: [task] }]));
      await assert.rejects(loadRegistry(file, tmp), (err: Error) => re.test(err.message) && !err.message.includes("\n"), JSON.stringify(over));
    }
    for (const ok of ["HEAD", "main", "release/2.0", "0123456789abcdef0123456789abcdef01234567"]) {
      writeFileSync(file, JSON.stringify([{ name: "d", version: "1", tasks: [{ name: "t", git_url: "file:///srv/r.git", git_commit_id: ok, path: "t" }] }]));
      assert.equal((await loadRegistry(file, tmp)).datasets.length, 1, ok);
    }
  });

  test("a remote registry that cannot be fetched falls back to its cached copy, with a note", async () => {
    const url = "http://127.0.0.1:9/registry.json";
    const body = JSON.stringify([{ name: "d", version: "1", tasks: [] }]);
    const ok = (async () => new Response(body)) as unknown as typeof fetch;
    const down = (async () => {
      throw new Error("connect ECONNREFUSED");
    }) as unknown as typeof fetch;
    await assert.rejects(loadRegistry(url, path.join(tmp, "c1"), down), /no cached copy/);
    assert.equal((await loadRegistry(url, path.join(tmp, "c1"), ok)).datasets.length, 1);
    const offline = await loadRegistry(url, path.join(tmp, "c1"), down);
    assert.equal(offline.datasets[0]!.name, "d");
    assert.match(offline.offlineNote!, /unreachable.*cached copy/);
  });
});

test("a remote registry body over 64 MiB is refused early, streamed or announced (one line, cached copy kept as fallback)", async () => {
  // measured before the cap: an endless body took 6.7 GB of RSS until the 30 s timeout
  const { MAX_REGISTRY_BYTES } = await import("../../../src/tasks/registry.js");
  let sent = 0;
  const endless = (async () =>
    new Response(
      new ReadableStream({
        pull(c) {
          sent += 1 << 20;
          c.enqueue(new Uint8Array(1 << 20).fill(0x20));
        },
      }),
    )) as unknown as typeof fetch;
  await assert.rejects(loadRegistry("http://127.0.0.1:9/big.json", path.join(tmp, "c2"), endless), (e: Error) => /registry larger than 64 MiB/.test(e.message) && !e.message.includes("\n"));
  assert.ok(sent <= MAX_REGISTRY_BYTES + 2 * (1 << 20), `read ${sent} bytes`);
  const announced = (async () => new Response("[]", { headers: { "content-length": String(MAX_REGISTRY_BYTES + 1) } })) as unknown as typeof fetch;
  await assert.rejects(loadRegistry("http://127.0.0.1:9/big2.json", path.join(tmp, "c2"), announced), /registry larger than 64 MiB/);
});

test("a remote registry's task without git_url (a host path) or with a local repository is refused before anything is copied", async () => {
  const http = await import("node:http");
  const { pullDataset } = await import("../../../src/tasks/datasets.js");
  const hostDir = path.join(tmp, "host-private");
  mkdirSync(hostDir, { recursive: true });
  writeFileSync(path.join(hostDir, "id_rsa"), "secret\n");
  let body = JSON.stringify([{ name: "evil", version: "1", tasks: [{ name: "t", path: hostDir }] }]);
  const server = http.createServer((_q, res) => res.end(body));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const cacheDir = path.join(tmp, "c3");
  try {
    // measured before: the host dir (secrets included) was copied into <cache>/datasets/evil@1/
    await assert.rejects(
      pullDataset("evil@1", { registry: `http://127.0.0.1:${(server.address() as { port: number }).port}/r.json`, cacheDir }),
      /task t has no git_url; a remote registry's tasks must come from git/,
    );
    assert.equal(existsSync(path.join(cacheDir, "datasets")), false);
    // a git_url naming a repository of this machine, likewise (measured before: file:// was fetched and copied)
    for (const url of ["file:///srv/private.git", "/srv/private.git", "../private.git"]) {
      body = JSON.stringify([{ name: "evil", version: "1", tasks: [{ name: "t", git_url: url, path: "t" }] }]);
      await assert.rejects(
        pullDataset("evil@1", { registry: `http://127.0.0.1:${(server.address() as { port: number }).port}/r.json`, cacheDir }),
        /task t has git_url .*, a repository on this machine/,
        url,
      );
    }
    assert.equal(existsSync(path.join(cacheDir, "datasets")), false);
  } finally {
    server.close();
  }
});

describe("image pulls", () => {
  test("registry host and credentials from auth files (docker and podman formats), first file wins", async () => {
    assert.equal(registryHost("alexgshaw/regex-log:20251031"), "docker.io");
    assert.equal(registryHost("127.0.0.1:5055/x/y:1"), "127.0.0.1:5055");
    assert.equal(registryHost("ghcr.io/a/b"), "ghcr.io");
    const podman = path.join(tmp, "auth.json");
    const docker = path.join(tmp, "config.json");
    writeFileSync(podman, JSON.stringify({ auths: { "ghcr.io": { auth: Buffer.from("alice:s3cret:x").toString("base64") } } }));
    writeFileSync(docker, JSON.stringify({ auths: { "https://index.docker.io/v1/": { auth: Buffer.from("bob:pw").toString("base64") }, "ghcr.io": { username: "carol", password: "other" } } }));
    assert.deepEqual((await lookupAuth("ghcr.io/a/b", { files: [podman, docker] })).auth, { username: "alice", password: "s3cret:x", serveraddress: "ghcr.io" });
    assert.deepEqual((await lookupAuth("python:3.13", { files: [podman, docker] })).auth, { username: "bob", password: "pw", serveraddress: "docker.io" });
    assert.equal((await lookupAuth("quay.io/a/b", { files: [podman, docker, path.join(tmp, "missing.json")] })).auth, undefined);
  });

  test("429 and 5xx are retried; not found and auth failures are not", () => {
    assert.equal(isRetryablePullError(Object.assign(new Error("x"), { statusCode: 429 })), true);
    assert.equal(isRetryablePullError(Object.assign(new Error("bad gateway"), { statusCode: 502 })), true);
    assert.equal(isRetryablePullError(new Error("received unexpected HTTP status: 503 Service Unavailable")), true);
    assert.equal(isRetryablePullError(new Error("toomanyrequests: You have reached your pull rate limit")), true);
    assert.equal(isRetryablePullError(Object.assign(new Error("manifest unknown"), { statusCode: 500, json: { message: "reading manifest: manifest unknown" } })), false);
    assert.equal(isRetryablePullError(new Error("unauthorized: authentication required")), false);
  });

  test("digests: the repo digest of the pulled repository, else the image ID", () => {
    const info = { Id: "abc", RepoDigests: ["docker.io/library/python@sha256:1", "127.0.0.1:5055/t/b@sha256:2"] };
    assert.equal(pickDigest(info, "127.0.0.1:5055/t/b:x"), "127.0.0.1:5055/t/b@sha256:2");
    assert.equal(pickDigest(info, "python:3.13"), "docker.io/library/python@sha256:1");
    assert.equal(pickDigest({ Id: "sha256:ff", RepoDigests: [] }, "localhost/tmax-task:1"), "sha256:ff");
  });

  test("GPUs: refused in one line when the host has none or too few", () => {
    assert.equal(gpuCheck(0, 0), null);
    assert.match(gpuCheck(1, 0)!, /needs 1 GPU\(s\).*has none/);
    assert.match(gpuCheck(2, 1)!, /has 1$/);
    assert.equal(gpuCheck(1, 2), null);
  });
});

describe("compose", () => {
  const ctx = (dir: string) => ({ taskDir: dir, baseDir: path.join(dir, "environment"), file: "environment/docker-compose.yaml", main: "main", implicitMain: true, vars: {} });

  test("services in dependency order, healthchecks, env, durations; Harbor's main may be implicit", async () => {
    const dir = path.join(tmp, "c1");
    write(path.join(dir, "environment", "db", "Dockerfile"), "FROM x\n");
    const text = [
      "services:",
      "  main:",
      "    environment: [\"A=1\", \"B=${B:-two}\"]",
      "    depends_on: { api: { condition: service_healthy } }",
      "  api:",
      "    image: localhost/api",
      "    depends_on: [db]",
      "    healthcheck: { test: 'curl -f http://localhost', interval: 1m30s, retries: 5 }",
      "  db:",
      "    build: { context: db }",
      "    command: run --fast",
      "",
    ].join("\n");
    const { spec, errors } = await readComposeFile(text, ctx(dir));
    assert.deepEqual(errors, []);
    assert.deepEqual(spec!.services.map((s) => s.name), ["db", "api", "main"]);
    const [db, api, main] = spec!.services;
    assert.equal(db!.build!.contextDir, path.join(dir, "environment", "db"));
    assert.deepEqual(db!.command, ["/bin/sh", "-c", "run --fast"]);
    assert.deepEqual(api!.healthcheck, { test: ["/bin/sh", "-c", "curl -f http://localhost"], intervalSec: 90, timeoutSec: 30, retries: 5, startPeriodSec: 0 });
    assert.deepEqual(main!.env, { A: "1", B: "two" });
    assert.deepEqual(main!.dependsOn, [{ service: "api", condition: "service_healthy" }]);
    const implicit = await readComposeFile("services:\n  web:\n    image: x\n", ctx(dir));
    assert.deepEqual(implicit.spec!.services.map((s) => s.name), ["main", "web"]);
  });

  test("cycles, unknown services, contexts outside the task and unsupported features are errors", async () => {
    const dir = path.join(tmp, "c2");
    mkdirSync(path.join(dir, "environment"), { recursive: true });
    assert.match((await readComposeFile("services:\n  main: { depends_on: [a] }\n  a: { image: x, depends_on: [main] }\n", ctx(dir))).errors[0]!, /depends_on cycle/);
    assert.match((await readComposeFile("services:\n  main: { depends_on: [ghost] }\n", ctx(dir))).errors.join(";"), /unknown service 'ghost'/);
    assert.match((await readComposeFile("services:\n  a: { build: ../.. }\n", ctx(dir))).errors.join(";"), /outside the task directory/);
    // a dockerfile path that climbs out would make tmax read a host file as the Dockerfile
    assert.match((await readComposeFile("services:\n  a: { build: { context: ., dockerfile: ../../../../etc/passwd } }\n", ctx(dir))).errors.join(";"), /dockerfile "..\/..\/..\/..\/etc\/passwd" is outside the task directory/);
    const bad = await readComposeFile("services:\n  a: { image: x, cap_add: [NET_ADMIN], volumes: ['data:/d'] }\nvolumes: { data: {} }\nsecrets: {}\n", ctx(dir));
    assert.equal(bad.errors[0], "unsupported compose feature(s): secrets, volumes (named), services.a.cap_add, services.a.volumes");
    assert.equal(substitute("${A}-${B:-b}-$$-$C", { A: "a", C: "c" }), "a-b-$-c");
    assert.equal(durationSec("500ms", 1), 0.5);
  });
});

describe("multi-step tasks", () => {
  test("[[steps]] load with per-step instruction, merged tests, timeouts and min_reward", async () => {
    const dir = path.join(tmp, "steps-task");
    write(path.join(dir, "task.toml"), 'version = "1.0"\nmulti_step_reward_strategy = "final"\n[agent]\ntimeout_sec = 100\n[verifier]\ntimeout_sec = 50\n[[steps]]\nname = "a"\nmin_reward = { reward = 1, style = 0.5 }\n[steps.agent]\ntimeout_sec = 7\n[[steps]]\nname = "b"\n');
    write(path.join(dir, "environment", "Dockerfile"), "FROM x\n");
    write(path.join(dir, "tests", "test.sh"), "shared\n");
    write(path.join(dir, "tests", "helper.py"), "shared helper\n");
    write(path.join(dir, "steps", "a", "instruction.md"), "do a\n");
    write(path.join(dir, "steps", "a", "tests", "test.sh"), "step a\n");
    write(path.join(dir, "steps", "b", "instruction.md"), "do b\n");
    const task = await loadTask(dir);
    assert.equal(task.rewardStrategy, "final");
    const [a, b] = task.steps!;
    assert.equal(a!.instruction, "do a\n");
    assert.equal(a!.agentTimeoutSec, 7);
    assert.equal(a!.verifierTimeoutSec, 50);
    assert.deepEqual(a!.minReward, { reward: 1, style: 0.5 });
    assert.equal(b!.agentTimeoutSec, 100);
    const { readFileSync } = await import("node:fs");
    assert.equal(readFileSync(path.join(a!.testsDir, "test.sh"), "utf8"), "step a\n");
    assert.equal(readFileSync(path.join(a!.testsDir, "helper.py"), "utf8"), "shared helper\n");
    assert.equal(readFileSync(path.join(b!.testsDir, "test.sh"), "utf8"), "shared\n");
  });

  test("a step without instruction, or per-step features tmax does not run, is an error naming it", async () => {
    const dir = path.join(tmp, "steps-bad");
    write(path.join(dir, "task.toml"), '[[steps]]\nname = "a"\n[steps.healthcheck]\ncommand = "true"\n[[steps]]\nname = "b"\n');
    write(path.join(dir, "environment", "Dockerfile"), "FROM x\n");
    write(path.join(dir, "steps", "a", "instruction.md"), "a\n");
    write(path.join(dir, "steps", "a", "tests", "test.sh"), "a\n");
    await assert.rejects(loadTask(dir), (e: Error) => /steps\.0\.healthcheck.*not supported/.test(e.message) && /steps\/b\/instruction\.md: missing/.test(e.message));
  });

  test("rewards: per-key mean over steps with results (missing keys 0), or the final step's; min_reward gates", () => {
    assert.deepEqual(aggregateStepRewards([{ reward: 1, x: 1 }, null, { reward: 0 }], "mean"), { reward: 0.5, x: 0.5 });
    assert.deepEqual(aggregateStepRewards([{ reward: 1 }, { reward: 0.25 }], "final"), { reward: 0.25 });
    assert.equal(aggregateStepRewards([null], "mean"), null);
    assert.equal(meetsMinReward({ reward: 0.9 }, 1), false);
    assert.equal(meetsMinReward({ reward: 1, style: 0.4 }, { reward: 1 }), true);
    assert.equal(meetsMinReward({ reward: 1 }, { style: 0 }), false); // a missing gated key is -inf
    assert.equal(meetsMinReward(null, undefined), true);
  });
});
