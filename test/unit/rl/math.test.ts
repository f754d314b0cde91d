import { test, after } from "node:test";
import assert from "node:assert/strict";
import { broadcastAdvantages, clampReward, groupAdvantages, isInformative } from "../../../src/rl/advantages.js";
import {
  closeDppoWorkers,
  dppoBatch,
  dppoBatchParallel,
  dppoToken,
  expClamped,
  isPushedOut,
  probFromLogprob,
  sharedFloat32Array,
  sharedUint8Array,
} from "../../../src/rl/dppo.js";
import { DEFAULT_PACK_TOKENS, packSequences } from "../../../src/rl/packing.js";
import { seededRandom } from "../../../src/util/random.js";

after(() => closeDppoWorkers());


// Step a double by whole ulps (through its bit pattern).
const bits = new Float64Array(1);
const bitsI = new BigInt64Array(bits.buffer);
function ulpStep(x: number, steps: number): number {
  bits[0] = x;
  bitsI[0] += BigInt(steps);
  return bits[0];
}
function ulpDistance(a: number, b: number): number {
  bits[0] = a;
  const ia = bitsI[0];
  bits[0] = b;
  return Math.abs(Number(ia - bitsI[0]));
}

const L = Math.log;

// ---------------------------------------------------------------------------------------------
// Advantages

test("groupAdvantages centers without std: [1,0,0,1] → [0.5,−0.5,−0.5,0.5], sum 0", () => {
  const a = groupAdvantages([1, 0, 0, 1]);
  assert.deepEqual(a, [0.5, -0.5, -0.5, 0.5]);
  assert.equal(a.reduce((s, x) => s + x, 0), 0);
  // No division by std: a 1-of-4 group gives 0.75 / −0.25, not a z-score.
  assert.deepEqual(groupAdvantages([1, 0, 0, 0]), [0.75, -0.25, -0.25, -0.25]);
  assert.deepEqual(groupAdvantages([]), []);
  // 32 binary rewards: the mean k/32 is exact, so advantages sum to exactly 0.
  const rewards = Array.from({ length: 32 }, (_, i) => (i % 3 === 0 ? 1 : 0));
  assert.equal(groupAdvantages(rewards).reduce((s, x) => s + x, 0), 0);
});

test("groupAdvantages rejects non-finite rewards with a one-line error", () => {
  assert.throws(() => groupAdvantages([1, NaN]), /reward at index 1 is NaN/);
});

test("clampReward clamps to [0,1] and maps NaN to 0", () => {
  assert.equal(clampReward(NaN), 0);
  assert.equal(clampReward(-0.5), 0);
  assert.equal(clampReward(1.7), 1);
  assert.equal(clampReward(0.25), 0.25);
  assert.equal(clampReward(Infinity), 1);
  assert.equal(clampReward(-Infinity), 0);
});

test("isInformative: a group teaches only if its rewards differ", () => {
  assert.equal(isInformative([1, 1, 1, 1]), false);
  assert.equal(isInformative([0, 0]), false);
  assert.equal(isInformative([0, 1, 0]), true);
  assert.equal(isInformative([0.5]), false);
  assert.equal(isInformative([]), false);
});

test("broadcastAdvantages fills each sample's token range", () => {
  const out = broadcastAdvantages([0.5, -0.25], [0, 2, 5]);
  assert.deepEqual(Array.from(out), [0.5, 0.5, -0.25, -0.25, -0.25]);
  assert.throws(() => broadcastAdvantages([1], [0, 1, 2]), /1 advantages need 2 boundaries/);
});

// ---------------------------------------------------------------------------------------------
// exp

test("expClamped is within 1 ulp of Math.exp on [−30, 0] and exact at 0", () => {
  assert.equal(expClamped(0), 1);
  assert.equal(expClamped(-0), 1);
  assert.equal(probFromLogprob(5), 1, "positive logprobs clamp to 0 → probability 1");
  assert.equal(probFromLogprob(-1e9), Math.fround(expClamped(-30)), "π for D is a float32, as in the reference");
  assert.ok(ulpDistance(expClamped(-30), Math.exp(-30)) <= 1);
  const rand = seededRandom(7);
  let worst = 0;
  let differing = 0;
  const n = 200_000;
  for (let i = 0; i < n; i++) {
    // Half uniform on [−30, 0], half near 0 where most real logprobs live.
    const x = i % 2 ? -30 * rand() : -0.05 * rand();
    const d = ulpDistance(expClamped(x), Math.exp(x));
    if (d > 0) differing++;
    worst = Math.max(worst, d);
  }
  assert.ok(worst <= 1, `worst distance ${worst} ulp`);
  assert.ok(differing < n * 0.2, `${differing} of ${n} differ from Math.exp`);
});

