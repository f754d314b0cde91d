// Real task sources against local stand-ins: a registry in Harbor's format and a bare git repo on file:// paths,
// a container registry (Debian's docker-registry) on 127.0.0.1:5055 holding an image pushed here, multi-container
// (compose) and multi-step ([[steps]]) tasks. Everything this file creates carries its own job labels and is
// checked gone afterwards (containers and networks).
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ENGINE_SKIP, ROOT, TB_BASE_IMAGE } from "../../support/env.js";

const CLI = path.join(ROOT, "src/cli/main.ts");
const PORT = 5055; // registries.conf.d/50-tmax-test-registry.conf (scripts/setup-sandbox.sh) trusts this one
const REG = `127.0.0.1:${PORT}`;
const RUN = Math.random().toString(36).slice(2, 8);
const PUSHED = `${REG}/tmax-test/tb-base:${RUN}`;
const registryBin = spawnSync("sh", ["-c", "command -v docker-registry"], { encoding: "utf8" }).stdout.trim();
const SKIP = ENGINE_SKIP || (registryBin ? false : "skipped: docker-registry not installed (run `npm run setup`)");
if (SKIP && !ENGINE_SKIP) console.log(`# ${SKIP}`);

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-sources-"));
const cache = path.join(tmp, "cache");
let registryProc: ChildProcess | undefined;
// Our own podman API service: it reads registries.conf.d as it is now (the shared service may predate the trust
// entry setup-sandbox.sh writes for 127.0.0.1:5055). Same storage, so images are shared with the CLI.
let engineProc: ChildProcess | undefined;
const SOCKET = path.join(tmp, "podman.sock");
let commit = "";
const jobs: string[] = [];

function sh(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

function tmax(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", TMAX_CACHE_DIR: cache, DOCKER_HOST: `unix://${SOCKET}`, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

function write(file: string, text: string, mode = 0o644) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text, { mode });
}

