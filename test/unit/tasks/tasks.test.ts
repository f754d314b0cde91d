// Task loading and validation: the shared TB2 tasks, the shipped examples, every task.toml form, TB1 conversion,
// and one test per malformed case naming the file and field it must report.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile, rename } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EXAMPLES, SHARED_SKIP, SHARED_TASKS } from "../../support/env.js";
import {
  TaskError,
  brokenTaskMessage,
  checkDataset,
  dirChecksum,
  formatProblems,
  globToRegExp,
  loadDataset,
  loadTask,
  parseSizeToMb,
  resolveEnvTemplates,
  type TaskProblem,
} from "../../../src/tasks/index.js";

const tempRoots: string[] = [];
after(async () => {
  for (const d of tempRoots) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), "tmax-tasks-test-"));
  tempRoots.push(d);
  return d;
}

const GOOD_FILES: Record<string, string> = {
  "instruction.md": "Do the thing.\n",
  "environment/Dockerfile": "FROM localhost/tmax-base:bookworm\nWORKDIR /app\n",
  "tests/test.sh": "#!/bin/bash\nmkdir -p /logs/verifier\necho 1 > /logs/verifier/reward.txt\n",
  "solution/solve.sh": "#!/bin/bash\ntrue\n",
};

/** Writes a task dir: the good files, overridden (or removed with null) by `files`. */
async function writeTask(parent: string, name: string, files: Record<string, string | null>): Promise<string> {
  const dir = path.join(parent, name);
  const all: Record<string, string | null> = { ...GOOD_FILES, ...files };
  for (const [rel, content] of Object.entries(all)) {
    if (content === null) continue;
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
  return dir;
}

async function taskWithToml(toml: string, files: Record<string, string | null> = {}): Promise<string> {
  return writeTask(await tempDir(), "t", { "task.toml": toml, ...files });
}

/** The TaskError problems of loading `dir` (fails the test when it loads). */
async function loadErrors(dir: string): Promise<TaskProblem[]> {
  try {
    await loadTask(dir);
  } catch (err) {
    assert.ok(err instanceof TaskError, `expected TaskError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail(`${dir} loaded although it is malformed`);
}

function hasProblem(problems: TaskProblem[], file: string, field?: string, text?: RegExp): boolean {
  return problems.some((p) => p.file === file && (field === undefined || p.field === field) && (!text || text.test(p.message)));
}

describe("shared TB2 tasks", () => {
  test("all four load with the values of their task.toml", { skip: SHARED_SKIP }, async () => {
    const ds = await loadDataset(SHARED_TASKS);
    assert.deepEqual(
      ds.tasks.map((t) => t.name),
      ["log-summary-date-ranges", "openssl-selfsigned-cert", "regex-log", "sqlite-db-truncate"],
    );
    assert.deepEqual(ds.broken, []);
    assert.deepEqual(ds.problems.filter((p) => p.severity === "error"), []);
    for (const t of ds.tasks) {
      assert.equal(t.format, "harbor");
      assert.equal(t.config.agentTimeoutSec, 900);
      assert.equal(t.config.verifierTimeoutSec, 900);
      assert.equal(t.config.buildTimeoutSec, 600);
      assert.equal(t.config.cpus, 1);
      assert.equal(t.config.memoryMb, 2048);
      assert.equal(t.config.storageMb, 10240);
      assert.equal(t.config.allowInternet, true);
      assert.equal(t.config.difficulty, "medium");
      assert.equal(t.config.dockerImage, `alexgshaw/${t.name}:20251031`);
      assert.match(t.checksum, /^[0-9a-f]{64}$/);
      assert.ok(t.instruction.length > 50);
      assert.equal(t.environment.contextDir, path.join(SHARED_TASKS, t.name, "environment"));
      assert.equal(t.environment.dockerfile, "Dockerfile");
      assert.equal(t.testsDir, path.join(SHARED_TASKS, t.name, "tests"));
      assert.equal(t.solutionDir, path.join(SHARED_TASKS, t.name, "solution"));
      assert.equal((t.config.raw.metadata as Record<string, unknown>).expert_time_estimate_min !== undefined, true);
    }
    const regex = ds.tasks.find((t) => t.name === "regex-log")!;
    assert.equal(regex.config.category, "data-processing");
    assert.deepEqual(regex.config.tags, ["regex", "string-parsing", "log-analysis"]);
  });

  test("check finds no errors in them", { skip: SHARED_SKIP }, async () => {
    const problems = await checkDataset(SHARED_TASKS);
    assert.deepEqual(problems.filter((p) => p.severity === "error"), []);
  });

  test("filters by category and difficulty", { skip: SHARED_SKIP }, async () => {
    const ds = await loadDataset(SHARED_TASKS, { category: "data-processing" });
    assert.deepEqual(ds.tasks.map((t) => t.name), ["log-summary-date-ranges", "regex-log"]);
    const none = await loadDataset(SHARED_TASKS, { difficulty: "hard" });
    assert.equal(none.tasks.length, 0);
  });
});

describe("example tasks", () => {
  test("all three load, in both task.toml styles", async () => {
    const ds = await loadDataset(EXAMPLES);
    assert.deepEqual(ds.tasks.map((t) => t.name), ["fix-script", "hello-file", "word-count"]);
    assert.deepEqual(ds.broken, []);
    const [fix, hello, words] = ds.tasks;
    assert.equal(hello!.config.networkMode, "no-network");
    assert.equal(hello!.config.allowInternet, false);
    assert.equal(hello!.config.memoryMb, 512);
    assert.equal(hello!.config.storageMb, 2048);
    assert.equal(hello!.config.workdir, "/app");
    assert.equal(hello!.config.agentTimeoutSec, 120);
    assert.equal(words!.config.raw.version, "1.0");
    assert.equal(words!.config.memoryMb, 512);
    assert.equal(words!.config.storageMb, 2048);
    assert.equal(words!.config.networkMode, "no-network");
    assert.equal(fix!.config.category, "debugging");
    for (const t of ds.tasks) {
      assert.ok(t.solutionDir, `${t.name} has a solution`);
      assert.ok(t.config.agentTimeoutSec <= 300 && t.config.verifierTimeoutSec <= 60, `${t.name} has short timeouts`);
      const dockerfile = await readFile(path.join(t.environment.contextDir, "Dockerfile"), "utf8");
      assert.match(dockerfile, /^FROM localhost\/tmax-base:bookworm$/m);
      assert.match(dockerfile, /^WORKDIR \/app$/m);
    }
  });

  test("check reports nothing, not even warnings", async () => {
    assert.equal(formatProblems(await checkDataset(EXAMPLES)), "");
  });

  test("a task dir on its own is a dataset of one; include matches names and globs", async () => {
    const one = await loadDataset(path.join(EXAMPLES, "word-count"));
    assert.deepEqual(one.tasks.map((t) => t.name), ["word-count"]);
    assert.deepEqual((await loadDataset(EXAMPLES, { include: ["*-file", "word-count"] })).tasks.map((t) => t.name), ["hello-file", "word-count"]);
    assert.deepEqual((await loadDataset(EXAMPLES, { exclude: ["h*"] })).tasks.map((t) => t.name), ["fix-script", "word-count"]);
    assert.deepEqual((await loadDataset(EXAMPLES, { category: ["Debugging", "file-operations"] })).tasks.map((t) => t.name), ["fix-script", "hello-file"]);
    const none = await loadDataset(EXAMPLES, { include: ["no-such-task"] });
    assert.equal(none.tasks.length, 0);
    assert.ok(hasProblem(none.problems, "(filter)", "include", /matched no task/));
  });
});

describe("task.toml forms", () => {
  test("defaults when sections are absent: agent, verifier and build 600 s, public network", async () => {
    const t = await loadTask(await taskWithToml('version = "1.0"\n'));
    assert.equal(t.name, "t");
    assert.equal(t.config.agentTimeoutSec, 600);
    assert.equal(t.config.verifierTimeoutSec, 600);
    assert.equal(t.config.buildTimeoutSec, 600);
    assert.equal(t.config.allowInternet, true);
    assert.equal(t.config.networkMode, "public");
    assert.equal(t.config.cpus, undefined);
    assert.equal(t.config.memoryMb, undefined);
    assert.deepEqual(t.config.env, {});
    assert.deepEqual(t.config.tags, []);
  });

  test("no task.toml at all: defaults with a warning", async () => {
    const dir = await writeTask(await tempDir(), "bare", {});
    const t = await loadTask(dir);
    assert.equal(t.config.agentTimeoutSec, 600);
    const ds = await loadDataset(dir);
    assert.ok(hasProblem(ds.problems, "task.toml", undefined, /missing/));
  });

  test("legacy version 1.0 with [metadata] and size strings", async () => {
    const t = await loadTask(
      await taskWithToml(`version = "1.0"
[metadata]
author_name = "A"
difficulty = "hard"
category = "security"
tags = ["x", "y"]
[verifier]
timeout_sec = 120.0
[agent]
timeout_sec = 300
[environment]
build_timeout_sec = 900.0
docker_image = "example/image:1"
cpus = 2
memory = "1.5G"
storage = "512M"
`),
    );
    assert.equal(t.config.verifierTimeoutSec, 120);
    assert.equal(t.config.agentTimeoutSec, 300);
    assert.equal(t.config.buildTimeoutSec, 900);
    assert.equal(t.config.dockerImage, "example/image:1");
    assert.equal(t.config.cpus, 2);
    assert.equal(t.config.memoryMb, 1536);
    assert.equal(t.config.storageMb, 512);
    assert.equal(t.config.difficulty, "hard");
    assert.equal(t.config.category, "security");
    assert.deepEqual(t.config.tags, ["x", "y"]);
  });

  test("newer schema_version with [task], *_mb, gpus, network, workdir, env tables", async () => {
    const t = await loadTask(
      await taskWithToml(`schema_version = "1.1"
[task]
name = "acme/widget"
description = "Build a widget"
authors = [{ name = "Ann", email = "ann@example.com" }]
keywords = ["widgets"]
[metadata]
tags = ["build"]
[verifier]
env = { MODE = "strict", LEVEL = 3 }
[solution]
env = { HINT = "yes" }
[environment]
memory_mb = 4096
storage_mb = 20480
gpus = 0
allow_internet = false
workdir = "/srv"
env = { API_URL = "\${API_URL:-http://localhost}", DEBUG = true }
`),
    );
    assert.equal(t.name, "acme/widget");
    assert.equal(t.config.description, "Build a widget");
    assert.deepEqual(t.config.tags, ["build", "widgets"]);
    assert.equal(t.config.memoryMb, 4096);
    assert.equal(t.config.storageMb, 20480);
    assert.equal(t.config.gpus, 0);
    assert.equal(t.config.allowInternet, false);
    assert.equal(t.config.networkMode, "no-network");
    assert.equal(t.config.workdir, "/srv");
    assert.deepEqual(t.config.env, { API_URL: "${API_URL:-http://localhost}", DEBUG: "true" });
    assert.deepEqual(t.config.verifierEnv, { MODE: "strict", LEVEL: "3" });
    assert.deepEqual(t.config.solutionEnv, { HINT: "yes" });
    assert.deepEqual(resolveEnvTemplates(t.config.env, {}), { API_URL: "http://localhost", DEBUG: "true" });
    assert.deepEqual(resolveEnvTemplates(t.config.env, { API_URL: "http://h:1" }), { API_URL: "http://h:1", DEBUG: "true" });
  });

  test("network_mode values: public, no-network, allowlist (with hosts)", async () => {
    const pub = await loadTask(await taskWithToml('[environment]\nnetwork_mode = "public"\n'));
    assert.equal(pub.config.allowInternet, true);
    const allow = await loadTask(await taskWithToml('[environment]\nnetwork_mode = "allowlist"\nallowed_hosts = ["pypi.org"]\n'));
    assert.equal(allow.config.networkMode, "allowlist");
    assert.equal(allow.config.allowInternet, false);
    assert.deepEqual(allow.config.allowedHosts, ["pypi.org"]);
  });

  test("unknown keys are kept in raw and are not fatal", async () => {
    const t = await loadTask(
      await taskWithToml(`version = "1.0"
future_key = 1
[verifier]
timeout_sec = 10
user = "tester"
[brand_new_section]
x = [1, 2]
`),
    );
    assert.equal(t.config.raw.future_key, 1);
    assert.deepEqual(t.config.raw.brand_new_section, { x: [1, 2] });
    assert.equal((t.config.raw.verifier as Record<string, unknown>).user, "tester");
    const problems = await checkDataset(t.dir);
    assert.deepEqual(problems.filter((p) => p.severity === "error"), []);
    assert.ok(hasProblem(problems, "task.toml", "brand_new_section", /unknown key/));
  });

  test("docker_image makes environment/Dockerfile optional", async () => {
    const t = await loadTask(await taskWithToml('[environment]\ndocker_image = "example/x:1"\n', { "environment/Dockerfile": null }));
    assert.equal(t.config.dockerImage, "example/x:1");
  });

  test("no solution/ loads, check warns", async () => {
    const t = await loadTask(await taskWithToml("", { "solution/solve.sh": null }));
    assert.equal(t.solutionDir, undefined);
    assert.ok(hasProblem(await checkDataset(t.dir), "solution/solve.sh", undefined, /no solution/));
  });
});

describe("malformed tasks name the file and field", () => {
  test("bad TOML → task.toml with the parser's line and column", async () => {
    const problems = await loadErrors(await taskWithToml('version = "1.0"\n[agent]\ntimeout_sec = = 3\n'));
    const p = problems.find((x) => x.file === "task.toml");
    assert.ok(p, formatProblems(problems));
    assert.match(p.message, /line 3, column \d+/);
  });

  test("missing instruction.md", async () => {
    assert.ok(hasProblem(await loadErrors(await taskWithToml("", { "instruction.md": null })), "instruction.md", undefined, /missing/));
  });

  test("empty instruction.md", async () => {
    assert.ok(hasProblem(await loadErrors(await taskWithToml("", { "instruction.md": " \n" })), "instruction.md", undefined, /empty/));
  });

  test("missing tests/test.sh", async () => {
    assert.ok(hasProblem(await loadErrors(await taskWithToml("", { "tests/test.sh": null })), "tests/test.sh"));
  });

  test("missing environment/Dockerfile without docker_image", async () => {
    assert.ok(hasProblem(await loadErrors(await taskWithToml("", { "environment/Dockerfile": null })), "environment/Dockerfile", undefined, /docker_image/));
  });

  test('timeout_sec = "abc" → [verifier.timeout_sec]', async () => {
    const problems = await loadErrors(await taskWithToml('[verifier]\ntimeout_sec = "abc"\n'));
    assert.ok(hasProblem(problems, "task.toml", "verifier.timeout_sec", /expected a number, got "abc"/), formatProblems(problems));
  });

  test("negative agent timeout, bad memory size, bad network_mode, wrong cpus type: all reported at once", async () => {
    const problems = await loadErrors(
      await taskWithToml('[agent]\ntimeout_sec = -5\n[environment]\nmemory = "lots"\nnetwork_mode = "sometimes"\ncpus = "two"\n'),
    );
    assert.ok(hasProblem(problems, "task.toml", "agent.timeout_sec", /greater than 0/), formatProblems(problems));
    assert.ok(hasProblem(problems, "task.toml", "environment.network_mode", /one of "public", "no-network", "allowlist"/));
    assert.ok(hasProblem(problems, "task.toml", "environment.cpus", /expected a number/));
  });

  test('memory = "lots" → [environment.memory]', async () => {
    const problems = await loadErrors(await taskWithToml('[environment]\nmemory = "lots"\n'));
    assert.ok(hasProblem(problems, "task.toml", "environment.memory", /size like "2G"/), formatProblems(problems));
  });

  test("allowed_hosts with network_mode public", async () => {
    const problems = await loadErrors(await taskWithToml('[environment]\nnetwork_mode = "public"\nallowed_hosts = ["a.org"]\n'));
    assert.ok(hasProblem(problems, "task.toml", "environment.allowed_hosts"));
  });

  test("[task] name that cannot be a directory name", async () => {
    const problems = await loadErrors(await taskWithToml('[task]\nname = "../evil"\n'));
    assert.ok(hasProblem(problems, "task.toml", "task.name"));
  });

  test("several missing files are all listed, and the error message is one line", async () => {
    const dir = await taskWithToml("", { "instruction.md": null, "tests/test.sh": null });
    const err = await loadTask(dir).then(
      () => assert.fail("loaded"),
      (e: unknown) => e as TaskError,
    );
    assert.equal(err.problems.length, 2);
    assert.doesNotMatch(err.message, /\n/);
    assert.match(err.message, /t: instruction\.md: missing/);
  });

  test("metadata of the wrong type only warns", async () => {
    const dir = await taskWithToml("[metadata]\ntags = \"x\"\ndifficulty = 3\n");
    const t = await loadTask(dir);
    assert.deepEqual(t.config.tags, []);
    const ds = await loadDataset(dir);
    assert.ok(hasProblem(ds.problems, "task.toml", "metadata.tags"));
    assert.ok(ds.problems.every((p) => p.severity === "warning"));
  });

  test("not a task dir → one-line Error", async () => {
    const empty = await tempDir();
    await assert.rejects(loadDataset(empty), (e: Error) => /no task found/.test(e.message) && !e.message.includes("\n"));
    await assert.rejects(loadTask(empty), /no task found/);
    await assert.rejects(loadDataset(path.join(empty, "nope")), /not a directory/);
  });
});

describe("datasets with broken tasks", () => {
  test("broken tasks are reported, not thrown; the rest load, sorted by name", async () => {
    const root = await tempDir();
    await writeTask(root, "zeta", { "task.toml": "" });
    await writeTask(root, "alpha", { "task.toml": "[metadata]\ncategory = \"c\"\n" });
    await writeTask(root, "broken", { "task.toml": '[verifier]\ntimeout_sec = "abc"\n', "tests/test.sh": null });
    await mkdir(path.join(root, "not-a-task"), { recursive: true });
    await writeFile(path.join(root, "not-a-task", "notes.txt"), "hi");
    await mkdir(path.join(root, "half-task", "tests"), { recursive: true });
    await writeFile(path.join(root, "half-task", "tests", "test.sh"), "echo");

    const ds = await loadDataset(root);
    assert.deepEqual(ds.tasks.map((t) => t.name), ["alpha", "zeta"]);
    assert.deepEqual(ds.broken.map((b) => b.name), ["broken", "half-task"]);
    const broken = ds.broken[0]!;
    assert.equal(broken.dir, path.join(root, "broken"));
    assert.ok(hasProblem(broken.problems, "task.toml", "verifier.timeout_sec"));
    assert.ok(hasProblem(broken.problems, "tests/test.sh"));
    assert.match(brokenTaskMessage(broken), /^broken: task\.toml \[verifier\.timeout_sec\]: .*; broken: tests\/test\.sh: missing/);
    assert.ok(hasProblem(ds.broken[1]!.problems, "instruction.md"));
    // The runner keys failed trials by the error problems' task names.
    assert.deepEqual([...new Set(ds.problems.filter((p) => p.severity === "error").map((p) => p.task))].sort(), ["broken", "half-task"]);
    // A broken task whose category is unknown still passes a category filter, so it is not silently dropped.
    assert.deepEqual((await loadDataset(root, { category: "c" })).broken.map((b) => b.name), ["broken", "half-task"]);
  });

  test("two dirs with the same [task] name: the second is broken", async () => {
    const root = await tempDir();
    await writeTask(root, "a", { "task.toml": '[task]\nname = "org/same"\n' });
    await writeTask(root, "b", { "task.toml": '[task]\nname = "org/same"\n' });
    const ds = await loadDataset(root);
    assert.deepEqual(ds.tasks.map((t) => t.dir), [path.join(root, "a")]);
    assert.equal(ds.broken.length, 1);
    assert.equal(ds.broken[0]!.dir, path.join(root, "b"));
    assert.match(ds.broken[0]!.problems[0]!.message, /duplicate task name/);
    // include matches the part after org/ as well as the full name
    assert.equal((await loadDataset(root, { include: ["same"] })).tasks.length, 1);
  });
});

describe("checksum", () => {
  test("stable, and sensitive to content and names but not to creation order", async () => {
    const a = await writeTask(await tempDir(), "x", { "task.toml": "", "tests/data.txt": "1" });
    const b = await tempDir();
    // same files written in the opposite order
    for (const rel of ["tests/data.txt", "task.toml", ...Object.keys(GOOD_FILES).reverse()]) {
      const src = path.join(a, rel);
      await mkdir(path.dirname(path.join(b, rel)), { recursive: true });
      await writeFile(path.join(b, rel), await readFile(src));
    }
    const sumA = await dirChecksum(a);
    assert.equal(sumA, await dirChecksum(a));
    assert.equal(sumA, await dirChecksum(b));
    assert.equal((await loadTask(a)).checksum, sumA);
    await writeFile(path.join(b, "tests/data.txt"), "2");
    const changed = await dirChecksum(b);
    assert.notEqual(changed, sumA);
    await rename(path.join(b, "tests/data.txt"), path.join(b, "tests/data2.txt"));
    assert.notEqual(await dirChecksum(b), changed);
  });
});

describe("hostile sizes and file types", () => {
  test("a huge instruction.md / task.toml / task.yaml makes that task broken, naming the file; the rest of the dataset loads", async () => {
    // measured before the cap: a 700 MB instruction.md (a few KB in a git pack) failed the whole dataset load
    // with "RangeError: Invalid string length"
    const root = await tempDir();
    await writeTask(root, "fine", {});
    const { truncate } = await import("node:fs/promises");
    for (const [name, file] of [["big-instruction", "instruction.md"], ["big-toml", "task.toml"]] as const) {
      const dir = await writeTask(root, name, { "task.toml": "" });
      await truncate(path.join(dir, file), 700 * 1024 * 1024); // sparse: no disk used
    }
    const ds = await loadDataset(root);
    assert.deepEqual(ds.tasks.map((t) => t.name), ["fine"]);
    assert.deepEqual(ds.broken.map((b) => b.name), ["big-instruction", "big-toml"]);
    const msg = brokenTaskMessage(ds.broken[0]!);
    assert.match(msg, /^big-instruction: instruction\.md: 734003200 bytes, more than the 16 MiB a task's text file may have$/);
    assert.match(brokenTaskMessage(ds.broken[1]!), /^big-toml: task\.toml: 734003200 bytes/);
    await assert.rejects(loadTask(path.join(root, "big-instruction")), (e: Error) => e instanceof TaskError && /instruction\.md: 734003200 bytes/.test(e.message));
  });

  test("a docker_image or compose image that is no image reference is a task error (it reached the engine URL and the terminal)", async () => {
    // measured before: docker_image "evil\u001b]0;t\u0007img:1" was retried as an infrastructure error, paused the
    // job, and printed the escape sequence raw in the retry lines
    const root = await tempDir();
    const dir = await writeTask(root, "img", { "task.toml": '[environment]\ndocker_image = "evil\\u001b]0;t\\u0007img:1"\n' });
    await assert.rejects(loadTask(dir), (e: Error) => e instanceof TaskError && /task\.toml \[environment\.docker_image\]: must be an image reference/.test(e.message));
    const ok = await writeTask(root, "img-ok", { "task.toml": '[environment]\ndocker_image = "ghcr.io:443/org/img_x:1.0-rc@sha256:' + "a".repeat(64) + '"\n' });
    assert.equal((await loadTask(ok)).config.dockerImage?.startsWith("ghcr.io:443/"), true);
    const compose = await writeTask(root, "img-compose", { "task.toml": "", "environment/docker-compose.yaml": 'services:\n  side:\n    image: "db --privileged"\n' });
    await assert.rejects(loadTask(compose), /services\.side\.image: "db --privileged" must be an image reference/);
  });

  test("the task checksum does not open a FIFO (it would block forever) and matches the plain-buffer format", async () => {
    const { execFileSync } = await import("node:child_process");
    const { createHash } = await import("node:crypto");
    const dir = await writeTask(await tempDir(), "fifo", { "task.toml": "" });
    const expected = createHash("sha256");
    for (const rel of ["environment/Dockerfile", "instruction.md", "solution/solve.sh", "task.toml", "tests/test.sh"]) {
      const body = await readFile(path.join(dir, rel));
      expected.update(`${Buffer.byteLength(rel)}:${rel}\0${body.length}:`);
      expected.update(body);
    }
    assert.equal(await dirChecksum(dir), expected.digest("hex"), "same checksum as before streaming");
    execFileSync("mkfifo", [path.join(dir, "environment", "pipe")]);
    const sum = await Promise.race([dirChecksum(dir), new Promise((r) => setTimeout(() => r("blocked"), 5000))]);
    assert.match(String(sum), /^[0-9a-f]{64}$/);
  });
});

describe("Terminal-Bench 1.x tasks", () => {
  const TB1_FILES: Record<string, string> = {
    "task.yaml": [
      "instruction: |-",
      "  Write hello to /app/out.txt.",
      "author_email: a@example.com",
      "difficulty: easy",
      "category: file-operations",
      "tags: [files]",
      "parser_name: pytest",
      "max_agent_timeout_sec: 200",
      "",
    ].join("\n"),
    Dockerfile: "FROM localhost/tb-base:bookworm\nWORKDIR /app\n",
    "docker-compose.yaml": [
      "services:",
      "  client:",
      "    build:",
      "      dockerfile: Dockerfile",
      "    image: ${T_BENCH_TASK_DOCKER_CLIENT_IMAGE_NAME}",
      "    command: [\"sh\", \"-c\", \"sleep infinity\"]",
      "    environment:",
      "      - TEST_DIR=${T_BENCH_TEST_DIR}",
      "      - GREETING=hi",
      "    volumes:",
      "      - ${T_BENCH_TASK_LOGS_PATH}:${T_BENCH_CONTAINER_LOGS_PATH}",
      "",
    ].join("\n"),
    "run-tests.sh": "#!/bin/bash\npython3 -m pytest $TEST_DIR/test_outputs.py -rA\n",
    "solution.sh": "#!/bin/bash\necho hello > /app/out.txt\n",
    "tests/test_outputs.py": "def test_out():\n    assert open('/app/out.txt').read() == 'hello\\n'\n",
  };

  async function writeTb1(files: Record<string, string | null> = {}): Promise<string> {
    const dir = path.join(await tempDir(), "tb1-task");
    for (const [rel, content] of Object.entries({ ...TB1_FILES, ...files })) {
      if (content === null) continue;
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), content);
    }
    return dir;
  }

  test("converts to a Task with a generated test.sh and solve.sh", async () => {
    const dir = await writeTb1();
    const t = await loadTask(dir);
    tempRoots.push(path.dirname(t.testsDir)); // the generated cache dir
    assert.equal(t.format, "tb1");
    assert.equal(t.name, "tb1-task");
    assert.equal(t.instruction, "Write hello to /app/out.txt.");
    assert.equal(t.config.agentTimeoutSec, 200);
    assert.equal(t.config.verifierTimeoutSec, 60);
    assert.equal(t.config.difficulty, "easy");
    assert.deepEqual(t.config.tags, ["files"]);
    assert.deepEqual(t.config.env, { TEST_DIR: "/tests", GREETING: "hi" });
    assert.equal(t.config.dockerImage, undefined);
    assert.deepEqual(t.environment, { contextDir: dir, dockerfile: "Dockerfile" });

    assert.deepEqual((await readdir(t.testsDir)).sort(), ["run-tests.sh", "test.sh", "test_outputs.py"]);
    const testSh = await readFile(path.join(t.testsDir, "test.sh"), "utf8");
    assert.match(testSh, /export TEST_DIR=\/tests/);
    assert.match(testSh, /bash \/tests\/run-tests\.sh/);
    assert.match(testSh, /echo 1 > \/logs\/verifier\/reward\.txt/);
    assert.match(testSh, /echo 0 > \/logs\/verifier\/reward\.txt/);
    assert.equal(await readFile(path.join(t.testsDir, "run-tests.sh"), "utf8"), TB1_FILES["run-tests.sh"]);

    assert.ok(t.solutionDir);
    assert.deepEqual((await readdir(t.solutionDir)).sort(), ["solution.sh", "solve.sh"]);
    assert.match(await readFile(path.join(t.solutionDir, "solve.sh"), "utf8"), /solution\.sh/);

    // Loading again reuses the same content-addressed dir.
    assert.equal((await loadTask(dir)).testsDir, t.testsDir);
  });

  test("defaults: agent 360 s, tests 60 s; a bare Dockerfile is enough", async () => {
    const dir = await writeTb1({
      "task.yaml": "instruction: do it\ndifficulty: medium\n",
      "docker-compose.yaml": null,
    });
    const t = await loadTask(dir);
    tempRoots.push(path.dirname(t.testsDir));
    assert.equal(t.config.agentTimeoutSec, 360);
    assert.equal(t.config.verifierTimeoutSec, 60);
    assert.deepEqual(t.config.env, { TEST_DIR: "/tests" });
  });

  test("several compose services → a multi-container task run in `client`; no client → TaskError naming it", async () => {
    const dir = await writeTb1({
      "docker-compose.yaml": "services:\n  client:\n    build: .\n    depends_on: [db]\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: x\n",
    });
    const ds = await loadDataset(dir);
    assert.equal(ds.tasks.length, 1, formatProblems(ds.problems));
    tempRoots.push(path.dirname(ds.tasks[0]!.testsDir));
    const compose = ds.tasks[0]!.environment.compose!;
    assert.equal(compose.main, "client");
    assert.deepEqual(compose.services.map((s) => s.name), ["db", "client"]); // dependencies first
    assert.deepEqual(compose.services[0]!.env, { POSTGRES_PASSWORD: "x" });
    const noClient = await loadErrors(await writeTb1({ "docker-compose.yaml": "services:\n  app:\n    build: .\n  db:\n    image: postgres:16\n" }));
    assert.ok(hasProblem(noClient, "docker-compose.yaml", "services", /no `client` service/), formatProblems(noClient));
  });

  test("solution.yaml is reported as unsupported; the task still loads without a solution", async () => {
    const dir = await writeTb1({ "solution.sh": null, "solution.yaml": "- command: echo hi\n" });
    const ds = await loadDataset(dir);
    assert.equal(ds.tasks.length, 1);
    tempRoots.push(path.dirname(ds.tasks[0]!.testsDir));
    assert.equal(ds.tasks[0]!.solutionDir, undefined);
    assert.ok(hasProblem(ds.problems, "solution.yaml", undefined, /unsupported/));
  });

  test("missing run-tests.sh, bad YAML, wrong types name their file and field", async () => {
    assert.ok(hasProblem(await loadErrors(await writeTb1({ "run-tests.sh": null })), "run-tests.sh"));
    const yamlProblems = await loadErrors(await writeTb1({ "task.yaml": "instruction: [unclosed\n" }));
    assert.ok(hasProblem(yamlProblems, "task.yaml", undefined, /line \d+, column \d+/), formatProblems(yamlProblems));
    const typeProblems = await loadErrors(await writeTb1({ "task.yaml": "instruction: x\nmax_test_timeout_sec: soon\n" }));
    assert.ok(hasProblem(typeProblems, "task.yaml", "max_test_timeout_sec", /expected a number/));
    const noInstruction = await loadErrors(await writeTb1({ "task.yaml": "difficulty: easy\n" }));
    assert.ok(hasProblem(noInstruction, "task.yaml", "instruction"));
    const noEnv = await loadErrors(await writeTb1({ Dockerfile: null, "docker-compose.yaml": null }));
    assert.ok(hasProblem(noEnv, "Dockerfile"));
  });
});

describe("check and helpers", () => {
  test("check warns about test.sh without a reward file and about downloads at test time", async () => {
    const dir = await taskWithToml("", {
      "tests/test.sh": "#!/bin/bash\n# uv is fetched below\ncurl -LsSf https://astral.sh/uv/install.sh | sh\npytest /tests\n",
    });
    const problems = await checkDataset(dir);
    assert.ok(hasProblem(problems, "tests/test.sh", undefined, /reward\.txt/));
    assert.ok(hasProblem(problems, "tests/test.sh", undefined, /without network/));
    const lines = formatProblems(problems).split("\n");
    assert.equal(lines.length, problems.length);
    assert.ok(lines.every((l) => l.startsWith("warning: t: ")));
  });

  test("check lists every error of a broken task (and an error-free Dockerfile check)", async () => {
    const dir = await taskWithToml('[agent]\ntimeout_sec = "x"\n', { "environment/Dockerfile": "WORKDIR /app\n", "instruction.md": null });
    const problems = await checkDataset(dir);
    assert.ok(hasProblem(problems, "task.toml", "agent.timeout_sec"));
    assert.ok(hasProblem(problems, "instruction.md"));
    assert.ok(hasProblem(problems, "environment/Dockerfile", undefined, /no FROM/));
    assert.equal(problems[0]!.severity, "error");
    assert.match(formatProblems(problems), /^error: t: task\.toml \[agent\.timeout_sec\]: expected a number, got "x"$/m);
  });

  test("parseSizeToMb", () => {
    assert.equal(parseSizeToMb("2G"), 2048);
    assert.equal(parseSizeToMb("512M"), 512);
    assert.equal(parseSizeToMb("1.5G"), 1536);
    assert.equal(parseSizeToMb("10G"), 10240);
    assert.equal(parseSizeToMb("2Gi"), 2048);
    assert.equal(parseSizeToMb("4096k"), 4);
    assert.equal(parseSizeToMb("lots"), null);
  });

  test("globToRegExp", () => {
    assert.ok(globToRegExp("regex-*").test("regex-log"));
    assert.ok(!globToRegExp("regex-*").test("my-regex-log"));
    assert.ok(globToRegExp("?ello-file").test("hello-file"));
    assert.ok(globToRegExp("[hw]*").test("word-count"));
    assert.ok(!globToRegExp("[!hw]*").test("word-count"));
    assert.ok(globToRegExp("a.b").test("a.b") && !globToRegExp("a.b").test("axb"));
  });
});

describe("links out of a task", () => {
  test("absolute, climbing and dangling-climbing links are refused by name; inner links are kept", async () => {
    const { linksOutOf } = await import("../../../src/tasks/files.js");
    const { mkdtemp, mkdir, writeFile, symlink, rm } = await import("node:fs/promises");
    const os = await import("node:os");
    const dir = await mkdtemp(path.join(os.tmpdir(), "tmax-links-"));
    try {
      await mkdir(path.join(dir, "environment", "sub"), { recursive: true });
      await writeFile(path.join(dir, "environment", "real.txt"), "x");
      await symlink("real.txt", path.join(dir, "environment", "inner.txt"));
      await symlink("../real.txt", path.join(dir, "environment", "sub", "up-inside.txt"));
      await symlink("/etc", path.join(dir, "environment", "abs"));
      await symlink("../../..", path.join(dir, "environment", "climb"));
      await symlink("../../nowhere/x", path.join(dir, "environment", "dangling"));
      // a link to a shallower dir, then `..` through it: lexically inside, physically outside
      await symlink("..", path.join(dir, "environment", "sub", "parent"));
      await symlink("sub/parent/../..", path.join(dir, "environment", "tricky"));
      const found = await linksOutOf(dir);
      assert.deepEqual(found.map((f) => f.rel).sort(), ["environment/abs", "environment/climb", "environment/dangling", "environment/tricky"]);

      await writeFile(path.join(dir, "instruction.md"), "Do it.\n");
      await writeFile(path.join(dir, "task.toml"), 'version = "1.0"\n');
      const { readTask } = await import("../../../src/tasks/load.js");
      const result = await readTask(dir);
      assert.equal(result.task, undefined);
      const errors = result.problems.filter((p) => p.severity === "error" && /leads out of the task/.test(p.message));
      assert.deepEqual(errors.map((p) => p.file).sort(), ["environment/abs", "environment/climb", "environment/dangling", "environment/tricky"]);
      assert.match(errors[0]!.message, /leads out of the task/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