// ---------------------------------------------------------------------------------------------
// Mask: the four sign/ratio combinations, above, below and exactly on δ

test("mask with D > δ: only updates pushing further out are masked", () => {
  const hi = L(0.9);
  const lo = L(0.5); // D = 0.4
  // r > 1 (π = 0.9 > μ = 0.5)
  assert.equal(dppoToken(hi, lo, +1).mask, 0, "A > 0, r > 1 → masked");
  assert.equal(dppoToken(hi, lo, -1).mask, 1, "A < 0, r > 1 → kept (pulls back toward μ)");
  // r < 1 (π = 0.5 < μ = 0.9)
  assert.equal(dppoToken(lo, hi, -1).mask, 0, "A < 0, r < 1 → masked");
  assert.equal(dppoToken(lo, hi, +1).mask, 1, "A > 0, r < 1 → kept (pulls back toward μ)");
});

test("mask with D < δ: nothing is masked in any combination", () => {
  const a = L(0.55);
  const b = L(0.5); // D = 0.05
  for (const [lp, lm] of [
    [a, b],
    [b, a],
  ]) {
    for (const A of [1, -1]) assert.equal(dppoToken(lp, lm, A).mask, 1, `lp=${lp} lm=${lm} A=${A}`);
  }
});

test("mask with D exactly δ in float32 is not masked (strict >); one float32 ulp more is", () => {
  // open-instruct computes in float32 and compares D > 0.1 with 0.1 as a float32 (0.10000000149011612).
  // These float32 logprobs were searched so that float32 π − μ is exactly that value; checked with
  // torch 1.13 (fp32, CPU): exp gives π = 0.2000715285539627, μ = 0.10007152706384659,
  // (mu − pi).abs() = 0.10000000149011612 and `> 0.1` is False.
  const lp = -1.6090803146362305;
  const lm = -2.301870107650757;
  const delta32 = Math.fround(0.1);
  assert.equal(probFromLogprob(lp), 0.2000715285539627);
  assert.equal(probFromLogprob(lm), 0.10007152706384659);
  // In float64 the same tokens have D > 0.1: a float64 implementation would mask them.
  assert.ok(Math.exp(lp) - Math.exp(lm) > 0.1);
  const up = dppoToken(lp, lm, +1);
  assert.equal(up.absDiff, delta32);
  assert.ok(up.ratio > 1);
  assert.equal(up.mask, 1, "A > 0, r > 1, D == δ → kept");
  const down = dppoToken(lm, lp, -1);
  assert.equal(down.absDiff, delta32);
  assert.ok(down.ratio < 1);
  assert.equal(down.mask, 1, "A < 0, r < 1, D == δ → kept");

  // One float32 ulp closer to 0 makes π larger: D just above δ → masked.
  const lpUp = Math.fround(lp + 2 ** -23);
  assert.ok(Math.fround(probFromLogprob(lpUp) - probFromLogprob(lm)) > delta32, "precondition: D just above δ");
  assert.equal(dppoToken(lpUp, lm, +1).mask, 0);
  assert.equal(dppoToken(lm, lpUp, -1).mask, 0);

  // The batch kernel agrees.
  const res = dppoBatch({
    logpi: Float32Array.of(lp, lm, lpUp, lm),
    logmu: Float32Array.of(lm, lp, lm, lpUp),
    adv: Float32Array.of(1, -1, 1, -1),
    lossMask: Uint8Array.of(1, 1, 1, 1),
  });
  assert.deepEqual(Array.from(res.mask), [1, 1, 0, 0]);
});

test("r = exp(logπ − logμ) from unclamped logprobs; D from clamped ones (open-instruct)", () => {
  // logπ = 0.3 (a positive learner logprob), logμ = 0: D clamps both to 0 → D = 0, but r = e^0.3.
  const t = dppoToken(0.3, 0, 1);
  assert.equal(t.absDiff, 0);
  assert.equal(t.ratio, Math.fround(Math.exp(Math.fround(0.3))));
  assert.ok(Math.abs(t.ratio - 1.3498587608337402) <= 2 ** -23 * 1.35, "torch fp32 gives 1.3498587608337402 (1 ulp)");
  assert.equal(t.loss, -t.ratio);
  // logπ = −40, logμ = −35: D = 0 (both clamp to −30) but r = e^−5, not 1.
  const deep = dppoToken(-40, -35, -1);
  assert.equal(deep.absDiff, 0);
  assert.equal(deep.ratio, Math.fround(Math.exp(-5)));
  assert.equal(deep.mask, 1);
});

