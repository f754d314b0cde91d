// Files as open-instruct writes them (test/fixtures/open-instruct, made by make_fixtures.py there from
// rl_utils.py's writer layout), the NaN-tolerant JSON reader, and whole-group staleness.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { analyzeRun } from "../../../src/rl/analyze.js";
import { parseJsonWithNaN, trainerLineSamples } from "../../../src/rl/openInstruct.js";
import { readRollouts } from "../../../src/rl/records.js";
import { LooseRolloutRecord } from "../../../src/rl/schema.js";
import { dropStaleGroups, groupVersion } from "../../../src/rl/staleness.js";
import { listTrainerLogprobs, parseTrainerLogprobsName, readTrainerSamples } from "../../../src/rl/trainerLogprobs.js";
import { discoverSources } from "../../../src/explore/load.js";
import { loadRunIndex, readSample } from "../../../src/explore/rlIndex.js";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../fixtures/open-instruct");
const expected = async () => JSON.parse(await readFile(path.join(FIXTURES, "expected.json"), "utf8")) as { run: string; step: number; loss: number; model_tokens: number; masked_tokens: number };

test("parseJsonWithNaN reads Python's bare NaN / Infinity / -Infinity, leaves strings alone, rejects bad JSON", () => {
  const v = parseJsonWithNaN('{"a":[NaN,-Infinity,Infinity,1.5],"s":"NaN \\"Infinity\\"","n":null}') as { a: number[]; s: string; n: null };
  assert.ok(Number.isNaN(v.a[0]));
  assert.equal(v.a[1], -Infinity);
  assert.equal(v.a[2], Infinity);
  assert.equal(v.a[3], 1.5);
  assert.equal(v.s, 'NaN "Infinity"');
  assert.equal(v.n, null);
  assert.deepEqual(parseJsonWithNaN('{"x":1}'), { x: 1 });
  assert.throws(() => parseJsonWithNaN('{"x":NaN'), SyntaxError);
  assert.throws(() => parseJsonWithNaN('{"x":nan}'), SyntaxError);
});

test("trainer-logprobs names with and without open-instruct's _rank suffix", async () => {
  assert.deepEqual(parseTrainerLogprobsName("run_trainer_logprobs_step000012_rank00003.jsonl"), { run: "run", step: 12, rank: 3 });
  assert.deepEqual(parseTrainerLogprobsName("run_trainer_logprobs_step000012.jsonl"), { run: "run", step: 12, rank: null });
  assert.equal(parseTrainerLogprobsName("run_trainer_logprobs_step000012_rank3.jsonl"), null);
  const files = await listTrainerLogprobs(FIXTURES);
  assert.deepEqual(files.map((f) => [path.basename(f.file), f.step, f.rank]), [
    ["oi-fixture_trainer_logprobs_step000003_rank00000.jsonl", 3, 0],
    ["oi-fixture_trainer_logprobs_step000003_rank00001.jsonl", 3, 1],
  ]);
});

test("a packed, shifted open-instruct line splits into its samples' response tokens", async () => {
  const first = (await readFile(path.join(FIXTURES, "oi-fixture_trainer_logprobs_step000003_rank00000.jsonl"), "utf8")).split("\n")[0];
  const line = parseJsonWithNaN(first) as Record<string, unknown>;
  const samples = trainerLineSamples(line);
  assert.ok(Array.isArray(samples));
  const rollouts: Record<number, { response_tokens: number[]; logprobs: number[] }> = {};
  for await (const r of readRollouts(FIXTURES, { schema: LooseRolloutRecord })) rollouts[r.sample_idx] = r;
  assert.deepEqual(samples.map((s) => s.sample_idx), [0, 1], "first pack of rank 0 holds samples 0 and 1");
  for (const s of samples) {
    assert.deepEqual(s.token_ids, rollouts[s.sample_idx].response_tokens, "token_ids[t] = input_token_ids[t + 1]");
    assert.deepEqual(s.vllm_logprobs, rollouts[s.sample_idx].logprobs);
    assert.equal(s.trainer_logprobs.length, s.token_ids.length);
  }
  // The tool-output tokens (300, 301) are response tokens with response_mask false.
  assert.deepEqual(samples[0].response_mask, samples[0].token_ids.map((t) => (t >= 300 && t < 400 ? 0 : 1)));
  // Padding (rollout_sample_ids −1) is skipped: the second, padded pack holds only sample 2.
  const padded = parseJsonWithNaN((await readFile(path.join(FIXTURES, "oi-fixture_trainer_logprobs_step000003_rank00000.jsonl"), "utf8")).split("\n")[1]) as Record<string, unknown>;
  assert.ok((padded.rollout_sample_ids as number[]).includes(-1), "fixture precondition: padded line");
  const s2 = trainerLineSamples(padded);
  assert.ok(Array.isArray(s2));
  assert.deepEqual(s2.map((s) => s.sample_idx), [2]);
  assert.deepEqual(s2[0].token_ids, rollouts[2].response_tokens);
  assert.equal(trainerLineSamples({ ...line, rollout_sample_ids: [1, 2] }), "packed line without rollout_sample_ids of the same length");
});

