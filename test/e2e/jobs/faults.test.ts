// The fault table: `tmax eval` on the example tasks (oracle), a fault injected while trials run — output gone
// (`| head`), SIGINT, SIGTERM, SIGHUP, kill -9 then resume or prune, an engine (API service) restart — and each time:
// no finished trial lost or run twice, no container or snapshot image of the job left, the documented exit code,
// and a resume (`--resume DIR` alone) that keeps the stored settings and finishes the job.
// The verifiers sleep (word-count's 10 s), so that the fault lands while a trial is in its verifier phase.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { DOCKER_HOST, ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-faults-"));
const MAIN = path.join(ROOT, "src/cli/main.ts");
const DATASET = path.join(tmp, "tasks");
// two of the example tasks, two at a time: when the first finishes, the other is in flight
const TASKS = ["hello-file", "word-count"];
const TRIALS = TASKS.map((t) => `${t}__0`);

const json = (f: string) => JSON.parse(readFileSync(f, "utf8"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const finished = (job: string) => (existsSync(job) ? readdirSync(job).filter((d) => existsSync(path.join(job, d, "result.json"))).sort() : []);
const jobId = (job: string) => readFileSync(path.join(job, ".tmax-job-id"), "utf8").trim();

/** What of the job is on the engine: containers (by its dir label) and snapshot images (by its id label). */
function leftovers(job: string, host = DOCKER_HOST): { containers: string[]; images: string[] } {
  const containers = containersOf(job, host);
  const images = existsSync(path.join(job, ".tmax-job-id")) ? snapshotImages(`io.tmax.job=${jobId(job)}`, host) : [];
  return { containers, images };
}

function containersOf(job: string, host = DOCKER_HOST): string[] {
  const out = spawnSync("podman", ["--url", host, "ps", "-a", "--filter", `label=io.tmax.job-dir=${job}`, "--format", "{{.Names}}"], { encoding: "utf8" }).stdout;
  return out.trim().split("\n").filter(Boolean);
}

/** Snapshot images (intermediate ones included) with this label (podman ORs several label filters: one here). */
function snapshotImages(label: string, host = DOCKER_HOST, all = true): string[] {
  const out = spawnSync("podman", ["--url", host, "images", ...(all ? ["-a"] : []), "--filter", `label=${label}`, "--format", '{{.ID}} {{index .Labels "io.tmax.managed.snapshot"}}'], { encoding: "utf8" }).stdout;
  return out.split("\n").filter((l) => l.endsWith(" 1")).map((l) => l.split(" ")[0]!);
}

/** Leftovers after the engine finished the removals already sent (an image removal may still be running). */
async function settledLeftovers(job: string, host?: string): Promise<{ containers: string[]; images: string[] }> {
  let left = leftovers(job, host);
  for (let i = 0; i < 20 && (left.containers.length || left.images.length); i++) {
    await sleep(250);
    left = leftovers(job, host);
  }
  return left;
}

interface Run {
  child: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function tmax(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...env } });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  child.stdout!.on("error", () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on("exit", (code, signal) => r({ code, signal })));
  return { child, out: () => out, exited };
}

/**
 * Until a trial has finished while another is in flight (its container exists); `verifier`: in its verifier phase,
 * i.e. while its snapshot container (and image) exist.
 */
async function midJob(job: string, run: Run, o: { host?: string; verifier?: boolean } = {}): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const containers = finished(job).length >= 1 ? containersOf(job, o.host) : [];
    if (containers.some((c) => !o.verifier || c.includes("-verifier"))) return;
    if (run.child.exitCode !== null) break;
    await sleep(200);
  }
  throw new Error(`no finished trial and running verifier in time:\n${run.out()}`);
}

/** `--resume DIR` alone: finishes the job at its stored settings; every earlier result is kept as it was. */
async function resumeAndCheck(job: string, before: Map<string, string>, host?: string): Promise<void> {
  const config = json(path.join(job, "config.json"));
  const r = tmax(["eval", "--resume", job], host ? { DOCKER_HOST: host } : {});
  const { code } = await r.exited;
  assert.equal(code, 0, r.out());
  assert.match(r.out(), /k=1 · n=2 · job .* · resumed/, "the stored concurrency, not -n 1");
  assert.deepEqual(json(path.join(job, "config.json")), config, "the stored settings are unchanged");
  assert.deepEqual(finished(job), TRIALS, "every trial once");
  for (const [trial, id] of before) assert.equal(json(path.join(job, trial, "result.json")).id, id, `${trial} was finished before the fault and is kept, not run again`);
  for (const t of TRIALS) assert.equal(json(path.join(job, t, "result.json")).reward, 1);
  assert.deepEqual(await settledLeftovers(job, host), { containers: [], images: [] });
}