test("NaN sampler logprob → INVALID_LOGPROB (1.0) as mask_logprobs does; NaN learner logprob is an error", () => {
  // torch: μ = exp(clamp(1.0)) = 1, π = exp(−0.5) = 0.6065306663513184, D = 0.39346933364868164,
  // r = exp(−0.5 − 1) = 0.22313016653060913 (values printed by torch 1.13 in float32).
  const t = dppoToken(-0.5, NaN, -1);
  assert.equal(t.mu, 1);
  assert.equal(t.pi, 0.6065306663513184);
  assert.equal(t.absDiff, 0.39346933364868164);
  assert.equal(t.ratio, 0.22313016653060913);
  assert.equal(t.mask, 0, "D > δ, A < 0, r < 1 → masked");
  assert.equal(dppoToken(-0.5, NaN, 1).mask, 1, "A > 0, r < 1 → kept");
  assert.equal(dppoToken(-0.5, NaN, 1).loss, -0.22313016653060913);
  const res = dppoBatch({ logpi: Float32Array.of(-0.5, -0.5), logmu: Float32Array.of(NaN, NaN), adv: Float32Array.of(-1, 1), lossMask: Uint8Array.of(1, 1) });
  assert.deepEqual(Array.from(res.mask), [0, 1]);
  assert.equal(res.lossSum, -0.22313016653060913);
  assert.throws(() => dppoToken(NaN, -1, 1), /NaN/);
});

test("A = 0 is never masked and contributes 0", () => {
  const t = dppoToken(L(0.9), L(0.2), 0);
  assert.ok(t.absDiff > 0.1);
  assert.equal(t.mask, 1);
  assert.equal(t.loss, 0);
  assert.equal(isPushedOut(0.7, 4.5, 0, 0.1), false);
  const res = dppoBatch({ logpi: Float32Array.of(L(0.9)), logmu: Float32Array.of(L(0.2)), adv: Float32Array.of(0), lossMask: Uint8Array.of(1) });
  assert.equal(res.loss, 0);
  assert.equal(res.tokenCount, 1);
  assert.equal(res.stats.zeroAdvTokens, 1);
  assert.equal(res.stats.maskedCount, 0);
});

// ---------------------------------------------------------------------------------------------
// Loss: global token mean over two samples of different lengths, by hand