test("rollout records with NaN logprobs are read (released-data schema)", async () => {
  const records = [];
  for await (const r of readRollouts(FIXTURES, { schema: LooseRolloutRecord })) records.push(r);
  assert.equal(records.length, 6);
  assert.ok(Number.isNaN(records[5].logprobs[0]));
});

test("analyzeRun on open-instruct's files (2 ranks, packed lines, NaN μ) reproduces the reference loss", async () => {
  const exp = await expected();
  const samples = await readTrainerSamples((await listTrainerLogprobs(FIXTURES)).map((f) => f.file));
  assert.equal(samples.length, 6);
  const [a, ...more] = await analyzeRun(FIXTURES);
  assert.equal(more.length, 0);
  assert.equal(a.step, exp.step);
  assert.equal(a.samples, 6);
  assert.equal(a.tokenCount, exp.model_tokens);
  assert.equal(a.stats.maskedCount, exp.masked_tokens);
  assert.deepEqual([a.missingRollout, a.missingTrainer, a.noAdvantage, a.tokenMismatch, a.muMismatch], [[], [], [], [], []]);
  // make_fixtures.py computes the loss with Python's exp rounded to float32; ours may differ by an ulp per token.
  assert.ok(Math.abs(a.loss - exp.loss) <= 1e-6 * Math.abs(exp.loss), `ts ${a.loss} vs reference ${exp.loss}`);
});

test("explorer indexes open-instruct trainer files per sample and opens one sample of a packed line", async (t) => {
  const found = await discoverSources(FIXTURES, 0);
  const set = found.rollouts.find((r) => r.run === "oi-fixture");
  assert.ok(set, JSON.stringify(found.issues));
  assert.equal(set.trainerLogprobs.length, 2);
  const index = await loadRunIndex(set, { cacheDir: null });
  // open-instruct's RolloutRecord has no response_mask: the explorer says so (and counts every response token).
  assert.deepEqual(index.issues.map((i) => i.problem), ["some records lack fields or hold non-numbers there (count): response_mask (6)"]);
  assert.deepEqual([...index.dppo.sampleIdx].sort(), [0, 1, 2, 3, 4, 5]);
  const exp = await expected();
  assert.equal(index.dppo.modelTokens.reduce((x, y) => x + y, 0), exp.model_tokens);
  assert.equal(index.dppo.masked.reduce((x, y) => x + y, 0), exp.masked_tokens);
  const one = await readSample(index, 3, 1);
  assert.deepEqual(one.issues, []);
  assert.ok(one.dppo);
  assert.deepEqual(one.trainer?.token_ids, (one.record as { response_tokens: number[] }).response_tokens);
  t.diagnostic(`sample 1: ${one.dppo.model.reduce((x, y) => x + y, 0)} model tokens, ${one.dppo.masked.reduce((x, y) => x + y, 0)} masked`);
});

test("staleness drops whole groups, never single samples", () => {
  const g = (...versions: number[]) => versions.map((version, i) => ({ version, reward: i % 2 }));
  const groups = [g(5, 5, 5), g(5, 1, 5), g(2, 2, 2), g(1, 1, 1)];
  assert.equal(groupVersion(groups[1]), 1);
  // learner at version 5, at most 3 versions behind (open-instruct: drop when lag > async_steps).
  const { fresh, dropped, droppedSamples } = dropStaleGroups(groups, 5, 3);
  assert.deepEqual(fresh, [groups[0], groups[2]]);
  assert.equal(dropped, 2);
  assert.equal(droppedSamples, 6);
  for (const kept of fresh) assert.equal(kept.length, 3, "kept groups keep all their samples");
  assert.equal(dropStaleGroups(groups, 5, 4).dropped, 0, "lag 4 with async_steps 4 is kept");
});