/** The dataset: four tasks in tasks/ of a git repo. */
function writeTasks(root: string) {
  const t = (name: string) => path.join(root, "tasks", name);
  const oracleTest = (check: string) => `#!/bin/bash\nif ${check}; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n`;

  // 1. prebuilt image from the local registry; its Dockerfile cannot build, so a pass proves the pull was used
  write(path.join(t("prebuilt"), "task.toml"), `version = "1.0"\n[environment]\ndocker_image = "${PUSHED}"\nallow_internet = false\n[verifier]\ntimeout_sec = 60\n`);
  write(path.join(t("prebuilt"), "instruction.md"), "Write ok to /tmp/out.\n");
  write(path.join(t("prebuilt"), "environment", "Dockerfile"), "FROM localhost/tb-base:bookworm\nRUN exit 3\n");
  write(path.join(t("prebuilt"), "solution", "solve.sh"), "#!/bin/bash\necho ok > /tmp/out\n");
  write(path.join(t("prebuilt"), "tests", "test.sh"), oracleTest('[ "$(cat /tmp/out)" = ok ] && python3 -c "import pytest"'));

  // 2. a docker_image nobody has: falls back to the Dockerfile with a note
  write(path.join(t("broken-image"), "task.toml"), `version = "1.0"\n[environment]\ndocker_image = "${REG}/tmax-test/missing-${RUN}:1"\nallow_internet = false\n`);
  write(path.join(t("broken-image"), "instruction.md"), "Write ok to /tmp/out.\n");
  write(path.join(t("broken-image"), "environment", "Dockerfile"), `FROM ${TB_BASE_IMAGE}\nRUN echo built > /built-from-dockerfile\n`);
  write(path.join(t("broken-image"), "solution", "solve.sh"), "#!/bin/bash\necho ok > /tmp/out\n");
  write(path.join(t("broken-image"), "tests", "test.sh"), oracleTest('[ "$(cat /tmp/out)" = ok ] && [ -f /built-from-dockerfile ]'));

  // 3. compose: the verifier needs a sidecar HTTP server, reachable by its service name on a private network
  write(path.join(t("compose-sidecar"), "task.toml"), `version = "1.0"\n[environment]\nallow_internet = false\n[verifier]\ntimeout_sec = 60\n`);
  write(path.join(t("compose-sidecar"), "instruction.md"), "Fetch http://web:8000/token and write it to /app/token.\n");
  write(path.join(t("compose-sidecar"), "environment", "Dockerfile"), `FROM ${TB_BASE_IMAGE}\nWORKDIR /app\n`);
  write(
    path.join(t("compose-sidecar"), "environment", "docker-compose.yaml"),
    [
      "services:",
      "  main:",
      "    depends_on:",
      "      web:",
      "        condition: service_healthy",
      "  web:",
      `    image: ${TB_BASE_IMAGE}`,
      `    command: ["sh", "-c", "mkdir -p /srv && echo sidecar-${RUN} > /srv/token && cd /srv && exec python3 -m http.server 8000"]`,
      "    healthcheck:",
      `      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/token')"]`,
      "      interval: 1s",
      "      retries: 20",
      "",
    ].join("\n"),
  );
  write(path.join(t("compose-sidecar"), "solution", "solve.sh"), "#!/bin/bash\npython3 -c \"import urllib.request; print(urllib.request.urlopen('http://web:8000/token').read().decode().strip())\" > /app/token\n");
  write(path.join(t("compose-sidecar"), "tests", "test.sh"), oracleTest(`[ "$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://web:8000/token').read().decode().strip())")" = "$(cat /app/token)" ] && [ "$(cat /app/token)" = sidecar-${RUN} ]`));

  // 4. [[steps]]: two steps, per-step instruction/tests/solution, shared helper in tests/, min_reward gate on step one
  write(
    path.join(t("two-steps"), "task.toml"),
    `version = "1.0"\nmulti_step_reward_strategy = "mean"\n[environment]\nallow_internet = false\n[verifier]\ntimeout_sec = 60\n[[steps]]\nname = "one"\nmin_reward = 1.0\n[[steps]]\nname = "two"\n[steps.verifier]\ntimeout_sec = 30\n`,
  );
  write(path.join(t("two-steps"), "environment", "Dockerfile"), `FROM ${TB_BASE_IMAGE}\nWORKDIR /app\n`);
  write(path.join(t("two-steps"), "tests", "check.sh"), '#!/bin/bash\n[ "$(cat "$1" 2>/dev/null)" = "$2" ]\n');
  write(path.join(t("two-steps"), "steps", "one", "instruction.md"), "Write one to /app/one.\n");
  write(path.join(t("two-steps"), "steps", "one", "solution", "solve.sh"), "#!/bin/bash\necho one > /app/one\n");
  write(path.join(t("two-steps"), "steps", "one", "tests", "test.sh"), oracleTest("bash /tests/check.sh /app/one one"));
  write(path.join(t("two-steps"), "steps", "two", "instruction.md"), "Write two to /app/two (keep /app/one).\n");
  write(path.join(t("two-steps"), "steps", "two", "solution", "solve.sh"), "#!/bin/bash\necho two > /app/two\n");
  write(path.join(t("two-steps"), "steps", "two", "tests", "test.sh"), oracleTest("bash /tests/check.sh /app/one one && bash /tests/check.sh /app/two two"));
}

function registryJson(url: string, sha: string) {
  const tasks = ["prebuilt", "broken-image", "compose-sidecar", "two-steps"].map((name) => ({ name: `tmax-test/${name}`, git_url: url, git_commit_id: sha, path: `tasks/${name}` }));
  return JSON.stringify([{ name: "tmax-test", version: "1.0", description: "local stand-in dataset", tasks }], null, 2);
}

async function waitFor(url: string, ms: number) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > end) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** This file's containers or networks, by job dir (the io.tmax.job label is a UUID). */
const mine = (kind: "ps" | "network") =>
  jobs
    .map((j) => sh("podman", [...(kind === "ps" ? ["ps", "-aq"] : ["network", "ls", "-q"]), "--filter", `label=io.tmax.job-dir=${path.join(tmp, j)}`]))
    .join("")
    .trim();

