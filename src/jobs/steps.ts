// Multi-step trials (Harbor's [[steps]]): in one environment, for each step in order, the agent gets the step's
// instruction (a fresh episode; files persist between steps), then the step's verifier runs and its reward is
// recorded. A step whose rewards miss its min_reward ends the trial early. The trial reward follows
// multi_step_reward_strategy: per-key mean over the steps that produced rewards, or the last step's rewards.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Sandbox } from "../sandbox/types.js";
import { aggregateStepRewards, meetsMinReward } from "../tasks/steps.js";
import type { Task, TaskStep } from "../tasks/types.js";
import { rewardOf } from "./reward.js";
import type { TrialResult } from "./schema.js";
import { exceptionInfo } from "./trialError.js";

type StepResult = NonNullable<TrialResult["step_results"]>[number];

/** What the steps read of a trial's input (trial.ts passes its TrialInput through to runAgent). */
export interface StepInput {
  task: Task;
  trialDir: string;
  passEnv?: string[];
  signal?: AbortSignal;
}

export interface StepPhases<I extends StepInput = StepInput> {
  runAgent(input: I, sandbox: Sandbox, result: TrialResult, mult: number): Promise<void>;
  verify(task: Task, sandbox: Sandbox, trialDir: string, mult: number, signal?: AbortSignal, passEnv?: string[]): Promise<{ rewards: Record<string, number> }>;
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
    try {
      // a step's verifier output never leaks into the next step's reward
      await sandbox.exec(["bash", "-c", "rm -rf /logs/verifier && mkdir -p /logs/verifier"], { timeoutSec: 30 });
      entry.verifier_result = await phases.verify(t, sandbox, stepDir, mult, input.signal, input.passEnv);
      entry.reward = rewardOf(entry.verifier_result.rewards);
    } catch (e) {
      entry.exception_info ??= exceptionInfo(e);

    }
    entry.finished_at = new Date().toISOString();
    if (!meetsMinReward(entry.verifier_result?.rewards ?? null, step.minReward)) break;
  }
  result.agent_execution = { started_at: agentStarted, finished_at: new Date().toISOString() };
  result.agent_result = { ...totals, exit_status: steps.every((s) => !s.exception_info) ? "completed" : "error", metadata: { steps: steps.length, of: task.steps!.length } };
  const rewards = aggregateStepRewards(
    steps.map((s) => s.verifier_result?.rewards ?? null),
    task.rewardStrategy ?? "mean",
  );
  result.verifier_result = rewards ? { rewards } : null;
  result.reward = rewards ? rewardOf(rewards) : 0;
}
