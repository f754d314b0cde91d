// `tmax rollout`: DPPO rollout steps with live group lines; `tmax rl …`: analysis, packing, Parquet export.
import path from "node:path";
import { createModelClient } from "../model/client.js";
import { preflightModel, requireTokenSupport } from "../model/preflight.js";
import { createTokenClient } from "../model/tokens.js";
import { checkGroupSize, firstFreeStep, runRollout } from "../jobs/rollout.js";
import { modelConfig, tokenClientConfig, trialSettings, type AgentCliOptions, type ModelCliOptions, type SandboxCliOptions } from "./options.js";
import { resolveDatasetArg } from "./datasets.js";
import { createLiveView } from "./liveView.js";
import { preflightEngine } from "./preflight.js";
import { bold, dim, green, isQuiet, yellow } from "./render.js";
import { stripControl } from "../util/terminal.js";

export interface RolloutCliOptions extends ModelCliOptions, AgentCliOptions, SandboxCliOptions {
  dataset: string;
  registry?: string;
  out?: string;
  runName: string;
  steps: number;
  startStep?: number;
  continue?: boolean;
  tasksPerStep: number;
  samples: number;
  concurrency: number;
  maxGroupsPerStep?: number;
  seed: number;
  maxStaleness: number;
  policyVersionFile?: string;
  shardSize: number;
  learnerBatch: boolean;
  pack?: number;
  timeoutMultiplier: number;
  include?: string[];
  exclude?: string[];
  agentTimeout?: boolean;
  cpus?: number;
  memoryMb?: number;
}

export async function rolloutCommand(o: RolloutCliOptions): Promise<number> {
  // cheap refusals first, before the model is contacted
  checkGroupSize(o.samples);
  const outDir = path.resolve(o.out ?? path.join("rollouts", new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)));
  await firstFreeStep(outDir, { startStep: o.startStep, continue: o.continue });
  const config = modelConfig({ ...o, profile: "train", logprobs: true }, { logprobs: true, tokenIds: true });
  const client = createModelClient(config);
  await preflightModel(client);
  await requireTokenSupport(createTokenClient(tokenClientConfig(config)));
  o = { ...o, dataset: (await resolveDatasetArg(o.dataset, o.registry)).dir };
  await preflightEngine(o.backend, o.unsafe);
  const view = createLiveView({ unit: "samples" });
  // at least U × G samples per step (more when all-equal groups are replaced)
  const progress = { total: o.steps * o.tasksPerStep * o.samples, done: 0, running: 0, errors: 0, infraErrors: 0, rewardSum: 0 };
  if (!isQuiet()) console.log(`${bold("tmax rollout")} ${dim(`${o.dataset} · ${o.tasksPerStep} tasks × ${o.samples} samples · ${o.steps} step(s) · n=${o.concurrency} · ${outDir}`)}`);
  const summaries = await runRollout({
    datasetDir: o.dataset,
    outDir,
    runName: o.runName,
    steps: o.steps,
    startStep: o.startStep,
    continue: o.continue,
    onNotice: (line) => view.log(yellow(stripControl(line))),
    uniqueTasks: o.tasksPerStep,
    samplesPerTask: o.samples,
    concurrency: o.concurrency,
    maxGroupsPerStep: o.maxGroupsPerStep ?? 4 * o.tasksPerStep,
    model: config,
    ...trialSettings(o),
    // training had no episode wall clock, 4 GB and no CPU cap; --agent-timeout/--cpus/--memory-mb change that
    agentTimeout: o.agentTimeout ? "task" : "none",
    ...(o.cpus !== undefined || o.memoryMb !== undefined ? { resources: { cpus: o.cpus, memoryMb: o.memoryMb ?? 4096 } } : {}),
    filters: { include: o.include, exclude: o.exclude },
    seed: o.seed,
    maxStaleness: o.maxStaleness,
    policyVersionFile: o.policyVersionFile,
    shardSize: o.shardSize,
    learnerBatch: o.learnerBatch,
    packTokens: o.pack,
    onTrial: view.trial,
    onEvent: view.agent,
    onSample: (s) => {
      progress.done++;
      progress.total = Math.max(progress.total, progress.done);
      progress.rewardSum += s.reward;
      if (s.infra) {
        progress.errors++;
        progress.infraErrors++;
      }
      view.progress(progress);
    },
    onGroup: (g) => view.log(`step ${g.step} · ${g.task} · rewards ${g.rewards.join(" ")} · ${g.kept ? green("kept") : yellow("dropped (all equal)")}`),
  });
  view.done();
  for (const s of summaries) {
    const cap = s.cap_reached ? yellow(` · cap of ${s.groups_drawn} groups reached with ${s.groups_kept}/${o.tasksPerStep} informative`) : "";
    console.log(
      `${bold(`step ${s.step}`)}: ${s.groups_kept} groups kept of ${s.groups_drawn} drawn (${s.groups_dropped_uniform} all-equal, ${s.groups_dropped_stale} stale) · ${s.samples} samples · mean reward ${s.mean_reward?.toFixed(3) ?? "-"}${cap}`,
    );
  }
  console.log(dim(`records: ${outDir}/${o.runName}_rollouts_*.jsonl   steps: ${outDir}/steps/   learner batches: ${outDir}/learner/`));
  return 0;
}
