// DPPO's binary-TV trust-region mask and loss (dppo.md), computed in one pass over typed arrays.
// No gradients here: this is the arithmetic a learner applies, for checking data and analysing released runs.
import os from "node:os";
import { Worker } from "node:worker_threads";

export const DPPO_DELTA = 0.1;
export const LOGPROB_MIN = -30;
export const LOGPROB_MAX = 0;

export type FloatArray = Float32Array | Float64Array;

// ---------------------------------------------------------------------------------------------
// exp on [-30, 0]. Math.exp costs about half of the whole kernel, so probabilities come from a
// table-driven exp (Tang's method): x = k·ln2/64 + r, exp(x) = 2^(k/64) · exp(r), with 2^(k/64)
// held as a double-double (hi + lo) and exp(r) − 1 as a degree-6 polynomial on |r| ≤ ln2/128.
// It is correctly rounded for >99% of inputs and within 1 ulp of Math.exp everywhere on [-30, 0]
// (test/unit/rl/math.test.ts checks this); exp(0) is exactly 1.

const TABLE_BITS = 6;
const TABLE_SIZE = 1 << TABLE_BITS;
// 2^(j/64) rounded to double, and the remainder 2^(j/64) − hi (computed with 60-digit decimals).
const POW2_FRAC_HI = [
  1.0, 1.0108892860517005, 1.0218971486541166, 1.0330248790212284,
  1.0442737824274138, 1.0556451783605572, 1.0671404006768237, 1.0787607977571199,
  1.0905077326652577, 1.102382583307841, 1.1143867425958924, 1.1265216186082418,
  1.1387886347566916, 1.1511892299529827, 1.1637248587775775, 1.1763969916502812,
  1.189207115002721, 1.202156731452703, 1.215247359980469, 1.22848053610687,
  1.241857812073484, 1.255380757024691, 1.2690509571917332, 1.2828700160787783,
  1.2968395546510096, 1.3109612115247644, 1.3252366431597413, 1.339667524053303,
  1.3542555469368927, 1.3690024229745905, 1.383909881963832, 1.3989796725383112,
  1.4142135623730951, 1.42961333839197, 1.4451808069770467, 1.460917794180647,
  1.4768261459394993, 1.4929077282912648, 1.5091644275934228, 1.5255981507445384,
  1.5422108254079407, 1.559004400237837, 1.5759808451078865, 1.593142151342267,
  1.6104903319492543, 1.6280274218573478, 1.645755478153965, 1.6636765803267364,
  1.681792830507429, 1.7001063537185235, 1.718619298122478, 1.7373338352737062,
  1.7562521603732995, 1.7753764925265212, 1.7947090750031072, 1.8142521755003989,
  1.8340080864093424, 1.8539791250833855, 1.8741676341103, 1.8945759815869656,
  1.9152065613971474, 1.9360617934922943, 1.9571441241754002, 1.978456026387951,
];
const POW2_FRAC_LO = [
  0.0, -1.5234778603368577e-17, 5.109225028973444e-17, 7.600838874027088e-18,
  8.551889705537965e-17, 1.759325738772092e-18, -7.899853966841582e-17, -6.656660436056593e-17,
  -3.046782079812471e-17, 5.2660368715706944e-17, 1.0410278456845571e-16, 5.165856758795457e-17,
  8.912812676025408e-17, 3.250710218863827e-17, 3.8292048369240935e-17, 5.554203254218079e-17,
  3.982015231465646e-17, 6.644981499252301e-17, -7.712630692681488e-17, -1.89878163130253e-17,
  4.658027591836937e-17, -6.7113898212968784e-18, 2.667932131342186e-18, 1.713594918243561e-17,
  2.5382502794888315e-17, -7.181536135519454e-17, -2.8587312100388614e-17, 8.927282594831732e-17,
  7.70094837980299e-17, 9.593797919118849e-17, -6.770511658794786e-17, -9.614213209051323e-17,
  -9.667293313452913e-17, -1.2031642489053655e-17, -3.0237581349939873e-17, -5.600377186075216e-17,
  -3.483994556892796e-17, 1.4192920154284036e-17, -1.016455327754295e-16, -1.1024941712342561e-16,
  7.949834809697621e-17, 3.7812070533575275e-17, -1.0136916471278304e-17, -1.0094406542311964e-16,
  2.4707192569797888e-17, -6.712955084707084e-17, -1.0125679913674773e-16, 5.8909926967131e-17,
  8.199010020581497e-17, -8.0237193703977e-18, -1.851380418263111e-17, 3.164389299292957e-17,
  2.960140695448873e-17, 6.429731796556572e-17, 1.8227458427912087e-17, -9.969531538920349e-17,
  3.283107224245627e-17, 9.761887490727594e-17, -6.122763413004143e-17, 3.4034035352165297e-17,
  -1.0619946056195963e-16, 1.0332385960676326e-16, 8.960767791036668e-17, 4.0388753109278167e-17,
];
// ln2 split so that k·LN2_HI is exact for |k| < 2^20 (fdlibm's constants).
const LN2_HI = 6.93147180369123816490e-01;
const LN2_LO = 1.90821492927058770002e-10;
const INV_STEP = TABLE_SIZE / Math.LN2;
const STEP_HI = LN2_HI / TABLE_SIZE;
const STEP_LO = LN2_LO / TABLE_SIZE;
// One entry per k in [K_MIN, 0]: 2^(k/64) = 2^(j/64) · 2^m (an exact scaling, no subnormals here).
const K_MIN = Math.floor((LOGPROB_MIN * TABLE_SIZE) / Math.LN2) - 1;
// expClamped inlines these as literals; fail loudly at load if they ever drift apart.
if (K_MIN !== -2771 || INV_STEP !== 92.33248261689366 || STEP_HI !== 0.01083042469326756 || STEP_LO !== 2.9815858269852933e-12) {
  throw new Error("dppo: exp constants out of sync");
}
const EXP_HI = new Float64Array(1 - K_MIN);
const EXP_LO = new Float64Array(1 - K_MIN);
for (let k = K_MIN; k <= 0; k++) {
  const j = k & (TABLE_SIZE - 1);
  const scale = 2 ** ((k - j) / TABLE_SIZE);
  EXP_HI[k - K_MIN] = POW2_FRAC_HI[j] * scale;
  EXP_LO[k - K_MIN] = POW2_FRAC_LO[j] * scale;
}