test("loss is Σ −A·r·M over all model tokens of the batch ÷ their count", () => {
  // Sample 1 (A = +0.5), 3 tokens:        Sample 2 (A = −0.5), 5 tokens:
  //  t0 model π=μ=0.5   r=1 → −0.5          t3 model π=0.4 μ=0.2 r=2, A<0 keeps → +1.0
  //  t1 observation     (no loss, no count) t4 model π=0.2 μ=0.4 r=0.5 D=0.2 A<0 → masked → 0
  //  t2 model π=0.4 μ=0.2 r=2 D=0.2 → masked t5 model π=μ=0.9 r=1 → +0.5
  //                                         t6 observation
  //                                         t7 model π=0.3 μ=0.25 r=1.2 D=0.05 → +0.6
  // Σ = −0.5 + 1.0 + 0.5 + 0.6 = 1.6 over 6 model tokens (masked ones stay in the count) → 0.2666…
  const logpi = Float64Array.from([0.5, 0.5, 0.4, 0.4, 0.2, 0.9, 0.9, 0.3], L);
  const logmu = Float64Array.from([0.5, 0.5, 0.2, 0.2, 0.4, 0.9, 0.9, 0.25], L);
  const adv = Float64Array.of(0.5, 0.5, 0.5, -0.5, -0.5, -0.5, -0.5, -0.5);
  const lossMask = Uint8Array.of(1, 0, 1, 1, 1, 1, 0, 1);
  const res = dppoBatch({ logpi, logmu, adv, lossMask });
  assert.equal(res.tokenCount, 6);
  assert.deepEqual(Array.from(res.mask), [1, 0, 0, 1, 0, 1, 0, 1]);
  // Hand values use exact 2, 0.5, 1.2; per-token values are float32 (as the reference), hence the tolerance.
  assert.ok(Math.abs(res.lossSum - 1.6) < 1e-6, `lossSum ${res.lossSum}`);
  assert.ok(Math.abs(res.loss - 1.6 / 6) < 1e-6, `loss ${res.loss}`);
  // Exactly the per-token helper, summed in order.
  let sum = 0;
  for (let i = 0; i < 8; i++) if (lossMask[i]) sum += dppoToken(logpi[i], logmu[i], adv[i]).loss;
  assert.equal(res.lossSum, sum);
  assert.equal(res.loss, sum / 6);
  // Statistics split by advantage sign.
  const s = res.stats;
  assert.equal(s.maskedCount, 2);
  assert.equal(s.maskedFraction, 2 / 6);
  assert.equal(s.posAdvTokens, 2);
  assert.equal(s.negAdvTokens, 4);
  assert.equal(s.maskedPosAdv, 1);
  assert.equal(s.maskedNegAdv, 1);
  assert.equal(s.maskedFractionPosAdv, 1 / 2);
  assert.equal(s.maskedFractionNegAdv, 1 / 4);
  assert.equal(s.aboveDeltaFraction, 3 / 6);
  assert.ok(Math.abs(s.meanAbsDiff - (0 + 0.2 + 0.2 + 0.2 + 0 + 0.05) / 6) < 1e-7);
  assert.ok(Math.abs(s.maxAbsDiff - 0.2) < 1e-7);
  assert.ok(Math.abs(s.meanRatio - (1 + 2 + 2 + 0.5 + 1 + 1.2) / 6) < 1e-6);
  assert.ok(Math.abs(s.minRatio - 0.5) < 1e-6 && Math.abs(s.maxRatio - 2) < 1e-6);
});

test("an empty batch (no model tokens) has loss 0 and zero statistics", () => {
  const res = dppoBatch({ logpi: new Float32Array(3), logmu: new Float32Array(3), adv: new Float32Array(3), lossMask: new Uint8Array(3) });
  assert.equal(res.loss, 0);
  assert.equal(res.tokenCount, 0);
  assert.equal(res.stats.maskedFraction, 0);
  assert.equal(res.stats.minRatio, 0);
  assert.deepEqual(Array.from(res.mask), [0, 0, 0]);
});

test("logprobs are clamped to [−30, 0] before exp, and clamps are counted", () => {
  const res = dppoBatch({
    logpi: Float64Array.of(0.3, -1, -Infinity),
    logmu: Float64Array.of(0, -50, -30),
    adv: Float64Array.of(1, 1, 1),
    lossMask: Uint8Array.of(1, 1, 1),
  });
  assert.equal(res.stats.clampedLogpi, 2);
  assert.equal(res.stats.clampedLogmu, 1);
  // Token 0: both clamp to 0 → π = μ = 1 for D, but r = exp(0.3 − 0) from the unclamped values.
  // Token 2: both −30 for D; r = exp(−∞ − (−30)) = 0.
  assert.equal(res.stats.minRatio, 0);
  const t0 = dppoToken(0.3, 0, 1);
  assert.equal(t0.ratio, Math.fround(Math.exp(Math.fround(0.3))));
  assert.equal(t0.pi, 1);
  assert.equal(t0.absDiff, 0);
  assert.equal(dppoToken(-Infinity, -30, 1).ratio, 0);
});

test("bad batches fail with one-line errors", () => {
  const ok = { logpi: new Float32Array(2), logmu: new Float32Array(2), adv: new Float32Array(2), lossMask: Uint8Array.of(1, 1) };
  assert.throws(() => dppoBatch({ ...ok, logmu: new Float32Array(3) }), /logmu has 3 tokens but lossMask has 2/);
  assert.throws(() => dppoBatch({ ...ok, logpi: Float32Array.of(0, NaN) }), /logpi\[1\] is NaN/);
  assert.throws(() => dppoBatch({ ...ok, adv: Float32Array.of(NaN, 0) }), /adv\[0\] is NaN/);
  assert.throws(() => dppoBatch({ ...ok, delta: -1 }), /delta must be/);
  // NaN on an observation token is ignored: it never reaches the loss.
  assert.doesNotThrow(() => dppoBatch({ ...ok, logpi: Float32Array.of(0, NaN), lossMask: Uint8Array.of(1, 0) }));
});

