// `--json` on the list and status commands: one document on stdout, valid against the schema exported beside
// each command, with the values the command found.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { DatasetsListJson } from "../../../src/cli/datasets.js";
import { SandboxPruneJson } from "../../../src/cli/sandbox.js";
import { TasksCheckJson, TasksListJson } from "../../../src/cli/tasks.js";
import { JOB_DIR_LABEL, JOB_ID_LABEL, OWNER_HOST_LABEL, OWNER_PID_LABEL, OWNER_START_LABEL, TEST_RUN_LABEL } from "../../../src/sandbox/owner.js";
import { processStartTime } from "../../../src/util/process.js";
import { TMAX_LABEL } from "../../../src/sandbox/types.js";
import { runTmax } from "../../support/cli.js";
import { EXAMPLES } from "../../support/env.js";
import { startFakeEngine } from "../../support/fakeEngine.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-json-"));
after(() => rm(tmp, { recursive: true, force: true }));
const plain = { NO_COLOR: "1", TMAX_CACHE_DIR: path.join(tmp, "cache") };

describe("--json", () => {
  test("datasets list: the registry's datasets, a task count each", async () => {
    const registry = path.join(tmp, "registry.json");
    await writeFile(
      registry,
      JSON.stringify([
        { name: "examples", version: "1.0", description: "the examples\x1b[31m", tasks: [{ name: "hello-file", path: path.join(EXAMPLES, "hello-file") }, { name: "word-count", path: path.join(EXAMPLES, "word-count") }] },
        { name: "empty", version: "0.1", tasks: [] },
      ]),
    );
    const r = await runTmax(["datasets", "list", "--registry", registry, "--json"], plain);
    assert.equal(r.code, 0, r.stderr);
    const doc = DatasetsListJson.parse(JSON.parse(r.stdout));
    assert.equal(doc.registry, registry);
    assert.equal(doc.offline_note, null);
    assert.deepEqual(doc.datasets, [
      { name: "examples", version: "1.0", description: "the examples\x1b[31m", tasks: 2 },
      { name: "empty", version: "0.1", description: "", tasks: 0 },
    ]);
    assert.ok(!r.stdout.includes("\x1b"), "JSON escapes control characters");
  });

  test("tasks list: every task with its format, difficulty and category", async () => {
    const r = await runTmax(["tasks", "list", EXAMPLES, "--json"], plain);
    assert.equal(r.code, 0, r.stderr);
    const doc = TasksListJson.parse(JSON.parse(r.stdout));
    assert.deepEqual(doc.tasks.map((t) => t.name).sort(), ["fix-script", "hello-file", "word-count"]);
    const hello = doc.tasks.find((t) => t.name === "hello-file")!;
    assert.deepEqual(hello, { name: "hello-file", format: "harbor", difficulty: "easy", category: "file-operations", dir: path.join(EXAMPLES, "hello-file") });
    assert.deepEqual(doc.problems, []);
  });

  test("tasks check: the problems with file and field; exit 1 when there are errors", async () => {
    const dataset = path.join(tmp, "check");
    await cp(path.join(EXAMPLES, "hello-file"), path.join(dataset, "hello-file"), { recursive: true });
    await cp(path.join(EXAMPLES, "hello-file"), path.join(dataset, "broken"), { recursive: true });
    const toml = path.join(dataset, "broken", "task.toml");
    await writeFile(toml, `${await readFile(toml, "utf8")}\n[verifier]\ntimeout_sec = "x"\n`);
    const r = await runTmax(["tasks", "check", dataset, "--json"], plain);
    assert.equal(r.code, 1, r.stderr);
    const doc = TasksCheckJson.parse(JSON.parse(r.stdout));
    assert.ok(doc.errors >= 1);
    assert.equal(doc.errors + doc.warnings, doc.problems.length);
    assert.ok(doc.problems.some((p) => p.task === "broken" && p.file === "task.toml" && p.severity === "error"), r.stdout);
    assert.ok(doc.problems.every((p) => p.task === "broken" || p.severity === "warning"));

    const clean = await runTmax(["tasks", "check", path.join(dataset, "hello-file"), "--json"], plain);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(TasksCheckJson.parse(JSON.parse(clean.stdout)).errors, 0);
  });

  test("sandbox prune --dry-run: what would go, by the same rule as prune, and nothing removed", async () => {
    const run = `json-test-${process.pid}`;
    const [job1, job2] = [randomUUID(), randomUUID()];
    const dead = spawnSync("true").pid!; // a process that has ended: its containers' owner is gone
    const owner = (pid: number, start?: string) => ({ [OWNER_PID_LABEL]: String(pid), [OWNER_HOST_LABEL]: os.hostname(), ...(start ? { [OWNER_START_LABEL]: start } : {}) });
    const labels = (job: string, who: Record<string, string>, testRun = run) => ({ [TMAX_LABEL]: "1", [JOB_ID_LABEL]: job, [JOB_DIR_LABEL]: `/jobs/${job.slice(0, 8)}`, [TEST_RUN_LABEL]: testRun, ...who });
    const engine = await startFakeEngine({
      containers: [
        { Id: "a".repeat(64), Names: ["/tmax-orphan"], Labels: labels(job1, owner(dead)) },
        { Id: "b".repeat(64), Names: ["/tmax-running"], Labels: labels(job2, owner(process.pid, processStartTime(process.pid))) },
        { Id: "c".repeat(64), Names: ["/someone-elses"], Labels: labels(job1, owner(dead), "another-run") },
        { Id: "d".repeat(64), Names: ["/not-tmax"], Labels: { [JOB_ID_LABEL]: job1, ...owner(dead) } },
      ],
      images: [{ Id: `sha256:${"e".repeat(64)}`, RepoTags: ["<none>:<none>"], Labels: { ...labels(job1, owner(dead)), [`${TMAX_LABEL}.snapshot`]: "1" } }],
    });
    after(() => engine.close());
    const env = { ...plain, DOCKER_HOST: engine.host, TMAX_TEST_RUN: run };
    const prune = async (...args: string[]) => {
      const r = await runTmax(["sandbox", "prune", "--dry-run", "--json", ...args], env);
      assert.equal(r.code, 0, r.stderr);
      return SandboxPruneJson.parse(JSON.parse(r.stdout));
    };

    const gone = await prune();
    assert.equal(gone.selection, "owner-gone");
    assert.equal(gone.dry_run, true);
    assert.equal(gone.removed, null);
    assert.deepEqual(gone.candidates, [
      { kind: "container", id: "a".repeat(64), name: "tmax-orphan", job: job1, job_dir: `/jobs/${job1.slice(0, 8)}`, owner: `${dead}@${os.hostname()}` },
      { kind: "snapshot-image", id: `sha256:${"e".repeat(64)}`, name: "", job: job1, job_dir: `/jobs/${job1.slice(0, 8)}`, owner: `${dead}@${os.hostname()}` },
    ]);
    assert.deepEqual((await prune("--all")).candidates.map((c) => c.name), ["tmax-orphan", "tmax-running", ""]);
    const ofJob2 = await prune("--job", job2);
    assert.equal(ofJob2.selection, "job");
    assert.equal(ofJob2.job, job2);
    assert.deepEqual(ofJob2.candidates.map((c) => c.name), ["tmax-running"]);

    const human = await runTmax(["sandbox", "prune", "--dry-run"], env);
    assert.match(human.stdout, /^container\taaaaaaaaaaaa\ttmax-orphan\t\/jobs\/[0-9a-f]{8}\t/m);
    assert.match(human.stdout, /would remove 1 sandbox\(es\) and 1 snapshot image\(s\) whose owner process is gone/);
    assert.deepEqual(engine.requests.filter((r) => !r.startsWith("GET ")), [], "a dry run only reads");
  });
});
