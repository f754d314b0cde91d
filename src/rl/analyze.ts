// What DPPO did at each step of a run, recomputed from files: rollouts joined with trainer logprobs
// on (step, sample_idx), then the mask, loss and trust-region statistics of dppo.ts.
import { accumulateDppo, DPPO_DELTA, dppoToken, emptyDppoSums, finalizeDppo, mergeDppoSums, type DppoStats } from "./dppo.js";
import { readRollouts, type ReadJsonlOptions } from "./records.js";
import type { TrainerSample } from "./openInstruct.js";
import { LooseRolloutRecord } from "./schema.js";
import { listTrainerLogprobs, readTrainerSamples } from "./trainerLogprobs.js";

/** The rollout side of the join: a full record, or a compact one (analyzeRun) with fingerprints instead of arrays. */
export interface RolloutSide {
  step: number;
  sample_idx: number;
  prompt_idx?: number;
  reward?: number;
  advantage?: number;
  prompt_tokens?: readonly number[];
  response_tokens?: readonly number[];
  logprobs?: readonly number[];
  fingerprint?: RolloutFingerprint;
}

export interface RolloutFingerprint {
  promptLength: number;
  responseLength: number;
  tokens: number; // hash of response_tokens
  logprobs: number; // hash of logprobs rounded to float32 (open-instruct stores μ as float32 in trainer files)
}

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** FNV-1a over the float64 bits of each number: equal arrays hash equal, any changed bit almost surely not. */
export function hashNumbers(values: ArrayLike<number>, from = 0, to = values.length): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    f64[0] = values[i];
    h = Math.imul(h ^ u32[0], 0x01000193);
    h = Math.imul(h ^ u32[1], 0x01000193);
  }
  return h >>> 0;
}

/** hashNumbers over the values rounded to float32 (NaN hashes as NaN). */
export function hashFloat32s(values: ArrayLike<number>, from = 0, to = values.length): number {
  const rounded = new Float64Array(Math.max(0, to - from));
  for (let i = from; i < to; i++) rounded[i - from] = Math.fround(values[i]);
  return hashNumbers(rounded);
}

export function fingerprintRollout(r: Pick<RolloutSide, "prompt_tokens" | "response_tokens" | "logprobs">): RolloutFingerprint {
  return {
    promptLength: r.prompt_tokens?.length ?? 0,
    responseLength: r.response_tokens?.length ?? 0,
    tokens: hashNumbers(r.response_tokens ?? []),
    logprobs: hashFloat32s(r.logprobs ?? []),
  };
}

export interface SampleAnalysis {
  sample_idx: number;
  prompt_idx: number | null;
  reward: number | null;
  advantage: number;
  tokenCount: number; // model tokens
  maskedCount: number;
  meanAbsDiff: number;
  lossSum: number; // this sample's share of the step's Σ −A·r·M
}

export interface StepAnalysis {
  step: number;
  delta: number;
  samples: number; // samples analysed
  loss: number; // global token mean over the step
  lossSum: number;
  tokenCount: number;
  stats: DppoStats;
  rewardMean: number | null; // over analysed samples with a known reward
  groups: number; // distinct prompt_idx among analysed samples
  perSample: SampleAnalysis[];
  /** Trainer lines with no rollout record (analysed if the line carries its own advantage). */
  missingRollout: number[];
  /** Rollout records of this step with no trainer line (not analysed). */
  missingTrainer: number[];
  /** Trainer lines with neither their own advantage nor a rollout record (not analysed). */
  noAdvantage: number[];
  /** token_ids differ from the rollout's response tokens. */
  tokenMismatch: number[];
  /** vllm_logprobs differ from the rollout's logprobs (the μ the learner used is not the one recorded). */
  muMismatch: number[];
  /** The trainer line's advantage differs from the rollout record's (the trainer line's is used). */
  advantageMismatch: number[];
  /** Model tokens whose loss term is NaN or ±inf in the trainer (float32 r overflowed), by sample: positions in its line. */
  nonFinite: { sample_idx: number; tokens: number[] }[];
  /** One line when the trainer's loss of this step is not finite, naming the tokens. */
  note?: string;
}

/**
 * Join one step's trainer samples (trainerLineSamples / readTrainerSamples) with its rollout records and
 * recompute DPPO.
 * logπ, logμ and the loss mask come from the trainer line (what the learner saw); the advantage
 * from the trainer line when it has one, else from the rollout record. Lines may be aligned with the
 * response tokens or with prompt + response; either way the line's own response_mask selects tokens.
 */
