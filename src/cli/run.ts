// `tmax run`: one episode, on a task directory (with its verifier) or on an instruction text.
import { stripControl } from "../util/terminal.js";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { ensureJobId } from "../jobs/identity.js";
import path from "node:path";
import { environmentPrinter } from "./eval.js";
import { runEpisode } from "../agent/chatProtocol.js";
import { runTokenEpisode } from "../agent/tokenProtocol.js";
import { createTokenClient } from "../model/tokens.js";
import { resolvePrompts } from "../agent/promptFile.js";
import { runTrial, type EnvironmentEvent } from "../trial/trial.js";
import { createModelClient } from "../model/client.js";
import { preflightModel, requireTrainServer } from "../model/preflight.js";
import { createBackend, JOB_DIR_LABEL, JOB_ID_LABEL } from "../sandbox/index.js";
import { loadTask } from "../tasks/load.js";
import { writeJsonAtomic } from "../util/fs.js";
import { agentLimits, modelConfig, tokenClientConfig, TRAIN_SEED, trialSettings, type AgentCliOptions, type ModelCliOptions, type SandboxCliOptions } from "./options.js";
import { preflightEngine } from "./preflight.js";
import { stopSignal } from "../sandbox/cleanup.js";
import { bold, dim, green, isQuiet, red, stepPrinter } from "./render.js";

export interface RunOptions extends ModelCliOptions, AgentCliOptions, SandboxCliOptions {
  task: string;
  image?: string;
  out?: string;
  verify: boolean;
}

const stamp = () => new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");

/** `--task` that looks like a path (no spaces; a slash, or a leading `.`/`~`) but is not a task dir is a typo, not an instruction. */
export function checkTaskArgument(task: string): void {
  if (existsSync(task)) {
    if (!statSync(task).isDirectory()) throw new Error(`--task ${task}: is a file, not a task directory`);
    return;
  }
  const pathLike = !/\s/.test(task) && (task.includes("/") || task.startsWith(".") || task.startsWith("~"));
  if (pathLike) throw new Error(`--task ${task}: no such task directory (to send it to the model as an instruction, write a sentence)`);
}

/**
 * The run's dir: refused when it already holds anything (a run is never written over another, as eval refuses a
 * used job dir); else created with the run's id (.tmax-job-id), the label of its containers, so that
 * `tmax sandbox prune --job <dir>` finds them.
 */
async function claimOutDir(outDir: string): Promise<string> {
  if (existsSync(outDir) && (!statSync(outDir).isDirectory() || readdirSync(outDir).length > 0)) {
    throw new Error(`--out ${outDir} is already used (it holds an earlier run or other files); choose another --out`);
  }
  await mkdir(outDir, { recursive: true });
  return ensureJobId(outDir);
}

export async function runCommand(o: RunOptions): Promise<number> {
  checkTaskArgument(o.task);
  const prompts = resolvePrompts(o); // a bad prompt file fails before anything starts
  const model = createModelClient(modelConfig(o));
  await preflightModel(model);
  await preflightEngine(o.backend, o.unsafe);
  // train is token-in/token-out (vLLM /tokenize + /v1/completions); eval keeps chat completions
  const tokens = o.profile === "train" ? createTokenClient(tokenClientConfig(model.config)) : undefined;
  if (tokens) await requireTrainServer(tokens);
  const backend = createBackend(o.backend, { unsafe: o.unsafe });
  const limits = agentLimits(o);
  const print = stepPrinter();
  const isTaskDir = existsSync(o.task) && statSync(o.task).isDirectory();

  if (isTaskDir) {
    const task = await loadTask(path.resolve(o.task));
    const outDir = path.resolve(o.out ?? path.join("runs", `${stamp()}-${task.name}`));
    const jobId = await claimOutDir(outDir);
    if (!isQuiet()) console.log(`${bold("tmax run")} ${task.name} ${dim(`· ${o.model} @ ${o.baseUrl} · profile ${o.profile}`)}`);
    const result = await runTrial({
      ...trialSettings(o), // limits, prompts, image map, network, pull, --pass-env, integrity, verifier isolation
      task,
      attempt: 0,
      trialDir: path.join(outDir, `${task.name}__0`),
      jobName: path.basename(outDir),
      jobId,
      agent: "tmax",
      backend,
      model,
      profile: o.profile,
      tokens,
      seed: TRAIN_SEED,
      signal: stopSignal(), // a fault stops the episode; the trial is still written
      onEvent: print,
      onEnvironment: ((p) => (e: EnvironmentEvent) => p(task.name, e))(environmentPrinter((l) => isQuiet() || console.log(l))),
    });
    const err = result.exception_info;
    if (err) console.log(`${red(stripControl(err.exception_type))}: ${stripControl(err.exception_message)}`);
    const reward = result.verifier_result ? result.reward : null;
    console.log(`reward: ${reward === null ? red("none (verifier failed)") : reward >= 1 ? green(String(reward)) : String(reward)}`);
    console.log(dim(`trial: ${path.join(outDir, `${task.name}__0`)}`));
    return err && (!result.agent_result || err.infrastructure) ? 1 : 0;
  }

  // An instruction text: run it in a plain image, no verifier.
  const image = o.image ?? "localhost/tmax-base:bookworm";
  const outDir = path.resolve(o.out ?? path.join("runs", `${stamp()}-adhoc`));
  const jobId = await claimOutDir(outDir);
  if (!isQuiet()) console.log(`${bold("tmax run")} ${dim(`· ${image} · ${o.model} @ ${o.baseUrl} · profile ${o.profile}`)}`);
  const network = o.network === "task" ? "none" : o.network;
  const sandbox = await backend.create({ image, network, name: "run", labels: { [JOB_ID_LABEL]: jobId, [JOB_DIR_LABEL]: outDir } });
  try {
    const trajectory = tokens
      ? (await runTokenEpisode({ taskName: "adhoc", instruction: o.task, tokens, sandbox, limits, prompts, seed: TRAIN_SEED, startDir: "/app", signal: stopSignal(), onEvent: print })).trajectory
      : await runEpisode({ taskName: "adhoc", instruction: o.task, model, sandbox, profile: o.profile, limits, prompts, signal: stopSignal(), onEvent: print });
    const file = path.join(outDir, "trajectory.json");
    await writeJsonAtomic(file, trajectory);
    console.log(dim(`trajectory: ${file}`));
    return trajectory.exitStatus === "error" ? 1 : 0;
  } finally {
    await sandbox.remove();
  }
}
