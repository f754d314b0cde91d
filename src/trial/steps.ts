// Multi-step trials (Harbor's [[steps]]): in one environment, for each step in order, the agent gets the step's
// instruction (a fresh episode; files persist between steps), then the step's verifier runs and its reward is
// recorded. A step whose rewards miss its min_reward ends the trial early. The trial reward follows
// multi_step_reward_strategy: per-key mean over the steps that produced rewards, or the last step's rewards.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Sandbox } from "../sandbox/types.js";
import { aggregateStepRewards, meetsMinReward } from "../tasks/steps.js";
import type { Task, TaskStep } from "../tasks/types.js";
import { rewardOf } from "../results/reward.js";
import type { TrialResult } from "../results/schema.js";
import type { TamperReport } from "./tamper.js";
import { exceptionInfo } from "./errors.js";
import { clampUnit } from "./verifier.js";

type StepResult = NonNullable<TrialResult["step_results"]>[number];

/** What the steps read of a trial's input (trial.ts passes its TrialInput through to runAgent). */
export interface StepInput {
  task: Task;
  trialDir: string;
  passEnv?: string[];
  signal?: AbortSignal;
  /** Harbor's --disable-verification: steps run one after another, none verified. */
  disableVerification?: boolean;
}

export interface StepPhases<I extends StepInput = StepInput> {
  runAgent(input: I, sandbox: Sandbox, result: TrialResult, mult: number): Promise<void>;
  /**
   * The step's verifier: its raw rewards, the reward it scores (clamped; 0 when forged or flagged under
   * strict) and its tamper report. A failure may carry the report as `tamper` on the error.
   */
  verify(
    task: Task,
    sandbox: Sandbox,
    trialDir: string,
    mult: number,
    signal?: AbortSignal,
    passEnv?: string[],
  ): Promise<{ rewards: Record<string, number>; reward: number; scored: Record<string, number>; tamper?: TamperReport }>;
  fail(e: unknown): void;
}

/** The task as one step sees it: its instruction, tests, solution and timeouts. */
export function stepTask(task: Task, step: TaskStep): Task {
  return {
    ...task,
    instruction: step.instruction,
    testsDir: step.testsDir,
    ...(step.solutionDir ? { solutionDir: step.solutionDir } : { solutionDir: undefined }),
    config: { ...task.config, agentTimeoutSec: step.agentTimeoutSec, verifierTimeoutSec: step.verifierTimeoutSec, ...(step.verifierEnv ? { verifierEnv: step.verifierEnv } : {}) },
    steps: undefined,
  };
}

export async function runSteps<I extends StepInput>(input: I, sandbox: Sandbox, result: TrialResult, mult: number, phases: StepPhases<I>): Promise<void> {
  const task = input.task;
  const steps: StepResult[] = [];
  result.step_results = steps;
  /** Per step, the rewards it scores: clamped to [0, 1], all 0 when its verifier refused or zeroed them. */
  const scored: (Record<string, number> | null)[] = [];
  const agentStarted = new Date().toISOString();
  const totals = { n_input_tokens: 0, n_output_tokens: 0, n_steps: 0 };
  for (const step of task.steps!) {
    if (input.signal?.aborted) break;
    const t = stepTask(task, step);
    const stepDir = path.join(input.trialDir, "steps", step.name);
    await mkdir(path.join(stepDir, "agent"), { recursive: true });
    const entry: StepResult = { name: step.name, reward: 0, verifier_result: null, agent_result: null, exception_info: null, started_at: new Date().toISOString(), finished_at: "" };
    steps.push(entry);
    // The phases write into a per-step view of the trial result; the step entry keeps what they wrote.
    const view = { ...result, agent_result: null, verifier_result: null } as TrialResult;
    try {
      await phases.runAgent({ ...input, task: t, trialDir: stepDir }, sandbox, view, mult);
    } catch (e) {
      entry.exception_info = exceptionInfo(e);

    }
    entry.agent_result = view.agent_result as Record<string, unknown> | null;
    if (view.agent_result) {
      totals.n_input_tokens += view.agent_result.n_input_tokens ?? 0;
      totals.n_output_tokens += view.agent_result.n_output_tokens ?? 0;
      totals.n_steps += view.agent_result.n_steps;
    }
    let rewards: Record<string, number> | null = null;
    // Harbor's --disable-verification: no step is verified, so none gates the next
    if (input.disableVerification) {
      scored.push(null);
      entry.finished_at = new Date().toISOString();
      continue;
    }
    try {
      // a step's verifier output never leaks into the next step's reward (the verifier clears /logs/verifier too)
      const outcome = await phases.verify(t, sandbox, stepDir, mult, input.signal, input.passEnv);
      entry.verifier_result = { rewards: outcome.rewards };
      entry.reward = outcome.reward;
      if (outcome.tamper) entry.tamper = outcome.tamper;
      rewards = outcome.scored;
    } catch (e) {
      entry.exception_info ??= exceptionInfo(e);
      const tamper = (e as { tamper?: TamperReport }).tamper;
      if (tamper) entry.tamper = tamper;
    }
    scored.push(rewards);
    if (entry.tamper) result.tamper = mergeTamper(result.tamper, entry.tamper);
    entry.finished_at = new Date().toISOString();
    if (!meetsMinReward(rewards, step.minReward)) break;
  }
  result.agent_execution = { started_at: agentStarted, finished_at: new Date().toISOString() };
  result.agent_result = { ...totals, exit_status: steps.every((s) => !s.exception_info) ? "completed" : "error", metadata: { steps: steps.length, of: task.steps!.length } };
  const raw = aggregateStepRewards(
    steps.map((s) => s.verifier_result?.rewards ?? null),
    task.rewardStrategy ?? "mean",
  );
  result.verifier_result = raw ? { rewards: raw } : null;
  // the trial scores the steps' scored rewards (clamped, refused/zeroed steps at 0), never the raw ones
  const rewards = aggregateStepRewards(scored, task.rewardStrategy ?? "mean");
  result.reward = rewards ? clampUnit(rewardOf(rewards)) : 0;
}

/**
 * The trial's report over its steps: the last step's scan (the changes list is cumulative since the image),
 * flagged, forged and zeroed when any step was, with every step's signals.
 */
function mergeTamper(prev: TamperReport | undefined, next: TamperReport): TamperReport {
  if (!prev) return { ...next, ...(next.signals ? { signals: [...next.signals] } : {}) };
  const signals = [...(prev.signals ?? []), ...(next.signals ?? [])].slice(0, 100);
  return {
    ...next,
    flagged: prev.flagged || next.flagged,
    zeroed: prev.zeroed || next.zeroed,
    ...(prev.forged || next.forged ? { forged: true } : {}),
    ...(signals.length ? { signals } : {}),
  };
}