// ---------------------------------------------------------------------------------------------
// Property: on random batches, the kernel equals the per-token rule, and every masked token is one
// whose update would move it further from μ.

test("property: masked tokens are exactly those with D > δ pushed further out (seeded, 50k tokens)", () => {
  const rand = seededRandom(2024);
  const n = 50_000;
  const logpi = new Float32Array(n);
  const logmu = new Float32Array(n);
  const adv = new Float32Array(n);
  const lossMask = new Uint8Array(n);
  const advValues = [-0.75, -0.5, -0.03125, 0, 0.03125, 0.25, 0.96875];
  for (let i = 0; i < n; i++) {
    const mu = rand() < 0.7 ? -0.3 * rand() : -8 * rand();
    logmu[i] = rand() < 0.001 ? -45 : mu;
    logpi[i] = rand() < 0.001 ? 0.2 : Math.min(0, mu + (rand() - 0.5) * (rand() < 0.2 ? 3 : 0.3));
    adv[i] = advValues[Math.floor(rand() * advValues.length)];
    lossMask[i] = rand() < 0.8 ? 1 : 0;
  }
  const res = dppoBatch({ logpi, logmu, adv, lossMask });
  let sum = 0;
  let count = 0;
  let masked = 0;
  for (let i = 0; i < n; i++) {
    if (!lossMask[i]) {
      assert.equal(res.mask[i], 0);
      continue;
    }
    const t = dppoToken(logpi[i], logmu[i], adv[i]);
    assert.equal(res.mask[i], t.mask, `token ${i}`);
    if (t.mask === 0) {
      masked++;
      const A = adv[i];
      assert.ok(t.absDiff > 0.1, `masked token ${i} has D = ${t.absDiff}`);
      assert.ok((A > 0 && t.ratio > 1) || (A < 0 && t.ratio < 1), `masked token ${i} would move back toward μ`);
    } else if (t.absDiff > 0.1 && adv[i] !== 0) {
      // Kept despite D > δ: the update must pull it back toward μ.
      assert.ok((adv[i] > 0 && t.ratio <= 1) || (adv[i] < 0 && t.ratio >= 1), `token ${i} should have been masked`);
    }
    sum += t.loss;
    count++;
  }
  assert.ok(masked > 100, `the data masks something (${masked})`);
  assert.equal(res.tokenCount, count);
  assert.equal(res.stats.maskedCount, masked);
  assert.equal(res.lossSum, sum);
  assert.equal(res.loss, sum / count);
});

test("parallel kernel gives the serial mask and counts; sums agree to rounding", async () => {
  const n = 3_000_000; // above the parallel threshold
  const rand = seededRandom(99);
  const logpi = sharedFloat32Array(n);
  const logmu = sharedFloat32Array(n);
  const adv = sharedFloat32Array(n);
  const lossMask = sharedUint8Array(n);
  for (let i = 0; i < n; i++) {
    const mu = -2 * rand() * rand();
    logmu[i] = mu;
    logpi[i] = Math.min(0, mu + (rand() - 0.5) * 0.6);
    adv[i] = ((i >> 12) & 1 ? 1 : -1) * 0.5;
    lossMask[i] = (i & 255) < 200 ? 1 : 0;
  }
  const serial = dppoBatch({ logpi, logmu, adv, lossMask });
  const parallel = await dppoBatchParallel({ logpi, logmu, adv, lossMask }, { threads: 2 });
  assert.deepEqual(parallel.mask, serial.mask);
  for (const key of ["tokenCount", "maskedCount", "maskedPosAdv", "maskedNegAdv", "posAdvTokens", "negAdvTokens", "clampedLogpi", "maxAbsDiff", "minRatio", "maxRatio"] as const) {
    assert.equal(parallel.stats[key], serial.stats[key], key);
  }
  assert.ok(Math.abs(parallel.loss - serial.loss) <= 1e-12 * Math.abs(serial.loss) + 1e-15);
  assert.ok(Math.abs(parallel.stats.meanAbsDiff - serial.stats.meanAbsDiff) < 1e-12);
  // Ordinary (unshared) arrays fall back to the serial kernel.
  const plain = await dppoBatchParallel({ logpi: Float32Array.from(logpi.subarray(0, 1000)), logmu: Float32Array.from(logmu.subarray(0, 1000)), adv: Float32Array.from(adv.subarray(0, 1000)), lossMask: Uint8Array.from(lossMask.subarray(0, 1000)) });
  assert.equal(plain.tokenCount, serial.mask.subarray(0, 1000).length - Array.from(lossMask.subarray(0, 1000)).filter((m) => m === 0).length);
});