/** exp(x) for x in [LOGPROB_MIN, LOGPROB_MAX]; callers clamp first (outside that range the table does not reach). */
export function expClamped(x: number): number {
  // Constants are literals (INV_STEP, STEP_HI, STEP_LO, K_MIN): V8 folds literals, not module bindings.
  // x ≤ 0, so truncating x·64/ln2 − 0.5 toward zero rounds to nearest.
  const k = (x * 92.33248261689366 - 0.5) | 0;
  const r = x - k * 0.01083042469326756 - k * 2.9815858269852933e-12;
  const q =
    r *
    (1 +
      r *
        (0.5 +
          r * (0.16666666666666666 + r * (0.041666666666666664 + r * (0.008333333333333333 + r * 0.001388888888888889)))));
  const i = k + 2771;
  const hi = EXP_HI[i];
  return hi + (hi * q + EXP_LO[i]);
}

// ---------------------------------------------------------------------------------------------
// Per-token rule (the single place where the mask condition is written), as open-instruct computes it
// (grpo_utils.py: compute_dppo_mask, compute_binary_divergence, the DPPO branch of the tiled lm-head loss):
//   r = exp(logπ − logμ)                     from the UNCLAMPED logprobs
//   D = |exp(clamp(logπ)) − exp(clamp(logμ))|   clamp to [−30, 0]
//   M = 0 iff D > δ and ((A > 0 and r > 1) or (A < 0 and r < 1))
// Every value is a float32, as in the reference: inputs are rounded to float32, each of exp(·), the
// difference and |·| is rounded to float32, and δ is compared as the float32 nearest 0.1. A NaN logμ
// (vLLM returned none) becomes INVALID_LOGPROB = 1.0 first, as mask_logprobs() does with nan_to_num.

/** open-instruct's sentinel for masked/undefined logprobs (utils.py INVALID_LOGPROB). */
export const INVALID_LOGPROB = 1.0;
const f32 = Math.fround;

/** Logprob clamped to [−30, 0]; NaN stays NaN. */
export function clampLogprob(logprob: number): number {
  return logprob < LOGPROB_MIN ? LOGPROB_MIN : logprob > LOGPROB_MAX ? LOGPROB_MAX : logprob;
}

/** Probability of a token from its logprob, for D: float32 exp of the float32, clamped value. */
export function probFromLogprob(logprob: number): number {
  return f32(expClamped(clampLogprob(f32(logprob))));
}

