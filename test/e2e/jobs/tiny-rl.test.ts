// A short tiny-rl loop (examples/tiny-rl): a tiny PyTorch policy served by serve.py (vLLM's token API), sampled by
// tmax's rollout in podman sandboxes, updated by learn.py with the DPPO loss, reloaded by the server. Asserts what
// any correct loop must hold: μ = π before the first update; the learner's loss and mask = `tmax rl analyze`; after
// the update the server serves the new version and its logprobs change; a group sampled before a weight push that
// lands mid-step is dropped whole; the reward on the fixed seeds does not fall. Fixed seeds, one CPU thread.
// Needs python3 with torch (Debian: python3-torch) and the container engine; skips with a message otherwise.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { loadPromptFile } from "../../../src/agent/promptFile.js";
import { bashTool } from "../../../src/model/client.js";
import { discoverSources } from "../../../src/explore/load.js";
import { loadRunIndex, stepAggregates } from "../../../src/explore/rlIndex.js";
import { analyzeRun } from "../../../src/rl/analyze.js";
import { parseJsonWithNaN } from "../../../src/rl/openInstruct.js";
import { readRollouts } from "../../../src/rl/records.js";
import { runRollout, type RolloutOptions } from "../../../src/jobs/rollout.js";
import type { RolloutRecord } from "../../../src/rl/schema.js";
import { ENGINE_SKIP, ROOT } from "../../support/env.js";
import { removeContainersUnder } from "../../support/jobs.js";

const HERE = path.join(ROOT, "examples", "tiny-rl");
const TASKS = path.join(HERE, "tasks");
const PAIR = ["first-line", "last-line"]; // two tasks the (context-blind) warm start answers with the same command draws
const SEED = 13; // sample i of a group uses vLLM seed SEED + i, in both steps (chosen so that step 1 and the first group of step 2 are informative)
const SFT_EPOCHS = 200; // 4 lines (train.py: 8 lines, 100 epochs: about the same number of updates)

function torchPython(): string | null {
  for (const py of ["/usr/bin/python3", "python3"]) if (spawnSync(py, ["-c", "import torch"]).status === 0) return py;
  return null;
}
const PY = torchPython();
const SKIP = !PY ? "skipped: no python3 with torch (apt-get install python3-torch)" : ENGINE_SKIP;
if (!PY) console.log(`# ${SKIP}`);

const root = await mkdtemp(path.join(tmpdir(), "tmax-tiny-rl-"));
let server: ChildProcess | null = null;
after(async () => {
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => server!.once("exit", r));
  }
  removeContainersUnder(root);
  await rm(root, { recursive: true, force: true });
});

