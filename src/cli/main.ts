#!/usr/bin/env node
// tmax: run, evaluate and collect RL data for Tmax terminal agents in real sandboxes.
import { stripControl } from "../util/terminal.js";
import path from "node:path";
import { Command, Option } from "commander";
import { cleanupInstalled, FAULT_EXIT_CODES, installSignalCleanup, pruneLeftovers, stopSignal, whileRunning, type Fault } from "../sandbox/cleanup.js";
import { createBackend } from "../sandbox/index.js";
import { TMAX_VERSION } from "../util/version.js";
import { redactSecrets } from "../util/redact.js";
import { addAgentOptions, addModelOptions, addSandboxOptions, collect, toInt } from "./options.js";
import { red } from "./render.js";

const program = new Command("tmax")
  .description("Run, evaluate and collect RL data for Tmax terminal agents (or any OpenAI-compatible model) in real sandboxes")
  .version(TMAX_VERSION)
  .showHelpAfterError("(run with --help for usage)");

// Commands that talk to the container engine find it first (DOCKER_HOST, docker context, Docker's and podman's
// sockets: src/sandbox/docker/discover.ts); DOCKER_HOST set is used as it is, unasked.
const ENGINE_COMMANDS = new Set(["run", "eval", "rollout", "serve", "prune", "setup"]);
program.hook("preAction", async (_program, action) => {
  if (!ENGINE_COMMANDS.has(action.name()) || process.env.DOCKER_HOST?.trim()) return;
  const { discoverEngine } = await import("../sandbox/docker/discover.js");
  const { useEngineHost } = await import("../sandbox/docker/engine.js");
  useEngineHost((await discoverEngine()).engine?.host);
});


/**
 * A command that makes sandboxes: a signal (SIGINT, SIGTERM, SIGHUP) or its output gone (EPIPE) stops it cleanly —
 * what it finished is kept, its sandboxes are removed — and the process exits with the fault's code.
 */
async function stoppable(work: () => Promise<number>): Promise<void> {
  installSignalCleanup();
  const code = await whileRunning(work());
  const stop = stopSignal();
  process.exitCode = stop.aborted ? FAULT_EXIT_CODES[stop.reason as Fault] : code;
}

// Any other command whose reader goes away (`tmax report … | head`) ends quietly with SIGPIPE's code.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (cleanupInstalled()) return; // the command's own cleanup handles it
    if (err.code === "EPIPE" || err.code === "EIO") process.exit(FAULT_EXIT_CODES.EPIPE);
    throw err;
  });
}

program
  .command("setup")
  .description("build the base images through the engine tmax finds (pull debian:bookworm-slim, else mmdebstrap as root); with no engine, as root on Debian: install podman")
  .option("--debian-image <ref>", "the Debian image to pull for tmax-base (default $TMAX_SETUP_DEBIAN_IMAGE, else debian:bookworm-slim)")
  .option("--verbose", "show the output of the image builds")
  .action(async (o) => {
    const { setupCommand } = await import("./setup.js");
    process.exitCode = await setupCommand(o);
  });

addModelOptions(program.command("doctor").description("check the model endpoint and the sandbox engine; one line per finding, with the fix"))
  .option("--skip-model", "only check the sandbox engine")
  .option("--skip-sandbox", "only check the model endpoint")
  .option("--json", "print the findings (and the engine found, every candidate tried) as JSON")
  .addOption(new Option("--backend <name>", "sandbox backend to check").choices(["docker", "daytona"]).default("docker"))
  .option("--image <ref>", "daytona: check that this snapshot is active or this image can be pulled")
  .option("--task <dir>", "daytona: check the snapshot or image this task's sandboxes would use")
  .option("--snapshot-template <t>", "daytona: snapshot name template, {name} = task name (default $TMAX_DAYTONA_SNAPSHOT_TEMPLATE)")
  .addOption(new Option("--profile <p>", "check for this profile (context length, train token endpoints)").choices(["eval", "train"]).default("eval"))
  .action(async (o) => {
    const { doctorCommand } = await import("./doctor.js");
    process.exitCode = await doctorCommand(o);
  });