/**
 * r = exp(logπ − logμ) in float32 from the unclamped logprobs (NaN logμ → INVALID_LOGPROB). When both
 * logprobs lie in [−30, 0] it is computed as e^logπ / e^logμ in float64 and rounded once: that is
 * exp(logπ − logμ) to within 1 float32 ulp (as close as torch's own float32 exp is to the exact value),
 * and it costs no third exp per token. The mask cannot differ: it reads r only when D > δ, and D > 0.1
 * needs |logπ − logμ| > 0.1, far from r = 1. Otherwise (a clamped logprob) exp of the float32 difference.
 */
export function ratioFromLogprobs(logpi: number, logmu: number): number {
  const a = f32(logpi);
  const b = logmu !== logmu ? INVALID_LOGPROB : f32(logmu);
  const inRange = a >= LOGPROB_MIN && a <= LOGPROB_MAX && b >= LOGPROB_MIN && b <= LOGPROB_MAX;
  return f32(inRange ? expClamped(a) / expClamped(b) : Math.exp(f32(a - b)));
}

/**
 * True when DPPO masks the token: it is outside the trust region (D > δ, strictly, in float32) AND
 * the update would push it further out (A > 0 with r > 1, or A < 0 with r < 1). A = 0 is never masked.
 */
export function isPushedOut(absDiff: number, ratio: number, advantage: number, delta: number): boolean {
  return f32(absDiff) > f32(delta) && ((advantage > 0 && ratio > 1) || (advantage < 0 && ratio < 1));
}

export interface DppoToken {
  pi: number; // π = exp(clamp(logπ)), float32
  mu: number; // μ = exp(clamp(logμ)), float32
  ratio: number; // r = exp(logπ − logμ), unclamped, float32
  absDiff: number; // D = |π − μ|, float32
  mask: 0 | 1; // M
  loss: number; // −A·r·M, float32
}

/** Everything DPPO computes for one model token (the batch kernel below does the same arithmetic). */
export function dppoToken(logpi: number, logmu: number, advantage: number, delta = DPPO_DELTA): DppoToken {
  if (Number.isNaN(logpi) || Number.isNaN(advantage)) {
    throw new Error(`dppoToken: NaN input (logpi=${logpi}, advantage=${advantage})`);
  }
  const b = Number.isNaN(logmu) ? INVALID_LOGPROB : logmu;
  const pi = probFromLogprob(logpi);
  const mu = probFromLogprob(b);
  const ratio = ratioFromLogprobs(logpi, b);
  const absDiff = f32(Math.abs(pi - mu));
  const A = f32(advantage);
  const mask = isPushedOut(absDiff, ratio, A, delta) ? 0 : 1;
  // A masked token contributes a plain 0 (the reference multiplies by M = 0) — unless r overflowed float32:
  // (−A·inf)·0 is NaN in the trainer. + 0 turns −0 into 0.
  const loss = mask === 0 ? (ratio === Infinity ? NaN : 0) : f32(-A * ratio) + 0;
  return { pi, mu, ratio, absDiff, mask, loss };
}

// ---------------------------------------------------------------------------------------------
// Batch kernel.

export interface DppoBatchInput {
  logpi: FloatArray; // learner (trainer) logprob per token
  logmu: FloatArray; // sampler (vLLM) logprob per token
  adv: FloatArray; // advantage per token (the sample's advantage broadcast)
  lossMask: Uint8Array; // 1 = model-generated token, 0 = observation/template/prompt
  delta?: number; // trust-region threshold δ, default 0.1
  maskOut?: Uint8Array; // optional output buffer for `mask` (reused across calls)
}

/** Raw sums over a token range; ranges merge by adding (see mergeDppoSums). */
export interface DppoSums {
  tokenCount: number;
  lossSum: number;
  maskedCount: number;
  posAdvTokens: number;
  negAdvTokens: number;
  maskedPosAdv: number;
  maskedNegAdv: number;
  aboveDeltaCount: number;
  absDiffSum: number;
  maxAbsDiff: number;
  ratioSum: number;
  minRatio: number;
  maxRatio: number;
  clampedLogpi: number; // model tokens whose logπ was outside [−30, 0]
  clampedLogmu: number;
  /** Model tokens whose term is not finite in the trainer (a float32 r that overflowed): the loss is NaN or ±inf. */
  nonFiniteTerms: number;
}