describe("task sources (registry dataset, pulled images, compose, steps)", { skip: SKIP }, () => {
  const registryFile = path.join(tmp, "registry.json");

  before(async () => {
    // container registry stand-in, 127.0.0.1 only
    const storage = path.join(tmp, "registry-data");
    write(path.join(tmp, "registry.yml"), `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\nhttp:\n  addr: ${REG}\n`);
    registryProc = spawn(registryBin, ["serve", path.join(tmp, "registry.yml")], { stdio: "ignore" });
    engineProc = spawn("podman", ["system", "service", "--time=0", `unix://${SOCKET}`], { stdio: "ignore" });
    await waitFor(`http://${REG}/v2/`, 20_000);
    for (let i = 0; i < 100 && !existsSync(SOCKET); i++) await new Promise((r) => setTimeout(r, 100));
    sh("podman", ["tag", TB_BASE_IMAGE, PUSHED]);
    sh("podman", ["push", "-q", "--tls-verify=false", PUSHED]);
    sh("podman", ["rmi", PUSHED]); // only the tag: the pull below must fetch the manifest from the registry

    // git repo (bare, file://) with the dataset at a pinned commit, then a later commit that must not be used
    const work = path.join(tmp, "work");
    const bare = path.join(tmp, "repo.git");
    writeTasks(work);
    sh("git", ["init", "-q", "-b", "main", work]);
    sh("git", ["-C", work, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"]);
    sh("git", ["-C", work, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "dataset"]);
    commit = sh("git", ["-C", work, "rev-parse", "HEAD"]);
    write(path.join(work, "tasks", "prebuilt", "instruction.md"), "CHANGED LATER\n");
    write(path.join(work, "unrelated", "big.txt"), "x".repeat(1000));
    sh("git", ["-C", work, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"]);
    sh("git", ["-C", work, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "later"]);
    sh("git", ["clone", "-q", "--bare", work, bare]);
    writeFileSync(registryFile, registryJson(`file://${bare}`, commit));
  });

  after(async () => {
    registryProc?.kill("SIGTERM");
    engineProc?.kill("SIGTERM");
    spawnSync("podman", ["rmi", PUSHED], { encoding: "utf8" });
    const left = mine("ps").split("\n").filter(Boolean);
    if (left.length) spawnSync("podman", ["rm", "-f", ...left], { encoding: "utf8" });
    rmSync(tmp, { recursive: true, force: true });
  });

  test("datasets list / pull / path through a Harbor-format registry file", async () => {
    const list = await tmax(["datasets", "list", "--registry", registryFile]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^tmax-test@1\.0\t4 tasks/m);
    const pulled = await tmax(["datasets", "pull", "tmax-test@1.0", "--registry", registryFile]);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, new RegExp(`commit ${commit}`));
    const dir = (await tmax(["datasets", "path", "tmax-test@1.0", "--registry", registryFile])).stdout.trim();
    assert.ok(dir.startsWith(cache), dir);
    // the pinned commit's content, not the later one; sparse: the unrelated path of the later commit is absent
    assert.equal(readFileSync(path.join(dir, "prebuilt", "instruction.md"), "utf8"), "Write ok to /tmp/out.\n");
    const manifest = JSON.parse(readFileSync(path.join(dir, ".tmax-dataset.json"), "utf8"));
    assert.equal(manifest.commit, commit);
    const unknown = await tmax(["datasets", "pull", "tmax-test@9.9", "--registry", registryFile]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /has no version '9\.9'.*versions: 1\.0/);
  });

  test("eval -d name@version: pulls the prebuilt image (digest recorded), falls back to the Dockerfile with a note, runs compose and [[steps]] tasks; second run offline from the cache", async () => {
    const jobDir = path.join(tmp, "job1");
    jobs.push("job1");
    const r = await tmax(["eval", "-d", "tmax-test@1.0", "--registry", registryFile, "--agent", "oracle", "-n", "2", "--job-dir", jobDir, "--pull", "missing"]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /mean reward 1\.000 over 4 trials/, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /note: .*broken-image.*cannot pull .*missing-.*building the task's Dockerfile instead/);

    const result = (name: string) => JSON.parse(readFileSync(path.join(jobDir, `${name}__0`, "result.json"), "utf8"));
    const prebuilt = result("prebuilt");
    assert.equal(prebuilt.image.name, PUSHED);
    assert.equal(prebuilt.image.source, "pulled");
    assert.match(prebuilt.image.digest, new RegExp(`^${REG.replace(/\./g, "\\.")}/tmax-test/tb-base@sha256:[0-9a-f]{64}$`));
    assert.deepEqual(prebuilt.dataset, { name: "tmax-test", version: "1.0", commit });
    assert.equal(prebuilt.source, "tmax-test@1.0");
    const broken = result("broken-image");
    assert.equal(broken.image.source, "built");
    assert.match(broken.image.note, /building the task's Dockerfile instead/);
    assert.equal(result("compose-sidecar").reward, 1);
    const steps = result("two-steps");
    assert.deepEqual(steps.step_results.map((s: { name: string; reward: number }) => [s.name, s.reward]), [["one", 1], ["two", 1]]);
    assert.deepEqual(steps.verifier_result, { rewards: { reward: 1 } });
    const jobConfig = JSON.parse(readFileSync(path.join(jobDir, "config.json"), "utf8"));
    assert.deepEqual(jobConfig.dataset_source, { name: "tmax-test", version: "1.0", commit, registry: registryFile });

    // offline: the git repo is gone, the cache still serves the dataset
    const bare = path.join(tmp, "repo.git");
    const moved = `${bare}.away`;
    sh("mv", [bare, moved]);
    try {
      const jobDir2 = path.join(tmp, "job2");
      jobs.push("job2");
      const r2 = await tmax(["eval", "-d", "tmax-test@1.0", "--registry", registryFile, "--agent", "oracle", "--include", "prebuilt", "--job-dir", jobDir2]);
      assert.equal(r2.code, 0, r2.stderr + r2.stdout);
      assert.match(r2.stderr, /dataset tmax-test@1\.0 .*cached/);
      assert.match(r2.stdout, /mean reward 1\.000 over 1 trials/);
      const again = JSON.parse(readFileSync(path.join(jobDir2, "prebuilt__0", "result.json"), "utf8"));
      assert.equal(again.image.source, "local"); // already pulled, TMAX_PULL=never in tests: used as is
      assert.equal(again.image.digest, prebuilt.image.digest);
    } finally {
      sh("mv", [moved, bare]);
    }
    assert.equal(mine("ps"), "", "containers left");
    assert.equal(mine("network"), "", "networks left");
  });

  test("a step below min_reward ends the trial; the nop agent scores 0 and step two never runs", async () => {
    const jobDir = path.join(tmp, "job3");
    jobs.push("job3");
    const r = await tmax(["eval", "-d", "tmax-test@1.0", "--registry", registryFile, "--agent", "nop", "--include", "two-steps", "--job-dir", jobDir]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = JSON.parse(readFileSync(path.join(jobDir, "two-steps__0", "result.json"), "utf8"));
    assert.deepEqual(res.step_results.map((s: { name: string }) => s.name), ["one"]);
    assert.equal(res.reward, 0);
    assert.equal(mine("ps"), "");
    assert.equal(mine("network"), "");
  });

  test("unsupported compose features are refused in one line naming them", async () => {
    const dir = path.join(tmp, "bad-compose");
    write(path.join(dir, "task.toml"), 'version = "1.0"\n');
    write(path.join(dir, "instruction.md"), "x\n");
    write(path.join(dir, "tests", "test.sh"), "echo 1 > /logs/verifier/reward.txt\n");
    write(path.join(dir, "environment", "Dockerfile"), `FROM ${TB_BASE_IMAGE}\n`);
    write(path.join(dir, "environment", "docker-compose.yaml"), "services:\n  main:\n    privileged: true\n  db:\n    image: x\n    ports: ['5432:5432']\n    volumes: ['/:/host']\n");
    const r = await tmax(["tasks", "check", dir]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /unsupported compose feature\(s\): services\.main\.privileged, services\.db\.ports, services\.db\.volumes/);
    assert.ok(existsSync(dir));
  });
});