addSandboxOptions(
  addAgentOptions(
    addModelOptions(
      program
        .command("run")
        .description("let the model solve one task in a fresh sandbox: a task directory (verified afterwards) or an instruction text")
        .requiredOption("--task <dir|text>", "a task directory (Harbor or TB1) or an instruction in quotes")
        .option("--image <image>", "image for an instruction text", "localhost/tmax-base:bookworm")
        .option("--out <dir>", "where the trajectory goes (default runs/<time>-<task>)"),
    ),
  ),
).action(async (o) => {
  const { runCommand } = await import("./run.js");
  await stoppable(() => runCommand(o));
});

(await import("./evalCli.js")).registerEval(program, stoppable); // eval (= harbor run), jobs start|resume|init

program
  .command("report <job-dirs...>")
  .description("scores of job dirs: per-run means, mean, sample std and SEM, pass@k, per-task table, errors; several dirs side by side")
  .option("--json", "print JSON instead of markdown")
  .option("--html <file>", "also write a self-contained HTML report with plots")
  .option("--label <name>", "row label of the next job dir in the model card (repeatable, in the order of the dirs)", collect)
  .option("--diff", "two job dirs task by task: which tasks flipped solved→failed and back")
  .action(async (dirs: string[], o: { json?: boolean; html?: string; label?: string[]; diff?: boolean }) => {
    const { reportJob, renderMarkdown, diffJobs, renderDiffMarkdown, reportJson, modelCard } = await import("../results/report.js");
    if (o.label && o.label.length > dirs.length) throw new Error(`${o.label.length} --label for ${dirs.length} job dir(s)`);
    if (o.diff && dirs.length !== 2) throw new Error(`--diff compares two job dirs (got ${dirs.length})`);
    const reports = dirs.map((d, i) => reportJob(d, o.label?.[i]));
    const diff = o.diff ? diffJobs(reports[0]!, reports[1]!) : undefined;
    if (o.json) console.log(JSON.stringify(reportJson(reports, diff), null, 2));
    else console.log(diff ? renderDiffMarkdown(diff, reports[0]!, reports[1]!) : renderMarkdown(reports));
    if (o.html) {
      const { writeReportHtml } = await import("../explore/report.js");
      await writeReportHtml(dirs, o.html, { card: modelCard(reports), diff });
      console.error(`html report: ${path.resolve(o.html)}`);
    }
  });

program
  .command("explore <dir>")
  .description("local web UI over job dirs and rollout shards (served on 127.0.0.1)")
  .option("--port <port>", "port", toInt, 8080)
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .action(async (dir: string, o: { port: number; host: string }) => {
    const { startExplorer } = await import("../explore/server.js");
    const server = await startExplorer({ dir: path.resolve(dir), port: o.port, host: o.host });
    console.log(`tmax explore: ${server.url}  (Ctrl-C to stop)`);
    const stop = () => void server.close().then(() => process.exit(0));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });

addSandboxOptions(
  addAgentOptions(
    addModelOptions(
      program
        .command("rollout")
        .description("DPPO rollout steps: U tasks × G train-profile samples with logprobs, verifier rewards, centered advantages, records")
        .requiredOption("-d, --dataset <dir|name@version>", "a directory of tasks, or a registry dataset like terminal-bench@2.0")
        .option("--registry <url|file>", "dataset registry in Harbor's format (env TMAX_REGISTRY; default Harbor's public registry)")
        .option("--out <dir>", "where records, steps and learner batches go (default rollouts/<time>)")
        .option("--run-name <name>", "prefix of the record shards", "tmax")
        .option("--steps <n>", "rollout steps", toInt, 1)
        .option("--start-step <n>", "number of the first step (default 1, or the step after the last one with --continue)", toInt)
        .option("--continue", "add steps to the non-empty --out of an earlier rollout (refused otherwise)")
        .option("-U, --tasks-per-step <n>", "informative groups (unique tasks) per step", toInt, 8)
        .option("-G, --samples <n>", "samples per task", toInt, 32)
        .option("-n, --concurrency <n>", "episodes at a time", toInt, 4)
        .option("--max-groups-per-step <n>", "cap on groups drawn per step while looking for informative ones (default 4 × U)", toInt)
        .option("--seed <n>", "task sampling seed; sample i of a group uses vLLM seed seed+i", toInt, 0)
        .option("--max-staleness <n>", "drop samples more than this many policy versions behind", toInt, 4)
        .option("--policy-version-file <file>", "file the learner rewrites with its current policy version (an integer)")
        .option("--shard-size <n>", "records per JSONL shard", toInt, 10_000)
        .option("--no-learner-batch", "do not write learner/ batches")
        .option("--pack <tokens>", "pack learner batches into sequences of at most this many tokens (e.g. 67584)", toInt)
        .option("--timeout-multiplier <x>", "scale every task timeout", Number.parseFloat, 1)
        .option("--include <name|glob>", "only these tasks (repeatable)", collect)
        .option("--exclude <name|glob>", "skip these tasks (repeatable)", collect)
        .option("--agent-timeout", "apply the task's agent timeout (training had no episode wall clock)")
        .option("--cpus <n>", "CPU cap per container (default: none, as in training)", Number.parseFloat)
        .option("--memory-mb <n>", "memory per container in MB (default 4096, as in training)", toInt),
    ),
  ),
).action(async (o) => {
  installSignalCleanup(); // a fault removes the rollout's sandboxes at once (records are written per group)
  const { rolloutCommand } = await import("./rollout.js");
  process.exitCode = await rolloutCommand(o);
});

(await import("./serve.js")).serveCommandOptions(program.command("serve").description("serve a dataset's tasks as an RL environment on OpenEnv's protocol (WebSocket /ws, HTTP); see docs/serve.md")).action(async (o) => { process.exitCode = await (await import("./serve.js")).serveCommand(o); });

const rl = program.command("rl").description("work with rollout records");
rl.command("analyze <dir>")
  .description("DPPO statistics per step (masked fractions by advantage sign, mean |π−μ|, ratio, loss) from rollouts + trainer logprobs")
  .option("--trainer-dir <dir>", "where the *_trainer_logprobs_step*.jsonl files are (default: <dir>)")
  .option("--run <name>", "only this run's files")
  .option("--delta <d>", "trust-region threshold δ", Number.parseFloat, 0.1)
  .option("--json", "print JSON")
  .action(async (dir: string, o: { trainerDir?: string; run?: string; delta: number; json?: boolean }) => {
    const { analyzeRun, formatStepTable } = await import("../rl/analyze.js");
    const steps = await analyzeRun(path.resolve(dir), { trainerDir: o.trainerDir, run: o.run, delta: o.delta });
    if (steps.length === 0) throw new Error(`no trainer logprobs found for ${dir}`);
    console.log(o.json ? JSON.stringify(steps.map(({ samples, ...rest }) => rest), null, 2) : formatStepTable(steps));
  });
rl.command("pack <dir>")
  .description("first-fit-decreasing packing of the records' sequences: packs, rejected samples, padding waste")
  .option("--max-tokens <n>", "tokens per pack", toInt, 67_584)
  .action(async (dir: string, o: { maxTokens: number }) => {
    const { readRollouts } = await import("../rl/records.js");
    const { packSequences } = await import("../rl/packing.js");
    const lengths: number[] = [];
    for await (const r of readRollouts(path.resolve(dir))) lengths.push(r.prompt_tokens.length + r.response_tokens.length);
    const p = packSequences(lengths, { maxTokens: o.maxTokens });
    console.log(`${lengths.length} samples → ${p.packs.length} packs of ≤ ${o.maxTokens} tokens; padding ${p.waste.padding} tokens (${(100 * p.waste.paddingFraction).toFixed(2)}%); ${p.rejected.length} sample(s) longer than a pack`);
  });