export function analyzeStep(
  rollouts: readonly RolloutSide[],
  trainer: readonly TrainerSample[],
  options: { delta?: number } = {},
): StepAnalysis {
  const delta = options.delta ?? DPPO_DELTA;
  const steps = new Set(trainer.map((t) => t.step));
  if (steps.size > 1) throw new Error(`analyzeStep: trainer logprobs span steps ${[...steps].join(", ")}; pass one step at a time`);
  const step = trainer.length ? trainer[0].step : rollouts.length ? rollouts[0].step : 0;

  const bySample = new Map<number, RolloutSide>();
  for (const r of rollouts) if (r.step === step) bySample.set(r.sample_idx, r);

  const result: Omit<StepAnalysis, "loss" | "lossSum" | "tokenCount" | "stats" | "rewardMean" | "groups" | "samples"> = {
    step,
    delta,
    perSample: [],
    nonFinite: [],
    missingRollout: [],
    missingTrainer: [],
    noAdvantage: [],
    tokenMismatch: [],
    muMismatch: [],
    advantageMismatch: [],
  };

  // Pick the samples to analyse and size the step's arrays.
  const chosen: { t: TrainerSample; r: RolloutSide | undefined; advantage: number }[] = [];
  const seen = new Set<number>();
  let total = 0;
  for (const t of trainer) {
    seen.add(t.sample_idx);
    const r = bySample.get(t.sample_idx);
    if (!r) result.missingRollout.push(t.sample_idx);
    const advantage = t.advantage ?? r?.advantage;
    if (advantage === undefined) {
      result.noAdvantage.push(t.sample_idx);
      continue;
    }
    if (r) {
      if (t.advantage !== undefined && r.advantage !== undefined && t.advantage !== r.advantage) result.advantageMismatch.push(t.sample_idx);
      const fp = r.fingerprint ?? fingerprintRollout(r);
      // Response-aligned lines compare directly; prompt+response lines compare their response part.
      const offset = t.token_ids.length === fp.responseLength ? 0 : t.token_ids.length === fp.promptLength + fp.responseLength ? fp.promptLength : -1;
      if (offset < 0 || hashNumbers(t.token_ids, offset) !== fp.tokens) result.tokenMismatch.push(t.sample_idx);
      else if (hashFloat32s(t.vllm_logprobs, offset) !== fp.logprobs) result.muMismatch.push(t.sample_idx);
    }
    chosen.push({ t, r, advantage });
    total += t.token_ids.length;
  }
  for (const r of bySample.values()) if (!seen.has(r.sample_idx)) result.missingTrainer.push(r.sample_idx);

  const logpi = new Float64Array(total);
  const logmu = new Float64Array(total);
  const adv = new Float64Array(total);
  const lossMask = new Uint8Array(total);
  let offset = 0;
  const ranges: number[] = [0];
  for (const { t, advantage } of chosen) {
    logpi.set(t.trainer_logprobs, offset);
    logmu.set(t.vllm_logprobs, offset);
    adv.fill(advantage, offset, offset + t.token_ids.length);
    for (let k = 0; k < t.response_mask.length; k++) lossMask[offset + k] = t.response_mask[k] ? 1 : 0;
    offset += t.token_ids.length;
    ranges.push(offset);
  }

  // Per-sample sums over the step's arrays, merged in order into the step total.
  const input = { logpi, logmu, adv, lossMask, delta };
  const mask = new Uint8Array(total);
  let stepSums = emptyDppoSums();
  let rewardSum = 0;
  let rewardCount = 0;
  const groups = new Set<number>();
  chosen.forEach(({ t, r, advantage }, k) => {
    const sums = emptyDppoSums();
    accumulateDppo(input, ranges[k], ranges[k + 1], mask, sums);
    stepSums = mergeDppoSums(stepSums, sums);
    if (sums.nonFiniteTerms > 0) result.nonFinite.push({ sample_idx: t.sample_idx, tokens: nonFiniteTokens(input, ranges[k], ranges[k + 1], delta) });
    const reward = r?.reward ?? null;
    if (reward !== null) {
      rewardSum += reward;
      rewardCount++;
    }
    if (r?.prompt_idx !== undefined) groups.add(r.prompt_idx);
    result.perSample.push({
      sample_idx: t.sample_idx,
      prompt_idx: r?.prompt_idx ?? null,
      reward,
      advantage,
      tokenCount: sums.tokenCount,
      maskedCount: sums.maskedCount,
      meanAbsDiff: sums.tokenCount ? sums.absDiffSum / sums.tokenCount : 0,
      lossSum: sums.lossSum + 0,
    });
  });
  const final = finalizeDppo(stepSums);
  if (result.nonFinite.length) result.note = nonFiniteNote(step, final.loss, result.nonFinite);
  return {
    ...result,
    samples: chosen.length,
    loss: final.loss,
    lossSum: final.lossSum,
    tokenCount: final.tokenCount,
    stats: final.stats,
    rewardMean: rewardCount ? rewardSum / rewardCount : null,
    groups: groups.size,
  };
}