export interface DppoStats {
  tokenCount: number; // model tokens (loss mask 1): the denominator of the loss
  maskedCount: number;
  maskedFraction: number; // masked / model tokens
  posAdvTokens: number;
  negAdvTokens: number;
  zeroAdvTokens: number;
  maskedPosAdv: number;
  maskedNegAdv: number;
  maskedFractionPosAdv: number; // masked among A > 0 tokens / A > 0 tokens
  maskedFractionNegAdv: number; // masked among A < 0 tokens / A < 0 tokens
  aboveDeltaFraction: number; // D > δ regardless of direction / model tokens
  meanAbsDiff: number; // mean |π − μ| over model tokens
  maxAbsDiff: number;
  meanRatio: number; // mean r = exp(logπ − logμ) over model tokens
  minRatio: number;
  maxRatio: number;
  clampedLogpi: number;
  clampedLogmu: number;
  nonFiniteTerms: number;
}

export interface DppoBatchResult {
  loss: number; // lossSum / tokenCount (global token mean); 0 when there are no model tokens
  lossSum: number; // Σ −A·r·M over model tokens, for combining micro-batches
  tokenCount: number;
  mask: Uint8Array; // 1 = token trains (model token and not DPPO-masked); 0 = masked or not a model token
  stats: DppoStats;
}

export function emptyDppoSums(): DppoSums {
  return {
    tokenCount: 0,
    lossSum: 0,
    maskedCount: 0,
    posAdvTokens: 0,
    negAdvTokens: 0,
    maskedPosAdv: 0,
    maskedNegAdv: 0,
    aboveDeltaCount: 0,
    absDiffSum: 0,
    maxAbsDiff: 0,
    ratioSum: 0,
    minRatio: Infinity,
    maxRatio: -Infinity,
    clampedLogpi: 0,
    clampedLogmu: 0,
    nonFiniteTerms: 0,
  };
}

export function mergeDppoSums(a: DppoSums, b: DppoSums): DppoSums {
  return {
    tokenCount: a.tokenCount + b.tokenCount,
    lossSum: a.lossSum + b.lossSum,
    maskedCount: a.maskedCount + b.maskedCount,
    posAdvTokens: a.posAdvTokens + b.posAdvTokens,
    negAdvTokens: a.negAdvTokens + b.negAdvTokens,
    maskedPosAdv: a.maskedPosAdv + b.maskedPosAdv,
    maskedNegAdv: a.maskedNegAdv + b.maskedNegAdv,
    aboveDeltaCount: a.aboveDeltaCount + b.aboveDeltaCount,
    absDiffSum: a.absDiffSum + b.absDiffSum,
    maxAbsDiff: Math.max(a.maxAbsDiff, b.maxAbsDiff),
    ratioSum: a.ratioSum + b.ratioSum,
    minRatio: Math.min(a.minRatio, b.minRatio),
    maxRatio: Math.max(a.maxRatio, b.maxRatio),
    clampedLogpi: a.clampedLogpi + b.clampedLogpi,
    clampedLogmu: a.clampedLogmu + b.clampedLogmu,
    nonFiniteTerms: a.nonFiniteTerms + b.nonFiniteTerms,
  };
}

function validateBatch(input: DppoBatchInput): number {
  const n = input.lossMask.length;
  for (const name of ["logpi", "logmu", "adv"] as const) {
    if (input[name].length !== n) {
      throw new Error(`dppoBatch: ${name} has ${input[name].length} tokens but lossMask has ${n}`);
    }
  }
  const delta = input.delta ?? DPPO_DELTA;
  if (!(delta >= 0) || !Number.isFinite(delta)) throw new Error(`dppoBatch: delta must be a finite number ≥ 0, got ${delta}`);
  if (input.maskOut && input.maskOut.length < n) {
    throw new Error(`dppoBatch: maskOut holds ${input.maskOut.length} tokens, need ${n}`);
  }
  return n;
}

// Accumulator slots of the kernel. Sums live in a Float64Array rather than an object so the hot
// function touches no named properties: V8 compiles the loop on-stack before the code after it
// ever ran, and a property store without type feedback there deoptimizes every call.
const TOKENS = 0;
const LOSS = 1;
const MASKED = 2;
const POS_ADV = 3;
const NEG_ADV = 4;
const MASKED_POS = 5;
const MASKED_NEG = 6;
const ABOVE_DELTA = 7;
const ABS_DIFF = 8;
const MAX_ABS_DIFF = 9;
const RATIO = 10;
const MIN_RATIO = 11;
const MAX_RATIO = 12;
const CLAMPED_PI = 13;
const CLAMPED_MU = 14;
const NON_FINITE = 15;
const SLOTS = 16;
const KERNEL_CHUNK = 1 << 14;

