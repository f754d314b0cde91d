// DPPO against the trainer's own arithmetic: test/fixtures/open-instruct/dppo-cases.json is written by
// make_dppo_cases.py, which runs open-instruct's grpo_utils functions (re-typed) on float32 torch tensors.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { analyzeStep, formatStepTable } from "../../../src/rl/analyze.js";
import { dppoToken } from "../../../src/rl/dppo.js";
import { trainerLineSamples, type TrainerSample } from "../../../src/rl/openInstruct.js";
import { ROOT } from "../../support/env.js";

interface Case {
  name: string;
  line: Record<string, unknown>;
  advantages: Record<string, number>;
  expected: { model_tokens: number; masked_tokens: number; loss: string };
  overflow?: { sample_idx: number; token: number };
}
const { cases } = JSON.parse(readFileSync(path.join(ROOT, "test/fixtures/open-instruct/dppo-cases.json"), "utf8").replace(/\bNaN\b/g, "null")) as { cases: Case[] };
// the generator writes NaN logprobs bare (as json.dumps does); JSON.parse needs them as null, turned back here
const nanned = (line: Record<string, unknown>) => ({ ...line, vllm_logprobs: (line.vllm_logprobs as (number | null)[]).map((v) => v ?? Number.NaN) });

function analyze(c: Case) {
  const samples = trainerLineSamples(nanned(c.line), 1);
  assert.ok(Array.isArray(samples), String(samples));
  const rollouts = Object.entries(c.advantages).map(([sid, advantage]) => ({ step: 1, sample_idx: Number(sid), advantage }));
  return analyzeStep(rollouts, samples as TrainerSample[]);
}

test("a packed line whose response_mask holds sample ids (i+1): every nonzero value trains, as the trainer's .bool() reads it", () => {
  const c = cases.find((x) => x.name.startsWith("packed line whose response_mask holds sample ids"))!;
  assert.ok((c.line.response_mask as number[]).some((v) => v > 1), "the fixture holds ids above 1");
  const a = analyze(c);
  assert.equal(a.tokenCount, c.expected.model_tokens);
  assert.equal(a.stats.maskedCount, c.expected.masked_tokens);
  const expected = Number(c.expected.loss);
  // torch sums float32 terms in float32; tmax sums the same float32 terms in float64
  assert.ok(Math.abs(a.loss - expected) <= 1e-6 * Math.max(1, Math.abs(expected)), `loss ${a.loss} vs trainer ${expected}`);
  assert.equal(a.note, undefined);
});

test("a masked token whose float32 ratio overflows makes the trainer's loss NaN, and analyze says so, naming the token", () => {
  const c = cases.find((x) => x.name.startsWith("a masked token whose float32 ratio overflows"))!;
  assert.equal(c.expected.loss, "nan");
  const a = analyze(c);
  assert.equal(a.tokenCount, c.expected.model_tokens);
  assert.equal(a.stats.maskedCount, c.expected.masked_tokens);
  assert.ok(Number.isNaN(a.loss), `loss ${a.loss}`);
  assert.equal(a.stats.nonFiniteTerms, 1);
  // the position in the sample's line: the overflow token minus the sample's 4 prompt tokens
  assert.deepEqual(a.nonFinite, [{ sample_idx: c.overflow!.sample_idx, tokens: [c.overflow!.token - 4] }]);
  assert.match(a.note ?? "", /^step 1: the trainer's loss is NaN — float32 r = exp\(logπ − logμ\) overflows \(logμ far below logπ\) at sample 0 token 2$/);
  assert.match(formatStepTable([a]), /\n.*NaN\nnote: step 1: the trainer's loss is NaN/);
});

test("per token: (−A·inf)·0 is NaN, an unmasked overflow is ±inf, a finite masked term is 0 (float32 as torch)", () => {
  assert.ok(Number.isNaN(dppoToken(-0.01, -120, 0.5).loss)); // masked: A > 0, r = inf, D > δ
  assert.equal(dppoToken(-0.01, -120, -0.5).loss, Infinity); // A < 0, r > 1: not masked, −A·inf
  assert.ok(Number.isNaN(dppoToken(-0.01, -120, 0).loss)); // A = 0: −0·inf
  assert.equal(dppoToken(-0.01, -80, 0.5).loss, 0); // exp(79.99) fits float32: masked, a plain 0
});