const ids = (job: string) => new Map(finished(job).map((t) => [t, json(path.join(job, t, "result.json")).id as string]));
/**
 * The job: settings beyond the defaults that the resume must keep (-n, --include, --timeout-multiplier, the verifier
 * isolation); `snapshot` (the default isolation) where the fault is to land in the verifier phase, else `shared`
 * (no snapshot commit: faster on a loaded machine).
 */
const start = (job: string, o: { host?: string; isolation?: "snapshot" | "shared" } = {}) =>
  tmax(["eval", "-d", DATASET, ...TASKS.flatMap((t) => ["--include", t]), "-a", "oracle", "-n", "2", "--timeout-multiplier", "2", "--verifier-isolation", o.isolation ?? "shared", "--job-dir", job], o.host ? { DOCKER_HOST: o.host } : {});

describe("fault table: eval on the example tasks", { skip: ENGINE_SKIP, concurrency: 1 }, () => {
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  before(async () => {
    // the example tasks with 2 s verifiers
    await cp(EXAMPLES, DATASET, { recursive: true });
    // hello-file finishes first; word-count is then in its verifier phase, for 10 s
    for (const [t, sec] of [["hello-file", 1], ["word-count", 10], ["fix-script", 1]] as const) {
      const file = path.join(DATASET, t, "tests", "test.sh");
      const text = await readFile(file, "utf8");
      await writeFile(file, text.replace(/^#!.*\n/, (shebang) => `${shebang}sleep ${sec}\n`));
    }
  });

  for (const [fault, code, isolation] of [
    ["SIGINT", 130, "snapshot"],
    ["SIGTERM", 143, "shared"],
    ["SIGHUP", 129, "shared"],
  ] as const) {
    test(`${fault}${isolation === "snapshot" ? " in the verifier phase" : ""}: exit ${code}, the resume hint, nothing left; the resume finishes the job`, async () => {
      const job = path.join(tmp, fault);
      const run = start(job, { isolation });
      await midJob(job, run, { verifier: isolation === "snapshot" });
      run.child.kill(fault);
      const exit = await run.exited;
      const before = ids(job);
      assert.equal(exit.code, code, run.out());
      assert.ok(run.out().includes(`tmax eval --resume ${job}`), run.out());
      assert.ok(before.size >= 1);
      assert.deepEqual(await settledLeftovers(job), { containers: [], images: [] });
      await resumeAndCheck(job, before);
    });
  }

  test("output gone (`| head`): exit 141, no stack trace, the hint on stderr, nothing left; the resume finishes the job", async () => {
    const job = path.join(tmp, "pipe");
    const run = start(job);
    // the reader goes away after the first line, as `head -1` does
    await new Promise<void>((resolve) => run.child.stdout!.once("data", () => resolve()));
    run.child.stdout!.destroy();
    const exit = await run.exited;
    const before = ids(job);
    assert.equal(exit.code, 141, run.out());
    assert.doesNotMatch(run.out(), /Error: write EPIPE|\n\s+at /, "no stack trace");
    assert.ok(run.out().includes(`tmax eval --resume ${job}`), run.out());
    assert.ok(before.size >= 1, run.out());
    assert.deepEqual(await settledLeftovers(job), { containers: [], images: [] });
    await resumeAndCheck(job, before);
  });

  test("kill -9 in the verifier phase: containers and the snapshot image are left; the resume removes them and finishes", async () => {
    const job = path.join(tmp, "KILL-resume");
    const run = start(job, { isolation: "snapshot" });
    await midJob(job, run, { verifier: true });
    run.child.kill("SIGKILL");
    assert.equal((await run.exited).signal, "SIGKILL");
    const before = ids(job);
    const left = leftovers(job);
    assert.ok(left.containers.length > 0 && left.images.length > 0, JSON.stringify(left));
    await resumeAndCheck(job, before);
  });

  test("kill -9 of the owner: `tmax sandbox prune` removes its containers and its snapshot images, not a live owner's", async () => {
    // what a killed verifier phase leaves (a container and its commit), owned by a process that is gone, and the same
    // owned by this live process
    const script = path.join(tmp, "owner.mjs");
    await writeFile(
      script,
      [
        `import { dockerBackend } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "src/sandbox/index.ts")).href)};`,
        `const sb = await dockerBackend().create({ image: "localhost/tmax-base:bookworm", labels: { "io.tmax.job-dir": ${JSON.stringify(path.join(tmp, "dead"))} } });`,
        "await sb.snapshot();",
        "console.log('READY');",
        "setInterval(() => {}, 1000);",
      ].join("\n"),
    );
    const dead = spawn(process.execPath, ["--import", "tsx", script], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => dead.stdout!.on("data", (d) => String(d).includes("READY") && resolve()));
    dead.kill("SIGKILL");
    await new Promise((r) => dead.once("exit", r));
    const byDir = (dir: string) => spawnSync("podman", ["ps", "-a", "--filter", `label=io.tmax.job-dir=${dir}`, "--format", "{{.ID}}"], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
    // a commit's image, and its intermediate layer image (listed with -a) which goes with it
    const imagesByDir = (dir: string, all = false) => snapshotImages(`io.tmax.job-dir=${dir}`, DOCKER_HOST, all);
    assert.equal(byDir(path.join(tmp, "dead")).length, 2);
    assert.equal(imagesByDir(path.join(tmp, "dead")).length, 1);
    const { dockerBackend } = await import("../../../src/sandbox/index.js");
    const live = await dockerBackend().create({ image: "localhost/tmax-base:bookworm", labels: { "io.tmax.job-dir": path.join(tmp, "live") } });
    const liveSnap = await live.snapshot!();
    try {
      const prune = tmax(["sandbox", "prune"]);
      assert.equal((await prune.exited).code, 0, prune.out());
      assert.match(prune.out(), /removed [1-9]\d* sandbox\(es\) and [1-9]\d* snapshot image\(s\) whose owner process is gone/);
      assert.deepEqual([byDir(path.join(tmp, "dead")), imagesByDir(path.join(tmp, "dead"), true)], [[], []]);
      assert.equal(imagesByDir(path.join(tmp, "live")).length, 1, "a live owner's snapshot image is kept");
    } finally {
      await liveSnap.remove();
      await live.remove();
    }
  });

  test("report A B --html on two jobs of one model (the SIGINT and SIGTERM jobs, both oracle): one series per job, never pooled", async () => {
    const [a, b] = [path.join(tmp, "SIGINT"), path.join(tmp, "SIGTERM")];
    const file = path.join(tmp, "r.html");
    const r = tmax(["report", a, b, "--html", file]);
    assert.equal((await r.exited).code, 0, r.out());
    const html = readFileSync(file, "utf8");
    const data = JSON.parse(/<script type="application\/json" id="report-data">(.*?)<\/script>/s.exec(html)![1]!);
    assert.deepEqual(data.models, ["oracle (SIGINT)", "oracle (SIGTERM)"]);
    assert.deepEqual(Object.keys(data.cells.tasks).sort(), ["oracle (SIGINT)", "oracle (SIGTERM)"]);
    for (const m of data.models) assert.equal(data.cells.tasks[m].trials, TRIALS.length, "each job's own trials");
    assert.deepEqual([...new Set(data.trials.map((t: { model: string; job: string }) => `${t.model}|${t.job}`))].sort(), ["oracle (SIGINT)|SIGINT", "oracle (SIGTERM)|SIGTERM"]);
  });

  test("engine restart mid-job: the in-flight trials are retried, none of the job's containers outlive it", async () => {
    // a private API service on its own socket (the shared one is never restarted)
    const socket = path.join(tmp, "podman.sock");
    const host = `unix://${socket}`;
    const service = () => spawn("podman", ["system", "service", "--time=0", host], { stdio: "ignore" });
    const up = async () => {
      for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
      await sleep(200);
    };
    let svc = service();
    after(() => svc.kill("SIGKILL"));
    await up();
    const job = path.join(tmp, "ENGINE");
    const run = start(job, { host });
    await midJob(job, run, { host });
    svc.kill("SIGKILL"); // the service dies with the trials' streams open
    await new Promise((r) => svc.once("exit", r));
    await sleep(1000);
    svc = service();
    await up();
    const exit = await run.exited;
    assert.equal(exit.code, 0, run.out());
    assert.deepEqual(finished(job), TRIALS);
    const result = json(path.join(job, "result.json"));
    assert.ok(result.stats.n_retries >= 1, `n_retries ${result.stats.n_retries}:\n${run.out()}`);
    assert.deepEqual(leftovers(job, host), { containers: [], images: [] }, "removed before the job ended");
    await resumeAndCheck(job, ids(job), host);
  });
});