rl.command("batch <dir>")
  .description("write one step's learner batch (docs/learner-handoff.md) from rollout records")
  .requiredOption("--step <n>", "the rollout step", toInt)
  .option("--out <dir>", "where the batch file goes (default <dir>/learner)")
  .option("--pack <tokens>", "pack samples into sequences of at most this many tokens (e.g. 67584)", toInt)
  .option("--run <name>", "only this run's records; also the file name prefix")
  .action(async (dir: string, o: { step: number; out?: string; pack?: number; run?: string }) => {
    const { readRollouts, writeLearnerBatch } = await import("../rl/records.js");
    const records = [];
    for await (const r of readRollouts(path.resolve(dir), { run: o.run })) if (r.step === o.step) records.push(r);
    if (records.length === 0) throw new Error(`no records of step ${o.step} in ${dir}`);
    const out = await writeLearnerBatch(path.resolve(o.out ?? path.join(dir, "learner")), o.step, records, { run: o.run, ...(o.pack ? { pack: true, maxTokens: o.pack } : {}) });
    const rejected = out.packing?.rejected.length ?? 0;
    console.log(`wrote ${out.file}: ${out.samples} samples, ${out.tokens} tokens, ${out.lines} lines${out.packing ? `, padding ${(100 * out.packing.waste.paddingFraction).toFixed(2)}%` : ""}${rejected ? `, ${rejected} sample(s) longer than a pack left out` : ""}`);
  });
rl.command("parquet <dir>")
  .description("export rollout records to one Parquet file")
  .requiredOption("--out <file>", "the .parquet file to write")
  .action(async (dir: string, o: { out: string }) => {
    const { readRollouts } = await import("../rl/records.js");
    const { exportRolloutsToParquet } = await import("../rl/parquet.js");
    await exportRolloutsToParquet(readRollouts(path.resolve(dir)), path.resolve(o.out));
    console.log(`wrote ${path.resolve(o.out)}`);
  });

(await import("./traces.js")).registerTraces(program);
const datasets = program.command("datasets").description("datasets from a registry in Harbor's format, cached under ~/.cache/tmax (or $XDG_CACHE_HOME/tmax)");
datasets
  .command("list")
  .description("datasets of the registry")
  .option("--registry <url|file>", "registry (env TMAX_REGISTRY; default Harbor's public registry)")
  .action(async (o: { registry?: string }) => {
    const { datasetsList } = await import("./datasets.js");
    process.exitCode = await datasetsList(o);
  });
datasets
  .command("pull <name@version>")
  .description("fetch a dataset's tasks (git, pinned commit) into the cache")
  .option("--registry <url|file>", "registry (env TMAX_REGISTRY; default Harbor's public registry)")
  .option("--refresh", "fetch again even when cached")
  .action(async (ref: string, o: { registry?: string; refresh?: boolean }) => {
    const { datasetsPull } = await import("./datasets.js");
    const d = await datasetsPull(ref, o);
    console.log(stripControl(`${d.name}@${d.version}${d.commit ? ` commit ${d.commit}` : ""} → ${d.dir}`));
  });
datasets
  .command("path <name@version>")
  .description("print the local dir of a dataset (fetching it when missing)")
  .option("--registry <url|file>", "registry (env TMAX_REGISTRY; default Harbor's public registry)")
  .action(async (ref: string, o: { registry?: string }) => {
    const { datasetsPull } = await import("./datasets.js");
    console.log(stripControl((await datasetsPull(ref, o)).dir));
  });

const tasks = program.command("tasks").description("inspect task directories");
tasks
  .command("check <dir>")
  .description("validate a task or a dataset: every problem with its file and field")
  .option("--isolation", "also run each task's oracle under every verifier isolation (shared, snapshot, kill) and report, one line each, the tasks whose honest outcome differs (cached; rollout then gives them Harbor's semantics)", false)
  .action(async (dir: string, o: { isolation?: boolean }) => {
    if (o.isolation) {
      const { checkIsolation } = await import("../jobs/isolationCheck.js");
      const checks = await checkIsolation(path.resolve(dir), { onLine: (line) => console.log(stripControl(line)) });
      const differ = checks.filter((c) => c.differs).length;
      console.log(`${checks.length} task(s) checked: ${differ ? `${differ} whose honest outcome depends on the verifier isolation` : "the same honest outcome in every isolation"}`);
      process.exitCode = 0;
      return;
    }
    const { checkDataset, formatProblems } = await import("../tasks/check.js");
    const problems = await checkDataset(path.resolve(dir));
    const errors = problems.filter((p) => p.severity === "error");
    if (problems.length) console.log(stripControl(formatProblems(problems)));
    console.log(errors.length ? red(`${errors.length} error(s)`) : `no errors${problems.length ? ` (${problems.length} warning(s))` : ""}`);
    process.exitCode = errors.length ? 1 : 0;
  });