function dppoKernel(
  logpi: FloatArray,
  logmu: FloatArray,
  adv: FloatArray,
  lossMask: Uint8Array,
  mask: Uint8Array,
  delta: number,
  start: number,
  end: number,
  acc: Float64Array,
): void {
  // Continue from the running sums, so chunked calls add in exactly the order of one long loop.
  let tokenCount = acc[TOKENS];
  let lossSum = acc[LOSS];
  let maskedCount = acc[MASKED];
  let posAdvTokens = acc[POS_ADV];
  let negAdvTokens = acc[NEG_ADV];
  let maskedPosAdv = acc[MASKED_POS];
  let maskedNegAdv = acc[MASKED_NEG];
  let aboveDeltaCount = acc[ABOVE_DELTA];
  let absDiffSum = acc[ABS_DIFF];
  let maxAbsDiff = acc[MAX_ABS_DIFF];
  let ratioSum = acc[RATIO];
  let minRatio = acc[MIN_RATIO];
  let maxRatio = acc[MAX_RATIO];
  let clampedLogpi = acc[CLAMPED_PI];
  let clampedLogmu = acc[CLAMPED_MU];
  let nonFiniteTerms = acc[NON_FINITE];

  const deltaF32 = Math.fround(delta);
  for (let i = start; i < end; i++) {
    if (lossMask[i] === 0) {
      mask[i] = 0;
      continue;
    }
    // float32 inputs (a no-op on Float32Array data); NaN logμ → INVALID_LOGPROB (1.0) as mask_logprobs does.
    const lp = Math.fround(logpi[i]);
    const lm0 = logmu[i];
    const lm = lm0 === lm0 ? Math.fround(lm0) : 1;
    const A = Math.fround(adv[i]);
    if (lp !== lp || A !== A) throw nanError(logpi, adv, i);
    // D from the logprobs clamped to [LOGPROB_MIN, LOGPROB_MAX], written as literals (see expClamped).
    let a = lp;
    let b = lm;
    let inRange = true;
    if (a < -30 || a > 0) {
      a = a < -30 ? -30 : 0;
      clampedLogpi++;
      inRange = false;
    }
    if (b < -30 || b > 0) {
      b = b < -30 ? -30 : 0;
      clampedLogmu++;
      inRange = false;
    }
    const ea = expClamped(a);
    const eb = expClamped(b);
    const pi = Math.fround(ea);
    const mu = Math.fround(eb);
    const d = Math.fround(pi > mu ? pi - mu : mu - pi);
    // r = exp(logπ − logμ) from the unclamped values, in float32 (see ratioFromLogprobs).
    const r = inRange ? Math.fround(ea / eb) : ratioOutOfRange(lp, lm);

    tokenCount++;
    absDiffSum += d;
    ratioSum += r;
    if (d > maxAbsDiff) maxAbsDiff = d;
    if (r < minRatio) minRatio = r;
    if (r > maxRatio) maxRatio = r;
    if (A > 0) posAdvTokens++;
    else if (A < 0) negAdvTokens++;
    // isPushedOut(d, r, A, delta), spelled out so the loop has no call.
    if (d > deltaF32) {
      aboveDeltaCount++;
      if ((A > 0 && r > 1) || (A < 0 && r < 1)) {
        mask[i] = 0;
        maskedCount++;
        if (A > 0) maskedPosAdv++;
        else maskedNegAdv++;
        // the trainer multiplies the term by M: (−A·r)·0 is 0, but (−A·inf)·0 is NaN, and so is its loss
        if (r === Infinity) {
          lossSum += NaN;
          nonFiniteTerms++;
        }
        continue;
      }
    }
    mask[i] = 1;
    const term = Math.fround(A * r);
    if (term - term !== 0) nonFiniteTerms++; // ±inf (r overflowed), or NaN (0·inf)
    lossSum -= term;
  }

  acc[TOKENS] = tokenCount;
  acc[LOSS] = lossSum;
  acc[MASKED] = maskedCount;
  acc[POS_ADV] = posAdvTokens;
  acc[NEG_ADV] = negAdvTokens;
  acc[MASKED_POS] = maskedPosAdv;
  acc[MASKED_NEG] = maskedNegAdv;
  acc[ABOVE_DELTA] = aboveDeltaCount;
  acc[ABS_DIFF] = absDiffSum;
  acc[MAX_ABS_DIFF] = maxAbsDiff;
  acc[RATIO] = ratioSum;
  acc[MIN_RATIO] = minRatio;
  acc[MAX_RATIO] = maxRatio;
  acc[CLAMPED_PI] = clampedLogpi;
  acc[CLAMPED_MU] = clampedLogmu;
  acc[NON_FINITE] = nonFiniteTerms;
}