test("parallel kernel reports a NaN from a worker's slice as a one-line error", async () => {
  const n = 2_000_000;
  const logpi = sharedFloat32Array(n);
  const logmu = sharedFloat32Array(n);
  const adv = sharedFloat32Array(n);
  const lossMask = sharedUint8Array(n).fill(1);
  logpi[n - 5] = NaN; // in the worker's half
  await assert.rejects(dppoBatchParallel({ logpi, logmu, adv, lossMask }, { threads: 2 }), new RegExp(`logpi\\[${n - 5}\\] is NaN`));
  logpi[n - 5] = 0;
  adv[7] = NaN; // in the main thread's half
  await assert.rejects(dppoBatchParallel({ logpi, logmu, adv, lossMask }, { threads: 2 }), /adv\[7\] is NaN/);
});

// ---------------------------------------------------------------------------------------------
// Packing

test("packSequences: first-fit decreasing with per-pack boundaries and waste", () => {
  // Sorted: 7(#2) 5(#0) 4(#4) 3(#1) 2(#3). 7→P0 (3 left), 5→P1 (5 left), 4→P1 (1 left), 3→P0 (0 left), 2→P2.
  const res = packSequences([5, 3, 7, 2, 4], { maxTokens: 10 });
  assert.deepEqual(
    res.packs.map((p) => [p.sampleIndices, Array.from(p.cuSeqlens), p.tokens]),
    [
      [[1, 2], [0, 3, 10], 10],
      [[0, 4], [0, 5, 9], 9],
      [[3], [0, 2], 2],
    ],
  );
  assert.deepEqual(res.rejected, []);
  assert.deepEqual(res.waste, { capacity: 30, used: 21, padding: 9, paddingFraction: 0.3 });
});

test("packSequences: oversize samples are rejected and reported, exact fits waste nothing", () => {
  const res = packSequences([12, 3, 10], { maxTokens: 10 });
  assert.deepEqual(res.rejected, [{ index: 0, length: 12 }]);
  assert.deepEqual(
    res.packs.map((p) => p.sampleIndices),
    [[2], [1]],
  );
  assert.equal(res.waste.used, 13);
  const exact = packSequences([10], { maxTokens: 10 });
  assert.equal(exact.waste.padding, 0);
  assert.equal(exact.waste.paddingFraction, 0);
});

test("packSequences: default capacity is 67,584 tokens; ties keep index order; empty input", () => {
  assert.equal(DEFAULT_PACK_TOKENS, 67_584);
  const res = packSequences([67_584, 1, 67_583]);
  assert.deepEqual(
    res.packs.map((p) => p.sampleIndices),
    [[0], [1, 2]],
  );
  const ties = packSequences([4, 4, 4, 4], { maxTokens: 8 });
  assert.deepEqual(
    ties.packs.map((p) => p.sampleIndices),
    [
      [0, 1],
      [2, 3],
    ],
  );
  const empty = packSequences([]);
  assert.deepEqual(empty.packs, []);
  assert.equal(empty.waste.paddingFraction, 0);
  assert.throws(() => packSequences([3, -1]), /length of sample 1 must be a non-negative integer/);
  assert.throws(() => packSequences([3], { maxTokens: 0 }), /maxTokens must be a positive integer/);
});

test("packSequences: property — every sample packed once, no pack over capacity (seeded)", () => {
  const rand = seededRandom(5);
  for (let trial = 0; trial < 50; trial++) {
    const lengths = Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * rand() * 80_000));
    const res = packSequences(lengths);
    const seen = new Set<number>();
    for (const p of res.packs) {
      assert.ok(p.tokens <= DEFAULT_PACK_TOKENS);
      p.sampleIndices.forEach((i, k) => {
        assert.ok(!seen.has(i));
        seen.add(i);
        assert.equal(p.cuSeqlens[k + 1] - p.cuSeqlens[k], lengths[i]);
      });
    }
    for (const r of res.rejected) seen.add(r.index);
    assert.equal(seen.size, lengths.length);
    assert.ok(res.rejected.every((r) => r.length > DEFAULT_PACK_TOKENS));
  }
});
