// The package as installed by a user: `npm pack` of a clone (prepare compiles dist/), `npm install -g` of the
// tarball into a temp prefix, then the installed `tmax` run from an unrelated directory: --version, --help, its
// assets and examples found next to the installed package, and the Daytona SDK found when installed globally
// beside it (the install hint's promise); and the README's main command (an oracle eval in real containers) by the
// installed binary. One pack for all: the pack and install take most of the time.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ENGINE_SKIP, ROOT, TEST_RUN } from "../../support/env.js";
import { packAndInstall, type Installed } from "../../support/install.js";

const npm = spawnSync("npm", ["--version"], { encoding: "utf8" });
const SKIP = npm.status === 0 ? false : "skipped: npm not on PATH";
const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-install-"));
const containers = () => spawnSync("podman", ["ps", "-aq", "--filter", "label=io.tmax.managed", "--filter", `label=io.tmax.test-run=${TEST_RUN}`], { encoding: "utf8" }).stdout.trim();
const version = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version as string;

describe("the installed package (npm pack → npm install -g --prefix)", { skip: SKIP }, () => {
  let pkg: Installed;
  const elsewhere = path.join(tmp, "elsewhere");
  const tmax = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(pkg.bin, args, { cwd: elsewhere, encoding: "utf8", timeout: 120_000, env: { ...process.env, DOCKER_HOST: "unix:///nonexistent.sock", ...env } });

  before(() => {
    pkg = packAndInstall(tmp);
    mkdirSync(elsewhere);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test("the tarball holds the compiled CLI, its runtime files and the license, and nothing of the development tree", () => {
    for (const f of ["dist/cli/main.js", "dist/sandbox/daytona/sdk.js", "assets/executor.sh", "assets/explore/app.js", "scripts/setup-sandbox.sh", "examples/tasks/hello-file/task.toml", "LICENSE", "README.md", "package.json", "npm-shrinkwrap.json"]) {
      assert.ok(pkg.files.includes(f), `${f} missing from the tarball`);
    }
    assert.deepEqual(pkg.files.filter((f) => /^(src|test|bench|\.ci|clients)\/|\.map$|^scripts\/(leak-check|with-node)/.test(f)), []);
    assert.match(readFileSync(path.join(pkg.pkgDir, "LICENSE"), "utf8"), /Apache License\s+Version 2\.0, January 2004[\s\S]*END OF TERMS AND CONDITIONS/);
  });

  test("tmax --version and --help from another directory", () => {
    const v = tmax(["--version"]);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout.trim(), version);
    const h = tmax(["--help"]);
    assert.equal(h.status, 0, h.stderr);
    for (const cmd of ["eval", "run", "doctor", "report", "rollout", "serve", "explore", "tasks"]) assert.match(h.stdout, new RegExp(`^\\s+${cmd}\\b`, "m"), `--help lists ${cmd}`);
  });

  test("the shipped examples are checked by the installed binary, read from the installed package", () => {
    const dir = path.join(pkg.pkgDir, "examples", "tasks");
    const check = tmax(["tasks", "check", dir]);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const list = tmax(["tasks", "list", dir]);
    assert.equal(list.status, 0, list.stdout + list.stderr);
    assert.match(list.stdout, /hello-file/);
  });

  test("the Daytona SDK installed globally next to tmax is found (the hint `npm i -g @daytonaio/sdk` works)", () => {
    const env = { DAYTONA_API_KEY: "", npm_config_prefix: "" };
    const before = tmax(["doctor", "--skip-model", "--backend", "daytona"], env);
    assert.match(before.stdout + before.stderr, /Daytona SDK \(@daytonaio\/sdk\) is not installed[\s\S]*npm i -g @daytonaio\/sdk/);
    // what `npm i -g --prefix <prefix> @daytonaio/sdk` leaves: a package beside tmax in <prefix>/lib/node_modules
    const sdk = path.join(pkg.prefix, "lib", "node_modules", "@daytonaio", "sdk");
    mkdirSync(sdk, { recursive: true });
    writeFileSync(path.join(sdk, "package.json"), JSON.stringify({ name: "@daytonaio/sdk", version: "0.218.0", main: "index.js" }));
    writeFileSync(path.join(sdk, "index.js"), "exports.Daytona = class Daytona {};\nexports.Image = { fromDockerfile: (p) => ({ dockerfile: p }) };\n");
    const after = tmax(["doctor", "--skip-model", "--backend", "daytona"], env);
    assert.match(after.stdout + after.stderr, /Daytona SDK \(@daytonaio\/sdk\) loads/);
  });

  test("the README's main command by the installed binary: tmax eval --dataset <installed examples> --agent oracle, reward 1", { skip: ENGINE_SKIP }, async () => {
    const cwd = elsewhere;
    const jobDir = path.join(cwd, "jobs", "oracle");
    const args = ["eval", "--dataset", path.join(pkg.pkgDir, "examples", "tasks"), "--agent", "oracle", "--include", "hello-file", "--job-dir", jobDir];
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(pkg.bin, args, { cwd, env: { ...process.env, NO_COLOR: "1" } });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      child.on("exit", (code) => resolve({ code, out }));
    });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /1\.000/);
    const job = JSON.parse(readFileSync(path.join(jobDir, "result.json"), "utf8"));
    assert.equal(job.n_total_trials, 1);
    assert.equal(job.stats.n_completed_trials, 1);
    assert.equal(job.stats.n_errored_trials, 0);
    const evals = Object.values(job.stats.evals) as { metrics: { mean: number }[] }[];
    assert.deepEqual(evals.map((e) => e.metrics[0]!.mean), [1]);
    assert.equal(containers(), "", "no container of this run is left");
  });
});