/** r for a token with a clamped logprob (rare): float32 exp of the float32 difference. */
function ratioOutOfRange(lp: number, lm: number): number {
  return Math.fround(Math.exp(Math.fround(lp - lm)));
}

function nanError(logpi: FloatArray, adv: FloatArray, i: number): Error {
  const name = logpi[i] !== logpi[i] ? "logpi" : "adv";
  return new Error(`dppoBatch: ${name}[${i}] is NaN on a model token`);
}

function sumsToSlots(s: DppoSums): Float64Array {
  const acc = new Float64Array(SLOTS);
  acc[TOKENS] = s.tokenCount;
  acc[LOSS] = s.lossSum;
  acc[MASKED] = s.maskedCount;
  acc[POS_ADV] = s.posAdvTokens;
  acc[NEG_ADV] = s.negAdvTokens;
  acc[MASKED_POS] = s.maskedPosAdv;
  acc[MASKED_NEG] = s.maskedNegAdv;
  acc[ABOVE_DELTA] = s.aboveDeltaCount;
  acc[ABS_DIFF] = s.absDiffSum;
  acc[MAX_ABS_DIFF] = s.maxAbsDiff;
  acc[RATIO] = s.ratioSum;
  acc[MIN_RATIO] = s.minRatio;
  acc[MAX_RATIO] = s.maxRatio;
  acc[CLAMPED_PI] = s.clampedLogpi;
  acc[CLAMPED_MU] = s.clampedLogmu;
  acc[NON_FINITE] = s.nonFiniteTerms;
  return acc;
}

function slotsToSums(acc: Float64Array, into: DppoSums): DppoSums {
  into.tokenCount = acc[TOKENS];
  into.lossSum = acc[LOSS];
  into.maskedCount = acc[MASKED];
  into.posAdvTokens = acc[POS_ADV];
  into.negAdvTokens = acc[NEG_ADV];
  into.maskedPosAdv = acc[MASKED_POS];
  into.maskedNegAdv = acc[MASKED_NEG];
  into.aboveDeltaCount = acc[ABOVE_DELTA];
  into.absDiffSum = acc[ABS_DIFF];
  into.maxAbsDiff = acc[MAX_ABS_DIFF];
  into.ratioSum = acc[RATIO];
  into.minRatio = acc[MIN_RATIO];
  into.maxRatio = acc[MAX_RATIO];
  into.clampedLogpi = acc[CLAMPED_PI];
  into.clampedLogmu = acc[CLAMPED_MU];
  into.nonFiniteTerms = acc[NON_FINITE];
  return into;
}

/**
 * Mask and loss terms for tokens [start, end), written into `mask` and added to `sums`.
 * Per-token values are float32 as in the reference (see the per-token rule); sums are float64.
 */
export function accumulateDppo(input: DppoBatchInput, start: number, end: number, mask: Uint8Array, sums: DppoSums): void {
  const acc = sumsToSlots(sums);
  const { logpi, logmu, adv, lossMask } = input;
  const delta = input.delta ?? DPPO_DELTA;
  // Many short calls instead of one long one: V8 then compiles the kernel as a whole function
  // after the first chunks, instead of running every batch through on-stack-replacement code,
  // which came out 1.5× slower and varied from run to run.
  for (let from = start; from < end; from += KERNEL_CHUNK) {
    dppoKernel(logpi, logmu, adv, lossMask, mask, delta, from, Math.min(end, from + KERNEL_CHUNK), acc);
  }
  slotsToSums(acc, sums);
}

