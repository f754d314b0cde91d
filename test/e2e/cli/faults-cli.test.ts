// A newcomer's faults on the command line, run as a user runs them: a dataset typo, invalid tasks (refused, or
// left out and never scored, then joined after a fix), `tmax run --out` on a used dir, `sandbox prune --job` on a
// run dir.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";
import { startFakeVllm } from "../../support/fake-vllm.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-faults-cli-"));
after(() => rm(tmp, { recursive: true, force: true }));
const MAIN = path.join(ROOT, "src/cli/main.ts");
// a registry that refuses at once: a lookup that should never happen fails fast instead of going to the network
const NO_REGISTRY = { TMAX_REGISTRY: "http://127.0.0.1:9/registry.json", TMAX_CACHE_DIR: path.join(tmp, "cache") };

function tmax(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...NO_REGISTRY, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}
const lines = (s: string) => s.trim().split("\n").filter(Boolean);
const json = (f: string) => JSON.parse(readFileSync(f, "utf8"));

describe("a newcomer's faults", () => {
  test("--dataset that is a typo of a dir, or the README's path/to/…, is 'no such directory' in one line, without a registry lookup", async () => {
    for (const arg of ["examples/task", "path/to/terminal-bench-2", "./tasks", "/nonexistent/tasks", "tasks/"]) {
      const r = await tmax(["eval", "--dataset", arg, "--agent", "oracle"]);
      assert.equal(r.code, 1, arg);
      assert.deepEqual(lines(r.stderr), [`tmax: error: no such directory: ${path.resolve(ROOT, arg)} (a registry dataset is name or name@version)`], arg);
    }
    // a name is still a registry name (the refusing registry answers)
    const byName = await tmax(["eval", "--dataset", "terminal-bench@2.0", "--agent", "oracle"]);
    assert.match(byName.stderr, /cannot fetch registry http:\/\/127\.0\.0\.1:9\/registry\.json/);
  });

  describe("with the engine", { skip: ENGINE_SKIP }, () => {
    test("invalid tasks: refused before the job starts (one line each); --skip-invalid leaves them out, never scored; fixed, they join on --resume --retry-errors", async () => {
      const dataset = path.join(tmp, "tasks");
      await cp(path.join(EXAMPLES, "hello-file"), path.join(dataset, "hello-file"), { recursive: true });
      await cp(path.join(EXAMPLES, "hello-file"), path.join(dataset, "broken-toml"), { recursive: true });
      await cp(path.join(EXAMPLES, "hello-file"), path.join(dataset, "no-from"), { recursive: true });
      const good = readFileSync(path.join(dataset, "broken-toml", "task.toml"), "utf8");
      await writeFile(path.join(dataset, "broken-toml", "task.toml"), `${good}\n[verifier]\ntimeout_sec = "x"\n`);
      await writeFile(path.join(dataset, "no-from", "environment", "Dockerfile"), "WORKDIR /app\n");

      const job = path.join(tmp, "job");
      const refused = await tmax(["eval", "-d", dataset, "-a", "oracle", "--job-dir", job]);
      assert.equal(refused.code, 1);
      const err = lines(refused.stderr).filter((l) => !l.includes("warning"));
      assert.match(err[0]!, /^tmax: error: 2 invalid task\(s\), refused before the job starts/);
      assert.equal(err.length, 3, refused.stderr);
      assert.match(err[1]!, /^error: broken-toml: task\.toml/);
      assert.match(err[2]!, /^error: no-from: environment\/Dockerfile: has no FROM line/);
      assert.equal(existsSync(job), false, "no job dir");

      const skipped = await tmax(["eval", "-d", dataset, "-a", "oracle", "--job-dir", job, "--skip-invalid"]);
      assert.equal(skipped.code, 0, skipped.stderr);
      assert.match(skipped.stdout, /left out \(invalid, never scored\): error: broken-toml/);
      assert.match(skipped.stdout, /mean reward 1\.000 over 1 trials/);
      assert.deepEqual(json(path.join(job, "config.json")).invalid_tasks, ["broken-toml", "no-from"]);
      const report = await tmax(["report", job, "--json"]);
      const card = JSON.parse(report.stdout);
      assert.equal(JSON.stringify(card).includes("broken-toml"), false, "never scored");
      assert.match((await tmax(["report", job])).stdout, /\*\*score: 100\.0%\*\*/);

      await writeFile(path.join(dataset, "broken-toml", "task.toml"), good);
      const still = await tmax(["eval", "--resume", job]);
      assert.equal(still.code, 0, still.stderr);
      assert.match(still.stdout, /left out: broken-toml is valid now; --resume with --retry-errors adds it/);
      const joined = await tmax(["eval", "--resume", job, "--retry-errors"]);
      assert.equal(joined.code, 0, joined.stderr);
      assert.match(joined.stdout, /broken-toml is valid now: it joins the job/);
      assert.match(joined.stdout, /mean reward 1\.000 over 2 trials/);
      assert.deepEqual(json(path.join(job, "config.json")).invalid_tasks, ["no-from"]);
    });

    test("tmax run: --out on a used dir is refused; `sandbox prune --job <run dir>` removes a killed run's container", async () => {
      const model = await startFakeVllm({ reply: () => ({ text: "THOUGHT", commands: ["sleep 100"] }) });
      after(() => model.close());
      const out = path.join(tmp, "run");
      const child = spawn(process.execPath, ["--import", "tsx", MAIN, "run", "--task", "wait a while", "--base-url", model.baseUrl, "--out", out], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" } });
      const running = () => spawnSync("podman", ["ps", "-aq", "--filter", `label=io.tmax.job-dir=${out}`], { encoding: "utf8" }).stdout.trim();
      for (let i = 0; i < 600 && !running(); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(running(), "the run's container");
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      const prune = await tmax(["sandbox", "prune", "--job", out]);
      assert.equal(prune.code, 0, prune.stderr);
      assert.match(prune.stdout, /^removed 1 sandbox\(es\) and 0 snapshot image\(s\) of job [0-9a-f-]{36}$/m);
      assert.equal(running(), "");

      const again = await tmax(["run", "--task", "wait a while", "--base-url", model.baseUrl, "--out", out]);
      assert.equal(again.code, 1);
      assert.deepEqual(lines(again.stderr), [`tmax: error: --out ${out} is already used (it holds an earlier run or other files); choose another --out`]);
    });
  });
});
