#!/usr/bin/env node
// tmax: run, evaluate and collect RL data for Tmax terminal agents in real sandboxes.
import { stripControl } from "../util/terminal.js";
import path from "node:path";
import { Command, CommanderError, Option } from "commander";
import { cleanupInstalled, FAULT_EXIT_CODES, installSignalCleanup, stopSignal, whileRunning, type Fault } from "../sandbox/cleanup.js";
import { TMAX_VERSION } from "../util/version.js";
import { redactSecrets } from "../util/redact.js";
import { addAgentOptions, addModelOptions, addSandboxOptions, collect, needsEngineDiscovery, toInt } from "./options.js";
import { errColor, setOutputFlags } from "./render.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { registerCompletion } from "./completion.js";
import { registerDatasets } from "./datasets.js";
import { registerExplore } from "./explore.js";
import { registerReport } from "./report.js";
import { registerRl } from "./rl.js";
import { registerSandbox } from "./sandbox.js";
import { registerTasks } from "./tasks.js";

const program = new Command("tmax")
  .description("Run, evaluate and collect RL data for Tmax terminal agents (or any OpenAI-compatible model) in real sandboxes")
  .version(TMAX_VERSION)
  // global: recognised before or after the command (`tmax -q eval …`, `tmax eval … -q`)
  .option("-q, --quiet", "no progress, steps or notices: only the final result lines and errors")
  .option("--no-color", "no colour on any stream (also NO_COLOR=1; FORCE_COLOR=1 forces it on a pipe)")
  .configureHelp({ showGlobalOptions: true })
  .showHelpAfterError("(run with --help for usage)")
  .exitOverride(); // commander's usage errors are thrown to the catch below (exit 2), not exited with 1

// Errors thrown before a command's action starts (an option value its parser refused) are usage errors too.
let actionStarted = false;
const applyGlobalOptions = () => {
  const g = program.opts<{ quiet?: boolean; color?: boolean }>();
  setOutputFlags({ quiet: g.quiet, noColor: g.color === false });
};
program.hook("preAction", () => {
  applyGlobalOptions();
  actionStarted = true;
});

// Commands that talk to the container engine find it first (DOCKER_HOST, docker context, Docker's and podman's
// sockets: src/sandbox/docker/discover.ts); DOCKER_HOST set is used as it is, unasked.
program.hook("preAction", async (_program, action) => {
  if (!needsEngineDiscovery(action.name(), action.opts(), process.env)) return;
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

registerReport(program);
registerExplore(program);

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

registerRl(program);
(await import("./traces.js")).registerTraces(program);
registerDatasets(program);
registerTasks(program);
registerSandbox(program);
registerCompletion(program, TMAX_VERSION);

// every command, however it was registered, reports usage errors the same way
const everyCommand = (c: Command): Command[] => [c, ...c.commands.flatMap(everyCommand)];
for (const c of everyCommand(program)) c.exitOverride();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  applyGlobalOptions(); // --no-color counts for an error found while parsing too
  process.exitCode = exitCodeFor(e, actionStarted);
}

/** Prints the error in one line (plus its `lines`, one per thing) and returns the exit code (docs/cli.md). */
function exitCodeFor(e: unknown, started: boolean): number {
  // commander printed its own message (or the help, or the version) already
  if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  const message = e instanceof Error ? e.message : String(e);
  console.error(errColor.red(`tmax: error: ${stripControl(redactSecrets(message.split("\n")[0]))}`));
  // an error about several things (e.g. invalid tasks) carries one line per thing
  const lines = (e as { lines?: unknown }).lines;
  if (Array.isArray(lines)) for (const line of lines) console.error(stripControl(redactSecrets(String(line))));
  if (process.env.TMAX_DEBUG && e instanceof Error) console.error(e.stack);
  return e instanceof UsageError || !started ? EXIT.usage : EXIT.failure;
}