// Run the kernel once on a few Float32 tokens at load so every path in it has type feedback
// before its first long call gets compiled mid-loop (Float32 is the hot-path input type).
{
  const lp = Float32Array.of(-0.1, -2, 0.5, -40, -0.7, 0);
  const lm = Float32Array.of(-0.5, -0.1, -0.2, -1, -0.1, 0);
  const av = Float32Array.of(0.5, -0.5, 0.5, -0.5, 0, 0.25);
  dppoKernel(lp, lm, av, Uint8Array.of(1, 1, 1, 1, 1, 0), new Uint8Array(6), DPPO_DELTA, 0, 6, sumsToSlots(emptyDppoSums()));
}

const ratioOf = (part: number, whole: number): number => (whole === 0 ? 0 : part / whole);

/** Loss and statistics from raw sums; every mean over an empty set is reported as 0. */
export function finalizeDppo(sums: DppoSums): { loss: number; lossSum: number; tokenCount: number; stats: DppoStats } {
  const n = sums.tokenCount;
  const stats: DppoStats = {
    tokenCount: n,
    maskedCount: sums.maskedCount,
    maskedFraction: ratioOf(sums.maskedCount, n),
    posAdvTokens: sums.posAdvTokens,
    negAdvTokens: sums.negAdvTokens,
    zeroAdvTokens: n - sums.posAdvTokens - sums.negAdvTokens,
    maskedPosAdv: sums.maskedPosAdv,
    maskedNegAdv: sums.maskedNegAdv,
    maskedFractionPosAdv: ratioOf(sums.maskedPosAdv, sums.posAdvTokens),
    maskedFractionNegAdv: ratioOf(sums.maskedNegAdv, sums.negAdvTokens),
    aboveDeltaFraction: ratioOf(sums.aboveDeltaCount, n),
    meanAbsDiff: ratioOf(sums.absDiffSum, n),
    maxAbsDiff: n === 0 ? 0 : sums.maxAbsDiff,
    meanRatio: ratioOf(sums.ratioSum, n),
    minRatio: n === 0 ? 0 : sums.minRatio,
    maxRatio: n === 0 ? 0 : sums.maxRatio,
    clampedLogpi: sums.clampedLogpi,
    clampedLogmu: sums.clampedLogmu,
    nonFiniteTerms: sums.nonFiniteTerms,
  };
  // + 0 turns a −0 (all terms zero) into 0.
  return { loss: ratioOf(sums.lossSum, n) + 0, lossSum: sums.lossSum + 0, tokenCount: n, stats };
}

/**
 * DPPO over a whole batch in one pass: per-token mask, the global-token-mean loss
 * (Σ −A·r·M over model tokens ÷ number of model tokens; masked tokens stay in the denominator)
 * and the trust-region statistics.
 */
export function dppoBatch(input: DppoBatchInput): DppoBatchResult {
  const n = validateBatch(input);
  const mask = input.maskOut ?? new Uint8Array(n);
  const sums = emptyDppoSums();
  accumulateDppo(input, 0, n, mask, sums);
  return { ...finalizeDppo(sums), mask };
}

// ---------------------------------------------------------------------------------------------
// The same kernel on several cores. A full Tmax batch (256 × 65,536 tokens) costs ~2 exps per
// token, which one core cannot finish in 150 ms; token ranges are independent, so workers take
// contiguous slices of SharedArrayBuffer-backed arrays (no copies) and the main thread takes one too.
// The worker side is src/rl/dppoWorker.ts.

/** Below this many tokens the round trip to a worker costs more than it saves. */
const PARALLEL_MIN_TOKENS = 1 << 20;

export interface KernelJob {
  logpi: FloatArray;
  logmu: FloatArray;
  adv: FloatArray;
  lossMask: Uint8Array;
  mask: Uint8Array;
  delta: number;
  start: number;
  end: number;
}
export type KernelReply = { sums: DppoSums; error?: undefined } | { error: string };

interface PooledWorker {
  worker: Worker;
  pending: { resolve: (sums: DppoSums) => void; reject: (err: Error) => void }[];
}
const pool: PooledWorker[] = [];

/**
 * The worker is its own module, ./dppoWorker.ts (dppoWorker.js once compiled). Node 20 workers do not
 * inherit tsx's loader hooks, so when running from TypeScript sources (tests, benches) the worker first
 * registers tsx (a two-line loader shim) and then imports that same module file.
 */
function spawnKernelWorker(): Worker {
  const self = new URL(import.meta.url);
  if (!self.pathname.endsWith(".ts")) return new Worker(new URL("./dppoWorker.js", self));
  const entry = new URL("./dppoWorker.ts", self).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const shim = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(shim, { eval: true });
}

