// Every row of the exit-code table in docs/cli.md, run as a user runs the CLI.
import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { EXIT } from "../../../src/cli/exitCodes.js";
import { finished, runTmax, spawnTmax } from "../../support/cli.js";
import { EXAMPLES, ROOT } from "../../support/env.js";
import { startFakeEngine } from "../../support/fakeEngine.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-exit-codes-"));
after(() => rm(tmp, { recursive: true, force: true }));
const plain = { NO_COLOR: "1" };

describe("exit codes (docs/cli.md)", () => {
  test("the table in docs/cli.md lists every code of EXIT", async () => {
    const doc = await readFile(path.join(ROOT, "docs/cli.md"), "utf8");
    for (const code of Object.values(EXIT)) assert.match(doc, new RegExp(`^\\| ${code} \\|`, "m"), `row ${code}`);
  });

  test("0: done as asked", async () => {
    assert.equal((await runTmax(["--version"], plain)).code, 0);
    assert.equal((await runTmax(["--help"], plain)).code, 0);
    const ok = await runTmax(["tasks", "check", path.join(EXAMPLES, "hello-file")], plain);
    assert.equal(ok.code, EXIT.ok, ok.stderr);
  });

  test("1: it ran and failed (a check that found errors, a missing dir)", async () => {
    const broken = path.join(tmp, "broken");
    await cp(path.join(EXAMPLES, "hello-file"), broken, { recursive: true });
    await writeFile(path.join(broken, "task.toml"), `${await readFile(path.join(broken, "task.toml"), "utf8")}\n[verifier]\ntimeout_sec = "x"\n`);
    const r = await runTmax(["tasks", "check", broken], plain);
    assert.equal(r.code, EXIT.failure, r.stdout + r.stderr);
    assert.match(r.stdout, /\d+ error\(s\)/);
    const missing = await runTmax(["rl", "pack", path.join(tmp, "nothing-here")], plain);
    assert.equal(missing.code, EXIT.failure);
    assert.match(missing.stderr, /^tmax: error: /);
  });

  const usage: [string, string[], RegExp][] = [
    ["unknown option", ["eval", "--nope"], /unknown option '--nope'/],
    ["unknown command", ["evaluate"], /unknown command 'evaluate'/],
    ["no command", [], /Usage: tmax/],
    ["missing argument", ["report"], /missing required argument/],
    ["missing required option", ["rl", "batch", "x"], /required option '--step <n>' not specified/],
    ["bad choice", ["completion", "tcsh"], /value 'tcsh' is invalid for argument 'shell'/],
    ["bad option choice", ["sandbox", "prune", "--backend", "k8s"], /option '--backend <name>' argument 'k8s' is invalid/],
    ["invalid value", ["explore", "--port", "x", "."], /expected a non-negative integer, got "x"/],
    ["flags that exclude each other", ["sandbox", "prune", "--job", "a", "--all"], /--job and --all exclude each other/],
    ["--diff with three dirs", ["report", "--diff", "a", "b", "c"], /--diff compares two job dirs/],
  ];
  test(`2: usage — ${usage.map(([what]) => what).join(", ")}`, async () => {
    await Promise.all(
      usage.map(async ([what, args, message]) => {
        const r = await runTmax(args, plain);
        assert.equal(r.code, EXIT.usage, `${what}: tmax ${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, message, what);
        assert.equal(r.stdout, "", what);
      }),
    );
  });

  test("129, 130, 143: a signal stops eval cleanly (finished trials kept), with 128 + the signal's number", async () => {
    // the fake engine answers the preflight and then never answers the image lookup: the job is running
    const engine = await startFakeEngine();
    after(() => engine.close());
    const cases = [
      ["SIGHUP", EXIT.hangup],
      ["SIGINT", EXIT.interrupted],
      ["SIGTERM", EXIT.terminated],
    ] as const;
    await Promise.all(
      cases.map(async ([signal, code]) => {
        const job = path.join(tmp, `job-${signal}`);
        const child = spawnTmax(["eval", "-d", path.join(EXAMPLES, "hello-file"), "-a", "oracle", "-e", "docker", "--job-dir", job], { ...plain, DOCKER_HOST: engine.host });
        const done = finished(child);
        // the job has started once its config is written and the engine is asked for the image
        const started = Date.now();
        while (!(engine.requests.some((r) => r.startsWith("GET /images/")) && (await readFile(path.join(job, "config.json")).catch(() => null)))) {
          assert.ok(Date.now() - started < 60_000, "the job never started");
          await new Promise((r) => setTimeout(r, 100));
        }
        child.kill(signal);
        const r = await done;
        assert.equal(r.code, code, `${signal}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, new RegExp(`interrupted \\(${signal}\\): finished trials are kept`));
      }),
    );
  });

  test("141: its output went away (`tmax … | head`)", async () => {
    const child = spawnTmax(["tasks", "list", EXAMPLES], plain);
    child.stdout.destroy(); // the reader is gone before the first line
    const r = await finished(child);
    assert.equal(r.code, EXIT.outputGone);
  });
});
