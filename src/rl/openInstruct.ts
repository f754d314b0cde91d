// The files open-instruct writes with `--save_traces` (rl_utils.py), read as they are:
//  - JSON lines from Python's json.dumps, which writes bare `NaN`, `Infinity`, `-Infinity` tokens;
//  - `{run}_trainer_logprobs_step{step:06d}[_rank{rank:05d}].jsonl`, one line per packed micro-batch,
//    every array shifted by one (logprob_token_offset 1: entry t scores input_token_ids[t + 1]),
//    boolean masks, packed sequence ids in attention_mask, the rollout sample of each token in
//    rollout_sample_ids (−1 on padding), NaN vLLM logprobs on prompt tokens.
// tmax's own per-sample trainer lines (one sample, response-aligned arrays) are read by the same code.

/** The numbers Python's json module writes that JSON.parse does not accept. */
const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
const MARK = "\u0000tmax-nonfinite:";

/**
 * JSON.parse that also accepts Python's bare NaN / Infinity / -Infinity number tokens (outside strings).
 * Plain JSON takes the fast path; only a line that fails is rescanned.
 */
export function parseJsonWithNaN(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    if (!/NaN|Infinity/.test(text)) throw err;
  }
  // Rewrite each bare token as a marker string, outside string literals, then map markers back.
  let out = "";
  let from = 0;
  let inString = false;
  let replaced = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) {
      inString = true;
      continue;
    }
    for (const token of ["-Infinity", "Infinity", "NaN"]) {
      if (text.startsWith(token, i)) {
        out += text.slice(from, i) + JSON.stringify(MARK + token);
        i += token.length - 1;
        from = i + 1;
        replaced = true;
        break;
      }
    }
  }
  if (!replaced) return JSON.parse(text); // rethrows the original kind of error
  out += text.slice(from);
  return JSON.parse(out, (_key, value) =>
    typeof value === "string" && value.startsWith(MARK) ? NON_FINITE[value.slice(MARK.length)] : value,
  );
}

/** `{run}_trainer_logprobs_step{NNNNNN}[_rank{NNNNN}].jsonl` (rank suffix as open-instruct writes it with several ranks). */
export const TRAINER_LOGPROBS_FILE = /^(.+)_trainer_logprobs_step(\d{6,})(?:_rank(\d{5,}))?\.jsonl$/;

/** One sample's slice of a trainer line: the tokens DPPO sees for it, in order. */
export interface TrainerSample {
  step: number;
  sample_idx: number; // rollout sample index (rollout record's sample_idx)
  token_ids: number[]; // the sample's response tokens (model and tool spans), in order
  trainer_logprobs: number[]; // logπ of each, from the learner
  vllm_logprobs: number[]; // logμ of each (NaN where the sampler gave none)
  response_mask: number[]; // 1 = trained
  advantage?: number;
  model_step?: number; // policy version that sampled it (open-instruct's model_steps), when known
}

const isNumber = (v: unknown): v is number => typeof v === "number";
/** A mask value as the trainer reads it (`.bool()`): any nonzero number is true, so packed files may hold sample ids (i+1). */
const flag = (v: unknown): number => (v === true || (typeof v === "number" && v !== 0) ? 1 : 0);

/** True for open-instruct's packed layout (as opposed to tmax's per-sample trainer line). */
export function isPackedTrainerLine(line: Record<string, unknown>): boolean {
  return Array.isArray(line.rollout_sample_ids) || line.logprob_token_offset === 1;
}

/**
 * The samples in one trainer-logprobs line. A tmax line is one sample. An open-instruct line is a packed
 * micro-batch: a sample's response tokens are the positions t with rollout_sample_ids[t] = its index and
 * prompt_mask[t] false (shifted arrays, so t scores token_ids[t] = input_token_ids[t + 1]); without
 * prompt_mask, the positions with response_mask true. Returns an error string when the line is unusable.
 */
export function trainerLineSamples(line: Record<string, unknown>, fileStep?: number): TrainerSample[] | string {
  const step = isNumber(line.step) ? line.step : fileStep;
  if (step === undefined) return "no step";
  const tr = line.trainer_logprobs;
  const vl = line.vllm_logprobs;
  const mask = line.response_mask;
  const ids = line.token_ids;
  if (!Array.isArray(tr) || !Array.isArray(vl) || !Array.isArray(mask)) return "needs trainer_logprobs, vllm_logprobs and response_mask arrays";
  const n = tr.length;
  if (vl.length !== n || mask.length !== n || (Array.isArray(ids) && ids.length !== n)) {
    return `arrays differ in length (trainer_logprobs ${n}, vllm_logprobs ${vl.length}, response_mask ${mask.length}${Array.isArray(ids) ? `, token_ids ${ids.length}` : ""})`;
  }
  for (let t = 0; t < n; t++) if (!isNumber(tr[t]) || !isNumber(vl[t])) return `non-numeric logprob at ${t}`;
  const tokenAt = (t: number): number => (Array.isArray(ids) && isNumber(ids[t]) ? ids[t] : -1);

  if (!isPackedTrainerLine(line)) {
    if (!isNumber(line.sample_idx)) return "no sample_idx";
    return [
      {
        step,
        sample_idx: line.sample_idx,
        token_ids: Array.from({ length: n }, (_, t) => tokenAt(t)),
        trainer_logprobs: tr as number[],
        vllm_logprobs: vl as number[],
        response_mask: (mask as unknown[]).map(flag),
        ...(isNumber(line.advantage) ? { advantage: line.advantage } : {}),
      },
    ];
  }

  const sid = line.rollout_sample_ids;
  if (!Array.isArray(sid) || sid.length !== n) return "packed line without rollout_sample_ids of the same length";
  const prompt = Array.isArray(line.prompt_mask) && line.prompt_mask.length === n ? line.prompt_mask : null;
  const steps = Array.isArray(line.model_steps) && line.model_steps.length === n ? line.model_steps : null;
  const bySample = new Map<number, TrainerSample>();
  for (let t = 0; t < n; t++) {
    const s = sid[t];
    if (!isNumber(s) || s < 0) continue; // padding
    const inResponse = prompt ? !flag(prompt[t]) : flag(mask[t]) === 1;
    if (!inResponse) continue;
    let sample = bySample.get(s);
    if (!sample) {
      sample = { step, sample_idx: s, token_ids: [], trainer_logprobs: [], vllm_logprobs: [], response_mask: [] };
      const ms = steps ? steps[t] : undefined;
      if (isNumber(ms) && ms >= 0) sample.model_step = ms;
      bySample.set(s, sample);
    }
    sample.token_ids.push(tokenAt(t));
    sample.trainer_logprobs.push(tr[t] as number);
    sample.vllm_logprobs.push(vl[t] as number);
    sample.response_mask.push(flag(mask[t]));
  }
  return [...bySample.values()];
}

/**
 * Order in which a step's trainer lines are combined: open-instruct's rank files are concatenated by
 * (dp_rank, sp_rank) — with sequence parallelism each rank holds a slice of the same micro-batch.
 */
export function rankOrder(line: Record<string, unknown>): [number, number] {
  const rank = isNumber(line.rank) ? line.rank : 0;
  return [isNumber(line.dp_rank) ? line.dp_rank : rank, isNumber(line.sp_rank) ? line.sp_rank : 0];
}