tasks
  .command("list <dir>")
  .description("list the tasks of a dataset")
  .action(async (dir: string) => {
    const { loadDataset } = await import("../tasks/load.js");
    const { tasks: list, problems } = await loadDataset(path.resolve(dir));
    // task names (dir names), difficulty and category are the task author's text
    for (const t of list) console.log(stripControl(`${t.name}\t${t.format}\t${t.config.difficulty ?? "-"}\t${t.config.category ?? "-"}`));
    for (const p of problems.filter((x) => x.severity === "error")) console.log(red(stripControl(`${p.task}: ${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`)));
  });

const sandboxCmd = program.command("sandbox").description("manage tmax's containers and the host guard");
sandboxCmd
  .command("guard")
  .description("install (or --check, --remove) the firewall chain that stops bridge containers from opening connections to this host")
  .option("--check", "only report whether the guard is in place (exit 1 when not)")
  .option("--remove", "remove the guard")
  .action(async (o: { check?: boolean; remove?: boolean }) => {
    const { hostGuardStatus, hostInterfaces, installHostGuard, removeHostGuard } = await import("../sandbox/docker/hostGuard.js");
    const { discoverEngine } = await import("../sandbox/docker/discover.js");
    if (o.check && o.remove) throw new Error("--check and --remove exclude each other");
    // podman's bridges, and Docker Engine's when it is the engine found or runs on this host
    const ifaces = await hostInterfaces(process.env, (await discoverEngine()).engine?.kind);
    if (o.remove) await removeHostGuard();
    else if (!o.check) await installHostGuard(ifaces);
    const status = await hostGuardStatus(ifaces);
    console.log(`host guard: ${status.installed ? "installed" : "not installed"} (${status.detail})`);
    if (!o.remove && !status.installed) process.exitCode = 1;
  });
sandboxCmd
  .command("prune")
  .description("remove tmax containers and verifier snapshot images whose owning process is gone (e.g. after kill -9); others' running trials are kept")
  .option("--job <dir|id>", "every container of this job (its dir or its id)")
  .option("--all", "every tmax container on the engine, running trials of other processes and users included")
  .addOption(new Option("--backend <name>", "where to look").choices(["docker", "daytona"]).default("docker"))
  .action(async (o: { job?: string; all?: boolean; backend: "docker" | "daytona" }) => {
    const { resolveJobRef } = await import("../jobs/identity.js");
    if (o.job && o.all) throw new Error("--job and --all exclude each other");
    const filter = o.job ? { job: resolveJobRef(o.job) } : o.all ? { all: true } : {};
    const { containers, images } = await pruneLeftovers(createBackend(o.backend, {}), filter);
    const what = o.job ? `of job ${filter.job}` : o.all ? "(all)" : "whose owner process is gone";
    console.log(`removed ${containers} sandbox(es) and ${images} snapshot image(s) ${what}`);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const message = e instanceof Error ? e.message : String(e);
  console.error(red(`tmax: error: ${stripControl(redactSecrets(message.split("\n")[0]))}`));
  // an error about several things (e.g. invalid tasks) carries one line per thing
  const lines = (e as { lines?: unknown }).lines;
  if (Array.isArray(lines)) for (const line of lines) console.error(stripControl(redactSecrets(String(line))));
  if (process.env.TMAX_DEBUG && e instanceof Error) console.error(e.stack);
  process.exitCode = 1;
}
