// The learner loop on a real autograd engine: tmax writes a rollout step and its learner batch,
// examples/learner/dppo_step.py (PyTorch, tiny random causal LM) takes one DPPO step on it and writes
// open-instruct-format trainer logprobs, and `tmax rl analyze` reads them back with the same loss.
// Needs python3 with torch (Debian: python3-torch); skips with a message otherwise.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { groupAdvantages } from "../../../src/rl/advantages.js";
import { createRolloutWriter } from "../../../src/rl/records.js";
import type { RolloutRecord } from "../../../src/rl/schema.js";
import { seededRandom } from "../../../src/util/random.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SCRIPT = path.join(ROOT, "examples", "learner", "dppo_step.py");

function torchPython(): string | null {
  for (const py of ["/usr/bin/python3", "python3"]) {
    const probe = spawnSync(py, ["-c", "import torch"], { encoding: "utf8" });
    if (probe.status === 0) return py;
  }
  return null;
}
const PY = torchPython();

function tmax(args: string[]) {
  const out = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src", "cli", "main.ts"), ...args], { encoding: "utf8", cwd: ROOT });
  assert.equal(out.status, 0, `tmax ${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

/** A rollout step as `tmax rollout` records it: 2 groups × 4 samples, model spans and observation spans. */
function makeStep(step: number): RolloutRecord[] {
  const rand = seededRandom(99);
  const records: RolloutRecord[] = [];
  const rewards = [1, 0, 0, 1, 0, 1, 1, 1];
  for (let g = 0; g < 2; g++) {
    const adv = groupAdvantages(rewards.slice(g * 4, g * 4 + 4));
    for (let k = 0; k < 4; k++) {
      const i = g * 4 + k;
      const response_tokens: number[] = [];
      const logprobs: number[] = [];
      const response_mask: number[] = [];
      const length = 30 + Math.floor(rand() * 40);
      for (let t = 0; t < length; t++) {
        const model = Math.floor(t / 10) % 2 === 0;
        response_tokens.push(1 + Math.floor(rand() * 500));
        response_mask.push(model ? 1 : 0);
        // μ from a policy that is not our random init: many tokens far from π, so DPPO masks some.
        logprobs.push(model ? -rand() * (rand() < 0.5 ? 0.3 : 8) : 0);
      }
      const prompt_tokens = Array.from({ length: 8 }, (_, j) => 501 + ((g * 7 + j) % 20));
      records.push({
        step, sample_idx: i, prompt_idx: g, task_name: `task-${g}`, dataset: "learner-loop", ground_truth: null,
        policy_version: "tiny@0", prompt_tokens, response_tokens, logprobs, response_mask,
        num_prompt_tokens: prompt_tokens.length, num_response_tokens: response_tokens.length,
        num_model_tokens: response_mask.filter((m) => m === 1).length, reward: rewards[i], advantage: adv[k],
        finish_reason: "submitted",
        request_info: { num_calls: 1, timeouts: 0, tool_errors: 0, tool_outputs: ["ok"], tool_runtimes: [0.1], tool_calleds: [true] },
        num_turns: 2, exit_status: "submitted", trajectory_path: null, created_at: new Date(0).toISOString(),
      });
    }
  }
  return records;
}

test("learner loop: one PyTorch DPPO step on tmax's batch; tmax rl analyze reports the same loss", { skip: PY ? false : "skipped: no python3 with torch (apt-get install python3-torch)" }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "tmax-learner-loop-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const writer = await createRolloutWriter(dir, "loop");
  for (const r of makeStep(1)) await writer.write(r);
  await writer.close();

  // The batch as `tmax rl batch` writes it (packed, two packs of ≤ 320 tokens at least).
  tmax(["rl", "batch", dir, "--step", "1", "--pack", "320", "--run", "loop"]);
  const batch = path.join(dir, "learner", "loop_learner_batch_step000001.jsonl");

  const trainerDir = path.join(dir, "trainer");
  const run = spawnSync(PY!, [SCRIPT, batch, "--out-dir", trainerDir], { encoding: "utf8", timeout: 300_000 });
  assert.equal(run.status, 0, run.stderr);
  const learner = JSON.parse(run.stdout.trim().split("\n").pop()!);
  t.diagnostic(`learner: ${JSON.stringify(learner)}`);
  assert.ok(learner.packs >= 2, "more than one micro-batch, so the global token mean matters");
  assert.ok(learner.finite && learner.grad_norm > 0 && learner.max_param_change > 0, "the step changed the weights");
  assert.ok(learner.masked_tokens > 0 && learner.masked_tokens < learner.model_tokens, "DPPO masked some tokens, not all");
  assert.deepEqual(await readdir(trainerDir), ["loop_trainer_logprobs_step000001.jsonl"]);

  const steps = JSON.parse(tmax(["rl", "analyze", dir, "--trainer-dir", trainerDir, "--json"]));
  assert.equal(steps.length, 1);
  const a = steps[0];
  assert.equal(a.tokenCount, learner.model_tokens);
  assert.equal(a.stats.maskedCount, learner.masked_tokens);
  assert.deepEqual([a.missingRollout, a.missingTrainer, a.noAdvantage, a.tokenMismatch, a.muMismatch], [[], [], [], [], []]);
  // Per token both sides hold float32 values (exp may differ by 1 ulp = 2^-24 relative); torch sums the
  // float32 terms in float32, tmax in float64. So |Δ| ≤ (n + 2)·2^-24·Σ|terms|/N, with Σ|terms|/N printed by the learner.
  const tol = (learner.model_tokens + 2) * 2 ** -24 * learner.mean_abs_term;
  t.diagnostic(`loss: learner ${learner.loss}, tmax rl analyze ${a.loss}, |Δ| ${Math.abs(a.loss - learner.loss)}, bound ${tol}`);
  assert.ok(Math.abs(a.loss - learner.loss) <= tol, `learner ${learner.loss} vs analyze ${a.loss} (tolerance ${tol})`);
});