function spawnWorker(): PooledWorker {
  const worker = spawnKernelWorker();
  const entry: PooledWorker = { worker, pending: [] };
  const fail = (err: Error) => {
    const at = pool.indexOf(entry);
    if (at >= 0) pool.splice(at, 1);
    for (const p of entry.pending.splice(0)) p.reject(err);
  };
  entry.worker.on("message", (reply: KernelReply) => {
    const p = entry.pending.shift();
    if (entry.pending.length === 0) entry.worker.unref();
    if (!p) return;
    if (reply.error !== undefined) p.reject(new Error(reply.error));
    else p.resolve(reply.sums);
  });
  entry.worker.on("error", fail);
  entry.worker.on("exit", (code) => fail(new Error(`dppo worker exited with code ${code}`)));
  entry.worker.unref(); // idle workers never keep the process alive
  pool.push(entry);
  return entry;
}

function runOnWorker(entry: PooledWorker, job: KernelJob): Promise<DppoSums> {
  return new Promise((resolve, reject) => {
    entry.pending.push({ resolve, reject });
    entry.worker.ref(); // keep the process alive while a slice is out
    entry.worker.postMessage(job);
  });
}

/** Start `count` kernel workers ahead of time (the first start of a worker takes tens of ms). */
export async function warmDppoWorkers(count = os.availableParallelism() - 1): Promise<void> {
  while (pool.length < count) spawnWorker();
  const tiny = new Float64Array(new SharedArrayBuffer(8));
  const job: KernelJob = { logpi: tiny, logmu: tiny, adv: tiny, lossMask: new Uint8Array(new SharedArrayBuffer(1)), mask: new Uint8Array(new SharedArrayBuffer(1)), delta: DPPO_DELTA, start: 0, end: 1 };
  await Promise.all(pool.slice(0, count).map((w) => runOnWorker(w, job)));
}

/** Stop all kernel workers (tests and short scripts; idle workers do not hold the process open anyway). */
export async function closeDppoWorkers(): Promise<void> {
  const all = pool.splice(0);
  await Promise.all(all.map((w) => w.worker.terminate()));
}

const isShared = (a: ArrayBufferView): boolean => a.buffer instanceof SharedArrayBuffer;

export function sharedFloat32Array(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * 4));
}
export function sharedUint8Array(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}

/**
 * dppoBatch on `threads` cores (default: all). Needs SharedArrayBuffer-backed inputs and maskOut
 * (see sharedFloat32Array/sharedUint8Array); with ordinary arrays, or a small batch, it runs the
 * serial kernel instead, since copying would cost more than it saves. Mask and counts equal the
 * serial result exactly; sums (loss, mean |π−μ|, mean r) may differ in the last bits because the
 * slices are added in a different order.
 */
export async function dppoBatchParallel(input: DppoBatchInput, options: { threads?: number } = {}): Promise<DppoBatchResult> {
  const n = validateBatch(input);
  const threads = Math.max(1, Math.floor(options.threads ?? os.availableParallelism()));
  const mask = input.maskOut ?? (threads > 1 ? sharedUint8Array(n) : new Uint8Array(n));
  const shareable = [input.logpi, input.logmu, input.adv, input.lossMask, mask].every(isShared);
  if (threads === 1 || n < PARALLEL_MIN_TOKENS || !shareable) return dppoBatch({ ...input, maskOut: mask });

  while (pool.length < threads - 1) spawnWorker();
  const delta = input.delta ?? DPPO_DELTA;
  const bounds = Array.from({ length: threads + 1 }, (_, t) => Math.round((t * n) / threads));
  const { logpi, logmu, adv, lossMask } = input;
  const remote = pool
    .slice(0, threads - 1)
    .map((w, t) => runOnWorker(w, { logpi, logmu, adv, lossMask, mask, delta, start: bounds[t + 1], end: bounds[t + 2] }));
  const local = emptyDppoSums();
  try {
    accumulateDppo(input, bounds[0], bounds[1], mask, local);
  } catch (err) {
    await Promise.allSettled(remote); // let the workers finish before reporting; nothing left dangling
    throw err;
  }
  const parts = await Promise.all(remote);
  const sums = parts.reduce(mergeDppoSums, local);
  return { ...finalizeDppo(sums), mask };
}