function python(args: string[]): string {
  const r = spawnSync(PY!, args, { encoding: "utf8", cwd: HERE, timeout: 300_000 });
  assert.equal(r.status, 0, `${args[0]}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function startServer(weights: string, versionFile: string): Promise<string> {
  const ready = path.join(root, "server.port");
  server = spawn(PY!, [path.join(HERE, "serve.py"), "--port", "0", "--ready-file", ready, "--weights", weights, "--version-file", versionFile], { cwd: HERE, stdio: ["ignore", "ignore", "inherit"] });
  for (let i = 0; i < 600 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 250));
  assert.ok(existsSync(ready), "serve.py did not start");
  return `http://127.0.0.1:${Number((await readFile(ready, "utf8")).trim())}`;
}

const post = async (url: string, body: unknown) => (await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json() as Promise<any>;

test("tiny-rl: μ = π before the update, learner loss = rl analyze, reload serves a new version, stale groups dropped whole, reward does not fall", { skip: SKIP, timeout: 900_000 }, async () => {
  // 1. warm start on the oracle replies, in the shape `tmax traces export` writes them (prompts as the rollout renders them)
  const prompts = loadPromptFile(path.join(HERE, "prompts.yaml"));
  const vocab = JSON.parse(await readFile(path.join(HERE, "vocab.json"), "utf8"));
  const sft = path.join(root, "sft.jsonl");
  const lines = await Promise.all(
    Object.entries(vocab.replies as Record<string, string>).map(async ([task, reply]) => ({
      messages: [
        { role: "system", content: prompts.system },
        { role: "user", content: prompts.instance(await readFile(path.join(TASKS, task, "instruction.md"), "utf8")) },
        { role: "assistant", content: reply },
      ],
      tools: [bashTool(prompts.toolDescription, prompts.commandDescription)],
      metadata: { task, reward: 1 },
    })),
  );
  await writeFile(sft, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  const weights = path.join(root, "policy.pt");
  python(["sft.py", sft, "--out", weights, "--epochs", String(SFT_EPOCHS)]);
  const versionFile = path.join(root, "policy_version");
  const base = await startServer(weights, versionFile);

  const out = path.join(root, "rollout");
  const rewardsOf: Record<number, number[]> = {};
  const settings = (step: number): RolloutOptions => ({
    datasetDir: TASKS,
    outDir: out,
    runName: "tiny",
    steps: 1,
    continue: step > 1,
    uniqueTasks: 2,
    samplesPerTask: 2,
    concurrency: 2,
    maxGroupsPerStep: 2,
    filters: { include: PAIR },
    model: { baseUrl: `${base}/v1`, model: "tiny-rl", temperature: 1, topP: 1, maxTokens: 16_384, timeoutMs: 120_000, maxRetries: 0, logprobs: true, tokenIds: true },
    seed: SEED,
    maxStaleness: 0,
    policyVersionFile: versionFile,
    learnerBatch: true,
    prompts,
    timeoutMultiplier: 2,
    imageMap: {},
    backend: "docker",
    network: "task",
    onSample: (s) => (rewardsOf[s.step] ??= []).push(s.reward),
  });

  // 2. step 1 at policy version 0
  const [s1] = await runRollout(settings(1));
  assert.equal(s1!.policy_version, 0);
  assert.ok(s1!.groups_kept >= 1, `step 1 needs an informative group (rewards ${rewardsOf[1]}): change SEED`);
  const records: RolloutRecord[] = [];
  for await (const r of readRollouts(out, { run: "tiny" })) records.push(r);

  // 3. one learner step: trainer logprobs (before the update) equal μ; its loss and mask equal rl analyze's
  const batch = path.join(out, "learner", "tiny_learner_batch_step000001.jsonl");
  const trainerDir = path.join(out, "trainer");
  await copyFile(weights, path.join(root, "policy-v0.pt"));
  const learned = JSON.parse(python(["learn.py", batch, "--weights", weights, "--trainer-dir", trainerDir, "--run", "tiny"]).trim().split("\n").pop()!);
  assert.equal(learned.version, 1);
  const trainerLines = (await readFile(path.join(trainerDir, "tiny_trainer_logprobs_step000001.jsonl"), "utf8")).trim().split("\n").map((l) => parseJsonWithNaN(l) as any);
  let compared = 0;
  let maxDiff = 0;
  for (const line of trainerLines) {
    const sampleIdx = line.rollout_sample_ids.find((s: number) => s >= 0);
    const rec = records.find((r) => r.sample_idx === sampleIdx)!;
    const model = rec.response_mask.flatMap((m, i) => (m ? [i] : []));
    const trained = line.response_mask.flatMap((m: boolean, t: number) => (m ? [t] : []));
    assert.equal(trained.length, model.length);
    trained.forEach((t: number, k: number) => {
      assert.equal(line.token_ids[t], rec.response_tokens[model[k]!]);
      maxDiff = Math.max(maxDiff, Math.abs(line.trainer_logprobs[t] - rec.logprobs[model[k]!]));
      compared++;
    });
  }
  assert.ok(compared > 0);
  assert.ok(maxDiff <= 1e-5, `learner logπ vs sampler logμ before the update: max |Δ| ${maxDiff}`);
  const [analyzed] = await analyzeRun(out, { trainerDir, run: "tiny" });
  assert.equal(analyzed!.step, 1);
  assert.equal(analyzed!.stats.tokenCount, learned.model_tokens);
  assert.equal(analyzed!.stats.maskedCount, learned.masked_tokens);
  assert.equal(analyzed!.muMismatch.length + analyzed!.tokenMismatch.length + analyzed!.missingTrainer.length, 0, "every record analysed with the μ and tokens it holds");
  assert.ok(Math.abs(analyzed!.loss - learned.loss) <= 1e-6 * Math.max(1, Math.abs(learned.loss)), `loss: analyze ${analyzed!.loss}, learner ${learned.loss}`);

  // 4. reload: the server serves version 1, the version file says 1, and the same request gets other logprobs
  // (the whole reply: the update moves the choice of command, mid-reply, and leaves the format tokens before it as they were)
  const probe = { model: "tiny-rl", prompt: records[0]!.prompt_tokens, max_tokens: 64, seed: 11, logprobs: 1, return_token_ids: true };
  const before = await post(`${base}/v1/completions`, probe);
  assert.equal((await post(`${base}/reload`, { path: weights })).version, 1);
  assert.equal((await (await fetch(`${base}/policy`)).json()).version, 1);
  assert.equal((await readFile(versionFile, "utf8")).trim(), "1");
  const afterReload = await post(`${base}/v1/completions`, probe);
  assert.equal(afterReload.policy_version, 1);
  const lp0: number[] = before.choices[0].logprobs.token_logprobs;
  const lp1: number[] = afterReload.choices[0].logprobs.token_logprobs;
  const ids0: number[] = before.choices[0].token_ids;
  const ids1: number[] = afterReload.choices[0].token_ids;
  const moved = lp0.findIndex((lp, i) => ids0[i] !== ids1[i] || Math.abs(lp - (lp1[i] ?? Number.NaN)) > 1e-6);
  assert.ok(moved >= 0, `the reply's logprobs did not change (${lp0.length} tokens, same seed)`);

  // 5. step 2: the learner pushes version 2 while the step samples, right after the first group's first two turns
  //    (runRollout makes no preflight request; with 2 samples at a time the first group holds both slots, so the
  //    second group's samples start after the push). The first group is sampled at version 1, the second at 2; with
  //    staleness limit 0 the first is dropped whole and the second kept (when informative).
  const next = path.join(root, "policy-next.pt");
  await copyFile(weights, next);
  await copyFile(`${weights}.optim`, `${next}.optim`);
  python(["learn.py", batch, "--weights", next, "--trainer-dir", path.join(root, "scratch"), "--run", "tiny"]);
  await rm(path.join(root, "scratch"), { recursive: true }); // its trainer logprobs are not the run's
  assert.equal((await post(`${base}/reload`, { path: next, after_completions: 2 })).scheduled_after_completions, 2);
  const started: string[] = [];
  const groups: { task: string; rewards: number[] }[] = [];
  const [s2] = await runRollout({ ...settings(2), onTrial: (e) => void (e.type === "start" && started.push(e.trial)), onGroup: (g) => void groups.push(g) });
  assert.equal(s2!.policy_version, 2);
  assert.equal((await (await fetch(`${base}/policy`)).json()).version, 2);
  const first = started[0]!.replace(/__g\d+_s\d+$/, "");
  assert.deepEqual(started.slice(0, 2).map((t) => t.replace(/__g\d+_s\d+$/, "")), [first, first], "the first group's two samples start first");
  const firstRewards = groups.find((g) => g.task === first)!.rewards;
  assert.notEqual(Math.min(...firstRewards), Math.max(...firstRewards), `the first group of step 2 must be informative to show the staleness drop (rewards ${firstRewards}): change SEED`);
  assert.equal(s2!.groups_dropped_stale, 1);
  assert.equal(s2!.samples_dropped_stale, 2, "the stale group is dropped whole");
  const step2: RolloutRecord[] = [];
  for await (const r of readRollouts(out, { run: "tiny" })) if (r.step === 2) step2.push(r);
  assert.ok(step2.every((r) => r.task_name !== first && r.policy_version === "tiny-rl@2"), "no record of the stale group; the kept ones are version 2's");
  assert.equal(step2.length, 2 * s2!.groups_kept);

  // 6. the explorer reads the run as written: the rollout set with its trainer logprobs, reward, masked fraction, |π−μ| per step
  const found = await discoverSources(root);
  const set = found.rollouts.find((r) => r.run === "tiny" && r.dir === out);
  assert.ok(set, `the explorer finds the rollout (${JSON.stringify(found.issues)})`);
  assert.deepEqual(set!.trainerLogprobs.map((t) => t.step), [1]);
  const aggregates = stepAggregates(await loadRunIndex(set!, { cacheDir: null }));
  assert.deepEqual(aggregates.map((a) => a.step), step2.length ? [1, 2] : [1]);
  assert.equal(aggregates[0]!.samples, records.length);
  assert.equal(aggregates[0]!.fracMasked, analyzed!.stats.maskedFraction);
  assert.ok(Math.abs(aggregates[0]!.meanAbsDiff! - analyzed!.stats.meanAbsDiff) < 1e-9);
  if (step2.length) assert.equal(aggregates[1]!.fracMasked, null, "step 2 has no learner step yet");

  // 7. the reward on the fixed seeds (same seeds, same tasks) does not fall from version 0 to versions 1-2
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`# tiny-rl: step 1 (v0) rewards ${rewardsOf[1]} · step 2 (v1/v2) rewards ${rewardsOf[2]} · max |logπ − logμ| before the update ${maxDiff.toExponential(2)} · loss ${learned.loss}`);
  assert.ok(mean(rewardsOf[2]!) >= mean(rewardsOf[1]!), `reward fell: ${rewardsOf[1]} → ${rewardsOf[2]}`);
});