/** Positions (in the sample's line) of model tokens whose trainer term is not finite; rare, so recomputed per token. */
function nonFiniteTokens(input: { logpi: Float64Array; logmu: Float64Array; adv: Float64Array; lossMask: Uint8Array }, from: number, to: number, delta: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) {
    if (input.lossMask[i] && !Number.isFinite(dppoToken(input.logpi[i], input.logmu[i], input.adv[i], delta).loss)) out.push(i - from);
  }
  return out;
}

function nonFiniteNote(step: number, loss: number, found: { sample_idx: number; tokens: number[] }[]): string {
  const shown = found.slice(0, 5).map((f) => `sample ${f.sample_idx} token${f.tokens.length > 1 ? "s" : ""} ${f.tokens.slice(0, 8).join(", ")}${f.tokens.length > 8 ? ", …" : ""}`);
  const more = found.length > 5 ? `; ${found.length - 5} more samples` : "";
  return `step ${step}: the trainer's loss is ${loss} — float32 r = exp(logπ − logμ) overflows (logμ far below logπ) at ${shown.join("; ")}${more}`;
}

export interface AnalyzeRunOptions extends ReadJsonlOptions {
  run?: string;
  delta?: number;
  /** Only these steps (default: every step that has a trainer-logprobs file). */
  steps?: readonly number[];
  /** Where the trainer-logprobs files are (default: the rollouts directory). */
  trainerDir?: string;
}

/**
 * Analyse every step of a run that has a trainer-logprobs file. Rollout shards are streamed once
 * with the permissive released-data schema; only a compact join key per record is kept in memory.
 */
export async function analyzeRun(rolloutsDir: string | readonly string[], options: AnalyzeRunOptions = {}): Promise<StepAnalysis[]> {
  const trainerSource = options.trainerDir ?? rolloutsDir;
  let trainerFiles = await listTrainerLogprobs(trainerSource, { run: options.run });
  if (options.steps) {
    const wanted = new Set(options.steps);
    trainerFiles = trainerFiles.filter((f) => wanted.has(f.step));
  }
  if (trainerFiles.length === 0) {
    throw new Error(`no trainer-logprobs files ({run}_trainer_logprobs_step{NNNNNN}[_rank{NNNNN}].jsonl) found in ${String(trainerSource)}`);
  }
  const stepsWanted = new Set(trainerFiles.map((f) => f.step));

  const compact = new Map<number, RolloutSide[]>();
  for await (const r of readRollouts(rolloutsDir, { run: options.run, schema: LooseRolloutRecord, onError: options.onError })) {
    if (!stepsWanted.has(r.step)) continue;
    let list = compact.get(r.step);
    if (!list) compact.set(r.step, (list = []));
    list.push({
      step: r.step,
      sample_idx: r.sample_idx,
      prompt_idx: r.prompt_idx,
      reward: r.reward,
      advantage: r.advantage,
      fingerprint: fingerprintRollout(r),
    });
  }

  const filesByStep = new Map<number, string[]>();
  for (const { file, step } of trainerFiles) filesByStep.set(step, [...(filesByStep.get(step) ?? []), file]);
  const out: StepAnalysis[] = [];
  for (const [step, files] of filesByStep) {
    const samples = await readTrainerSamples(files, { onError: options.onError });
    for (const s of samples) {
      if (s.step !== step) throw new Error(`${files.join(", ")}: line for sample_idx=${s.sample_idx} says step ${s.step}`);
    }
    out.push(analyzeStep(compact.get(step) ?? [], samples, { delta: options.delta }));
  }
  return out;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** A plain-text table of step analyses (one row per step) for terminals and logs. */
export function formatStepTable(analyses: readonly StepAnalysis[]): string {
  const header = ["step", "samples", "model tokens", "masked", "masked A>0", "masked A<0", "mean |π−μ|", "max |π−μ|", "mean r", "loss"];
  const rows = analyses.map((a) => [
    String(a.step),
    String(a.samples),
    String(a.tokenCount),
    pct(a.stats.maskedFraction),
    pct(a.stats.maskedFractionPosAdv),
    pct(a.stats.maskedFractionNegAdv),
    a.stats.meanAbsDiff.toFixed(5),
    a.stats.maxAbsDiff.toFixed(4),
    a.stats.meanRatio.toFixed(5),
    a.loss.toExponential(4),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const fmt = (cells: string[]) => cells.map((cell, c) => cell.padStart(widths[c])).join("  ");
  const notes = analyses.flatMap((a) => (a.note ? [`note: ${a.note}`] : []));
  return [fmt(header), ...rows.map(fmt), ...notes].join("\n");
}
