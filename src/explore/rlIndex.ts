// A compact index of one rollout shard set (+ its trainer-logprob files), built by streaming each file once:
// a few numbers per sample (reward, turns, tokens, DPPO mask counts) and each record's byte range, so
// per-step aggregates are cheap and one sample can be opened by seeking. Each file is indexed on its own
// and cached by path + size + mtime, so a run that grows (a new shard, a longer last shard) only costs
// a scan of what changed.
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describeError, type Issue, type RolloutSetRef } from "./load.js";
import { readRange, scanJsonl } from "./jsonl.js";
import { DPPO_DELTA, INVALID_LOGPROB, isPushedOut, probFromLogprob, ratioFromLogprobs } from "../rl/dppo.js";
import { parseJsonWithNaN, trainerLineSamples, type TrainerSample } from "../rl/openInstruct.js";

const INDEX_VERSION = 4;
const MAX_ISSUES_PER_FILE = 10;

/** Per-sample columns (parallel arrays; row i describes one record). */
export interface SampleColumns {
  step: number[];
  sampleIdx: number[];
  promptIdx: number[];
  task: number[]; // index into `tasks`
  exit: number[]; // index into `exits`
  reward: number[];
  advantage: number[]; // NaN in a file index when the record has none; filled (reward − group mean) in a run index
  turns: number[];
  responseTokens: number[];
  modelTokens: number[];
  toolCalls: number[];
  toolErrors: number[];
  shard: number[]; // index into `shards`
  offset: number[];
  length: number[];
}

/** Per-sample DPPO columns from trainer-logprob files. */
export interface DppoColumns {
  step: number[];
  sampleIdx: number[];
  modelTokens: number[];
  /** tokens the DPPO mask drops; -1 when the sample's advantage is unknown */
  masked: number[];
  sumAbsDiff: number[];
  file: number[]; // index into `trainerFiles`
  offset: number[];
  length: number[];
}

interface FileStamp {
  file: string;
  size: number;
  mtimeMs: number;
}

export interface RunIndex {
  version: number;
  run: string;
  dir: string;
  /** the dir its files are opened below */
  root: string;
  shards: FileStamp[];
  trainerFiles: (FileStamp & { step: number })[];
  tasks: string[];
  exits: string[];
  samples: SampleColumns;
  dppo: DppoColumns;
  issues: Issue[];
  bytes: number;
  /** time spent scanning files for this load (0 when everything came from the cache) */
  buildMs: number;
}

export interface StepAggregate {
  step: number;
  samples: number;
  meanReward: number;
  groups: number;
  informativeGroups: number;
  fracInformative: number;
  meanTurns: number;
  meanResponseTokens: number;
  meanModelTokens: number;
  meanToolCalls: number;
  exitCounts: Record<string, number>;
  /** null when the step has no trainer logprobs */
  fracMasked: number | null;
  meanAbsDiff: number | null;
}

export interface IndexProgress {
  bytesDone: number;
  bytesTotal: number;
}

/**
 * DPPO per-token statistics of one sample with the rule of src/rl/dppo.ts, over model-generated tokens:
 * D = |π − μ|, and how many tokens the mask would drop for a positive and for a negative advantage (the
 * rule depends only on A's sign, so the sample's count follows once its advantage is known).
 * Tokens whose logprobs are not numbers are skipped.
 */
export function dppoSampleStats(
  trainer: unknown[],
  vllm: unknown[],
  mask: unknown[] | null,
  delta = DPPO_DELTA,
): { modelTokens: number; maskedIfPos: number; maskedIfNeg: number; sumAbsDiff: number; skipped: number } {
  const n = Math.min(trainer.length, vllm.length);
  let modelTokens = 0;
  let maskedIfPos = 0;
  let maskedIfNeg = 0;
  let sumAbsDiff = 0;
  let skipped = 0;
  for (let t = 0; t < n; t++) {
    if (mask && mask[t] !== 1 && mask[t] !== true) continue;
    const a = trainer[t];
    // A NaN sampler logprob is open-instruct's "none": DPPO then uses INVALID_LOGPROB (1.0), as the reference does.
    const b = typeof vllm[t] === "number" && Number.isNaN(vllm[t]) ? INVALID_LOGPROB : vllm[t];
    if (typeof a !== "number" || typeof b !== "number" || Number.isNaN(a)) {
      skipped++;
      continue;
    }
    const pi = probFromLogprob(a);
    const mu = probFromLogprob(b);
    const d = Math.fround(Math.abs(pi - mu));
    const r = ratioFromLogprobs(a, b);
    modelTokens++;
    sumAbsDiff += d;
    if (isPushedOut(d, r, 1, delta)) maskedIfPos++;
    if (isPushedOut(d, r, -1, delta)) maskedIfNeg++;
  }
  return { modelTokens, maskedIfPos, maskedIfNeg, sumAbsDiff, skipped };
}

/** Per-token π, μ and DPPO mask of one trainer-logprob line, for the sample view (1 = masked). */
export function dppoTokens(
  line: Record<string, unknown>,
  fallbackAdvantage: number | null,
): { advantage: number | null; pi: number[]; mu: number[]; masked: number[]; model: number[] } | null {
  const tr = line.trainer_logprobs;
  const vl = line.vllm_logprobs;
  if (!Array.isArray(tr) || !Array.isArray(vl)) return null;
  const mask = Array.isArray(line.response_mask) ? (line.response_mask as unknown[]) : null;
  const advantage = isNum(line.advantage) ? line.advantage : fallbackAdvantage;
  const n = Math.min(tr.length, vl.length);
  const out = { advantage, pi: new Array<number>(n), mu: new Array<number>(n), masked: new Array<number>(n), model: new Array<number>(n) };
  for (let t = 0; t < n; t++) {
    const lm = typeof vl[t] === "number" && Number.isNaN(vl[t]) ? INVALID_LOGPROB : vl[t];
    const ok = isNum(tr[t]) && isNum(lm);
    const pi = ok ? probFromLogprob(tr[t] as number) : NaN;
    const mu = ok ? probFromLogprob(lm as number) : NaN;
    const model = (!mask || mask[t] === 1 || mask[t] === true) && ok;
    out.pi[t] = pi;
    out.mu[t] = mu;
    out.model[t] = model ? 1 : 0;
    out.masked[t] =
      model && advantage !== null && isPushedOut(Math.abs(pi - mu), ratioFromLogprobs(tr[t] as number, lm as number), advantage, DPPO_DELTA) ? 1 : 0;
  }
  return out;
}

export function defaultCacheDir(): string {
  return process.env.TMAX_EXPLORE_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "tmax", "explore");
}

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Collects per-file problems, capped, so a file with a million bad lines yields a readable list. */
class FileIssues {
  private count = 0;
  private missing = new Map<string, number>();
  constructor(private readonly file: string, private readonly issues: Issue[]) {}
  line(lineNo: number, problem: string) {
    if (++this.count <= MAX_ISSUES_PER_FILE) this.issues.push({ file: this.file, problem: `line ${lineNo}: ${problem}` });
  }
  missingField(name: string) {
    this.missing.set(name, (this.missing.get(name) ?? 0) + 1);
  }
  flush() {
    if (this.count > MAX_ISSUES_PER_FILE) this.issues.push({ file: this.file, problem: `${this.count - MAX_ISSUES_PER_FILE} more bad lines not listed` });
    if (this.missing.size) {
      const parts = [...this.missing].map(([k, n]) => `${k} (${n})`).join(", ");
      this.issues.push({ file: this.file, problem: `some records lack fields or hold non-numbers there (count): ${parts}` });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// one file

/** Index of one rollout shard: sample columns (shard column unused) with its own task/exit tables. */
interface ShardFileIndex {
  kind: "shard";
  stamp: FileStamp;
  tasks: string[];
  exits: string[];
  cols: SampleColumns;
  issues: Issue[];
}

/** Index of one trainer-logprob file: DPPO counts for both advantage signs, resolved when merging. */
interface TrainerFileIndex {
  kind: "trainer";
  stamp: FileStamp;
  step: number[];
  sampleIdx: number[];
  advantage: number[]; // NaN when the line has none
  modelTokens: number[];
  maskedIfPos: number[];
  maskedIfNeg: number[];
  sumAbsDiff: number[];
  offset: number[];
  length: number[];
  issues: Issue[];
}

type FileIndex = ShardFileIndex | TrainerFileIndex;

const emptySamples = (): SampleColumns => ({
  step: [], sampleIdx: [], promptIdx: [], task: [], exit: [], reward: [], advantage: [], turns: [],
  responseTokens: [], modelTokens: [], toolCalls: [], toolErrors: [], shard: [], offset: [], length: [],
});

async function indexShardFile(stamp: FileStamp, root: string, onBytes: (n: number) => void): Promise<ShardFileIndex> {
  const issues: Issue[] = [];
  const s = emptySamples();
  const taskIds = new Map<string, number>();
  const exitIds = new Map<string, number>();
  const idOf = (m: Map<string, number>, k: string) => {
    let id = m.get(k);
    if (id === undefined) m.set(k, (id = m.size));
    return id;
  };
  const fi = new FileIssues(stamp.file, issues);
  try {
    await scanJsonl(
      stamp.file,
      root,
      ({ lineNo, offset, length, text }) => {
        let r: Record<string, unknown>;
        try {
          r = parseJsonWithNaN(text) as Record<string, unknown>;
        } catch (err) {
          fi.line(lineNo, `invalid JSON (truncated record?): ${describeError(err)}`);
          return;
        }
        if (typeof r !== "object" || r === null || !isNum(r.step) || !isNum(r.sample_idx)) {
          fi.line(lineNo, "not a rollout record (needs numeric step and sample_idx); skipped");
          return;
        }
        const info = (typeof r.request_info === "object" && r.request_info ? r.request_info : {}) as Record<string, unknown>;
        const numOr = (v: unknown, name: string, dflt: number) => {
          if (isNum(v)) return v;
          fi.missingField(name);
          return dflt;
        };
        const mask = Array.isArray(r.response_mask) ? (r.response_mask as unknown[]) : null;
        let resp = 0;
        if (Array.isArray(r.response_tokens)) resp = r.response_tokens.length;
        else fi.missingField("response_tokens");
        let modelTokens = 0;
        if (mask) for (let i = 0; i < mask.length; i++) modelTokens += mask[i] === 1 ? 1 : 0;
        else {
          fi.missingField("response_mask");
          modelTokens = resp;
        }
        const toolCalls = isNum(info.num_calls) ? info.num_calls : 0;
        s.step.push(r.step);
        s.sampleIdx.push(r.sample_idx);
        s.promptIdx.push(numOr(r.prompt_idx, "prompt_idx", -1));
        s.task.push(idOf(taskIds, typeof r.task_name === "string" ? r.task_name : isNum(r.prompt_idx) ? `prompt ${r.prompt_idx}` : "unknown"));
        s.exit.push(idOf(exitIds, typeof r.exit_status === "string" ? r.exit_status : typeof r.finish_reason === "string" ? r.finish_reason : "unknown"));
        s.reward.push(numOr(r.reward, "reward", 0));
        s.advantage.push(isNum(r.advantage) ? r.advantage : NaN);
        s.turns.push(isNum(r.num_turns) ? r.num_turns : toolCalls);
        s.responseTokens.push(resp);
        s.modelTokens.push(modelTokens);
        s.toolCalls.push(toolCalls);
        s.toolErrors.push(isNum(info.tool_errors) ? info.tool_errors : 0);
        s.shard.push(0);
        s.offset.push(offset);
        s.length.push(length);
      },
      onBytes,
    );
  } catch (err) {
    issues.push({ file: stamp.file, problem: `cannot read: ${describeError(err)}` });
  }
  fi.flush();
  return { kind: "shard", stamp, tasks: [...taskIds.keys()], exits: [...exitIds.keys()], cols: s, issues };
}

async function indexTrainerFile(stamp: FileStamp, root: string, fileStep: number, onBytes: (n: number) => void): Promise<TrainerFileIndex> {
  const issues: Issue[] = [];
  const out: TrainerFileIndex = {
    kind: "trainer", stamp, step: [], sampleIdx: [], advantage: [], modelTokens: [], maskedIfPos: [], maskedIfNeg: [],
    sumAbsDiff: [], offset: [], length: [], issues,
  };
  const fi = new FileIssues(stamp.file, issues);
  try {
    await scanJsonl(
      stamp.file,
      root,
      ({ lineNo, offset, length, text }) => {
        let r: Record<string, unknown>;
        try {
          r = parseJsonWithNaN(text) as Record<string, unknown>;
        } catch (err) {
          fi.line(lineNo, `invalid JSON (truncated record?): ${describeError(err)}`);
          return;
        }
        if (typeof r !== "object" || r === null || !Array.isArray(r.trainer_logprobs) || !Array.isArray(r.vllm_logprobs)) {
          fi.line(lineNo, "needs trainer_logprobs and vllm_logprobs arrays; skipped");
          return;
        }
        // One line is one sample (tmax) or a packed micro-batch of several (open-instruct): a row per sample.
        const samples = trainerLineSamples(r, fileStep);
        if (typeof samples === "string") {
          fi.line(lineNo, `${samples}; skipped`);
          return;
        }
        for (const sample of samples) {
          const st = dppoSampleStats(sample.trainer_logprobs, sample.vllm_logprobs, sample.response_mask);
          if (st.skipped) fi.missingField("numeric logprobs");
          out.step.push(sample.step);
          out.sampleIdx.push(sample.sample_idx);
          out.advantage.push(isNum(sample.advantage) ? sample.advantage : NaN);
          out.modelTokens.push(st.modelTokens);
          out.maskedIfPos.push(st.maskedIfPos);
          out.maskedIfNeg.push(st.maskedIfNeg);
          out.sumAbsDiff.push(st.sumAbsDiff);
          out.offset.push(offset);
          out.length.push(length);
        }
      },
      onBytes,
    );
  } catch (err) {
    issues.push({ file: stamp.file, problem: `cannot read: ${describeError(err)}` });
  }
  fi.flush();
  return out;
}

// ---------------------------------------------------------------------------------------------
// cache

function cacheFileFor(cacheDir: string, stamp: FileStamp): string {
  const key = createHash("sha1").update(JSON.stringify({ v: INDEX_VERSION, ...stamp })).digest("hex").slice(0, 20);
  return path.join(cacheDir, `${path.basename(stamp.file).replace(/[^\w.-]/g, "_")}-${key}.json`);
}

async function readCached(cacheDir: string | null, stamp: FileStamp): Promise<FileIndex | null> {
  if (!cacheDir) return null;
  try {
    const v = JSON.parse(await readFile(cacheFileFor(cacheDir, stamp), "utf8")) as FileIndex;
    return v.stamp.file === stamp.file && v.stamp.size === stamp.size && v.stamp.mtimeMs === stamp.mtimeMs ? v : null;
  } catch {
    return null;
  }
}

async function writeCached(cacheDir: string | null, idx: FileIndex): Promise<void> {
  if (!cacheDir) return;
  try {
    await mkdir(cacheDir, { recursive: true });
    const file = cacheFileFor(cacheDir, idx.stamp);
    const tmp = `${file}.${process.pid}.tmp`;
    // NaN is not JSON: store it as null and read it back as NaN (see revive below)
    await writeFile(tmp, JSON.stringify(idx, (_k, v) => (typeof v === "number" && Number.isNaN(v) ? null : v)));
    await rename(tmp, file);
  } catch {
    // a read-only cache dir only costs a rescan next time
  }
}

const nanIfNull = (xs: (number | null)[]) => xs.map((x) => (x === null ? NaN : x));

// ---------------------------------------------------------------------------------------------
// run = merge of file indexes

export interface LoadRunOptions {
  /** on-disk cache dir; null = none (default: defaultCacheDir()) */
  cacheDir?: string | null;
  /** in-memory cache shared across calls (the server keeps one), keyed by file + size + mtime */
  memo?: Map<string, FileIndex>;
  onProgress?: (p: IndexProgress) => void;
}

async function stampOf(file: string, issues: Issue[]): Promise<FileStamp | null> {
  try {
    const st = await stat(file);
    return { file, size: st.size, mtimeMs: st.mtimeMs };
  } catch (err) {
    issues.push({ file, problem: `cannot read: ${describeError(err)}` });
    return null;
  }
}

/** True when a file of the set was added, removed, or changed size/mtime since `index` was built. */
export async function runIndexIsStale(set: RolloutSetRef, index: RunIndex): Promise<boolean> {
  const files = [...set.shards, ...set.trainerLogprobs.map((t) => t.file)];
  const known = [...index.shards, ...index.trainerFiles];
  if (files.length !== known.length) return true;
  for (const k of known) {
    if (!files.includes(k.file)) return true;
    const st = await stampOf(k.file, []);
    if (!st || st.size !== k.size || st.mtimeMs !== k.mtimeMs) return true;
  }
  return false;
}

/** Loads (cached) or builds the index of a rollout set. Never throws on bad data: see `issues`. */
export async function loadRunIndex(set: RolloutSetRef, opts: LoadRunOptions = {}): Promise<RunIndex> {
  const cacheDir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
  const root = set.root ?? set.dir;
  const issues: Issue[] = [];
  const shardStamps = (await Promise.all(set.shards.map((f) => stampOf(f, issues)))).filter((s): s is FileStamp => s !== null);
  const trainerStamps: (FileStamp & { step: number })[] = [];
  for (const t of set.trainerLogprobs) {
    const st = await stampOf(t.file, issues);
    if (st) trainerStamps.push({ ...st, step: t.step });
  }
  const memoKey = (s: FileStamp) => `${s.file}\0${s.size}\0${s.mtimeMs}`;
  const all: FileStamp[] = [...shardStamps, ...trainerStamps];
  const loaded = new Map<FileStamp, FileIndex>();
  const toScan: FileStamp[] = [];
  for (const st of all) {
    const hit = opts.memo?.get(memoKey(st)) ?? (await readCached(cacheDir, st));
    if (hit) loaded.set(st, hit);
    else toScan.push(st);
  }
  const bytesTotal = toScan.reduce((a, f) => a + f.size, 0);
  let bytesBefore = 0;
  const t0 = Date.now();
  for (const st of toScan) {
    const onBytes = (n: number) => opts.onProgress?.({ bytesDone: bytesBefore + n, bytesTotal });
    const trainer = trainerStamps.find((t) => t === st);
    const idx = trainer ? await indexTrainerFile(st, root, trainer.step, onBytes) : await indexShardFile(st, root, onBytes);
    bytesBefore += st.size;
    loaded.set(st, idx);
    await writeCached(cacheDir, idx);
  }
  const buildMs = toScan.length ? Date.now() - t0 : 0;
  opts.onProgress?.({ bytesDone: bytesTotal, bytesTotal });
  if (opts.memo) for (const [st, idx] of loaded) opts.memo.set(memoKey(st), idx);
  const run = mergeIndexes(set, shardStamps.map((s) => loaded.get(s) as ShardFileIndex), trainerStamps, trainerStamps.map((s) => loaded.get(s) as TrainerFileIndex));
  return { ...run, issues: [...issues, ...run.issues], buildMs, bytes: all.reduce((a, f) => a + f.size, 0) };
}

function mergeIndexes(
  set: RolloutSetRef,
  shards: ShardFileIndex[],
  trainerStamps: (FileStamp & { step: number })[],
  trainers: TrainerFileIndex[],
): Omit<RunIndex, "buildMs" | "bytes"> {
  const issues: Issue[] = [];
  const s = emptySamples();
  const tasks = new Map<string, number>();
  const exits = new Map<string, number>();
  const idOf = (m: Map<string, number>, k: string) => {
    let id = m.get(k);
    if (id === undefined) m.set(k, (id = m.size));
    return id;
  };
  const rowOf = new Map<number, number>(); // step · 2^20 + sample_idx → row
  const keyOf = (step: number, idx: number) => step * 1048576 + idx;
  let duplicates = 0;
  const cols = Object.keys(s) as (keyof SampleColumns)[];
  shards.forEach((sh, shardNo) => {
    issues.push(...sh.issues);
    const c = sh.cols;
    const adv = nanIfNull(c.advantage as (number | null)[]);
    const taskMap = sh.tasks.map((t) => idOf(tasks, t));
    const exitMap = sh.exits.map((e) => idOf(exits, e));
    for (let i = 0; i < c.step.length; i++) {
      const k = keyOf(c.step[i], c.sampleIdx[i]);
      if (rowOf.has(k)) {
        duplicates++;
        continue;
      }
      rowOf.set(k, s.step.length);
      for (const col of cols) s[col].push(c[col][i]);
      s.task[s.task.length - 1] = taskMap[c.task[i]];
      s.exit[s.exit.length - 1] = exitMap[c.exit[i]];
      s.advantage[s.advantage.length - 1] = adv[i];
      s.shard[s.shard.length - 1] = shardNo;
    }
  });
  if (duplicates) issues.push({ file: set.dir, problem: `${duplicates} records repeat a (step, sample_idx) already seen; the first is kept` });
  if (shards.length && s.step.length === 0) issues.push({ file: set.dir, problem: `no readable rollout records in ${shards.length} shard(s)` });
  // records without advantage: recompute it as DPPO does (reward − group mean)
  fillMissingAdvantages(s);

  const d: DppoColumns = { step: [], sampleIdx: [], modelTokens: [], masked: [], sumAbsDiff: [], file: [], offset: [], length: [] };
  let unknownAdv = 0;
  trainers.forEach((t, fileNo) => {
    issues.push(...t.issues);
    const lineAdv = nanIfNull(t.advantage as (number | null)[]);
    for (let i = 0; i < t.step.length; i++) {
      let a = lineAdv[i];
      if (!Number.isFinite(a)) {
        const row = rowOf.get(keyOf(t.step[i], t.sampleIdx[i]));
        a = row === undefined ? NaN : s.advantage[row];
      }
      if (!Number.isFinite(a)) unknownAdv++;
      d.step.push(t.step[i]);
      d.sampleIdx.push(t.sampleIdx[i]);
      d.modelTokens.push(t.modelTokens[i]);
      d.masked.push(!Number.isFinite(a) ? -1 : a > 0 ? t.maskedIfPos[i] : a < 0 ? t.maskedIfNeg[i] : 0);
      d.sumAbsDiff.push(t.sumAbsDiff[i]);
      d.file.push(fileNo);
      d.offset.push(t.offset[i]);
      d.length.push(t.length[i]);
    }
  });
  if (unknownAdv) {
    issues.push({ file: set.dir, problem: `${unknownAdv} trainer-logprob samples have no advantage (neither in the line nor in a rollout record); the masked fraction leaves them out` });
  }
  return {
    version: INDEX_VERSION,
    run: set.run,
    dir: set.dir,
    root: set.root ?? set.dir,
    shards: shards.map((x) => x.stamp),
    trainerFiles: trainerStamps,
    tasks: [...tasks.keys()],
    exits: [...exits.keys()],
    samples: s,
    dppo: d,
    issues,
  };
}

function fillMissingAdvantages(s: SampleColumns): void {
  const groups = new Map<string, number[]>();
  for (let i = 0; i < s.step.length; i++) {
    if (Number.isFinite(s.advantage[i])) continue;
    const k = `${s.step[i]}:${s.promptIdx[i]}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(i);
  }
  if (!groups.size) return;
  const sums = new Map<string, { sum: number; n: number }>();
  for (let i = 0; i < s.step.length; i++) {
    const k = `${s.step[i]}:${s.promptIdx[i]}`;
    if (!groups.has(k)) continue;
    const a = sums.get(k) ?? { sum: 0, n: 0 };
    a.sum += s.reward[i];
    a.n++;
    sums.set(k, a);
  }
  for (const [k, rows] of groups) {
    const { sum, n } = sums.get(k)!;
    for (const i of rows) s.advantage[i] = s.reward[i] - sum / n;
  }
}

/** Per-step means, informative-group fraction and DPPO mask statistics. */
export function stepAggregates(index: RunIndex): StepAggregate[] {
  const s = index.samples;
  type Acc = {
    n: number; reward: number; turns: number; resp: number; model: number; calls: number;
    groups: Map<number, { min: number; max: number }>; exits: Record<string, number>;
    dTokens: number; dMasked: number; dMaskTokens: number; dAbs: number;
  };
  const by = new Map<number, Acc>();
  const acc = (step: number): Acc => {
    let a = by.get(step);
    if (!a) by.set(step, (a = { n: 0, reward: 0, turns: 0, resp: 0, model: 0, calls: 0, groups: new Map(), exits: {}, dTokens: 0, dMasked: 0, dMaskTokens: 0, dAbs: 0 }));
    return a;
  };
  for (let i = 0; i < s.step.length; i++) {
    const a = acc(s.step[i]);
    a.n++;
    a.reward += s.reward[i];
    a.turns += s.turns[i];
    a.resp += s.responseTokens[i];
    a.model += s.modelTokens[i];
    a.calls += s.toolCalls[i];
    const exit = index.exits[s.exit[i]];
    a.exits[exit] = (a.exits[exit] ?? 0) + 1;
    const g = a.groups.get(s.promptIdx[i]);
    if (!g) a.groups.set(s.promptIdx[i], { min: s.reward[i], max: s.reward[i] });
    else {
      if (s.reward[i] < g.min) g.min = s.reward[i];
      if (s.reward[i] > g.max) g.max = s.reward[i];
    }
  }
  const d = index.dppo;
  for (let i = 0; i < d.step.length; i++) {
    const a = acc(d.step[i]);
    a.dTokens += d.modelTokens[i];
    a.dAbs += d.sumAbsDiff[i];
    if (d.masked[i] >= 0) {
      a.dMasked += d.masked[i];
      a.dMaskTokens += d.modelTokens[i];
    }
  }
  return [...by.entries()]
    .sort((x, y) => x[0] - y[0])
    .map(([step, a]) => {
      const informative = [...a.groups.values()].filter((g) => g.min !== g.max).length;
      const div = (x: number) => (a.n ? x / a.n : 0);
      return {
        step,
        samples: a.n,
        meanReward: div(a.reward),
        groups: a.groups.size,
        informativeGroups: informative,
        fracInformative: a.groups.size ? informative / a.groups.size : 0,
        meanTurns: div(a.turns),
        meanResponseTokens: div(a.resp),
        meanModelTokens: div(a.model),
        meanToolCalls: div(a.calls),
        exitCounts: a.exits,
        fracMasked: a.dMaskTokens ? a.dMasked / a.dMaskTokens : null,
        meanAbsDiff: a.dTokens ? a.dAbs / a.dTokens : null,
      };
    });
}

export interface SampleFilter {
  step?: number;
  task?: string;
  exit?: string;
  minReward?: number;
  maxReward?: number;
  offset?: number;
  limit?: number;
}

export interface SampleRow {
  step: number;
  sampleIdx: number;
  promptIdx: number;
  task: string;
  exit: string;
  reward: number;
  advantage: number;
  turns: number;
  responseTokens: number;
  modelTokens: number;
  toolCalls: number;
  toolErrors: number;
}

/** Filtered page of sample rows, in (step, sample_idx) order. */
export function listSamples(index: RunIndex, f: SampleFilter): { total: number; rows: SampleRow[] } {
  const s = index.samples;
  const task = f.task?.toLowerCase();
  const rows: number[] = [];
  for (let i = 0; i < s.step.length; i++) {
    if (f.step !== undefined && s.step[i] !== f.step) continue;
    if (task && !index.tasks[s.task[i]].toLowerCase().includes(task)) continue;
    if (f.exit && index.exits[s.exit[i]] !== f.exit) continue;
    if (f.minReward !== undefined && s.reward[i] < f.minReward) continue;
    if (f.maxReward !== undefined && s.reward[i] > f.maxReward) continue;
    rows.push(i);
  }
  rows.sort((a, b) => s.step[a] - s.step[b] || s.sampleIdx[a] - s.sampleIdx[b]);
  const start = f.offset ?? 0;
  const page = rows.slice(start, start + (f.limit ?? 200));
  return {
    total: rows.length,
    rows: page.map((i) => ({
      step: s.step[i],
      sampleIdx: s.sampleIdx[i],
      promptIdx: s.promptIdx[i],
      task: index.tasks[s.task[i]],
      exit: index.exits[s.exit[i]],
      reward: s.reward[i],
      advantage: s.advantage[i],
      turns: s.turns[i],
      responseTokens: s.responseTokens[i],
      modelTokens: s.modelTokens[i],
      toolCalls: s.toolCalls[i],
      toolErrors: s.toolErrors[i],
    })),
  };
}

/** One rollout record (read by seeking to its byte range) and, when present, its trainer-logprob line. */
export async function readSample(
  index: RunIndex,
  step: number,
  sampleIdx: number,
): Promise<{
  record: Record<string, unknown> | null;
  trainer: Record<string, unknown> | null;
  dppo: ReturnType<typeof dppoTokens>;
  issues: Issue[];
}> {
  const issues: Issue[] = [];
  const s = index.samples;
  let record: Record<string, unknown> | null = null;
  let trainer: Record<string, unknown> | null = null;
  let row = -1;
  for (let i = 0; i < s.step.length; i++) if (s.step[i] === step && s.sampleIdx[i] === sampleIdx) row = i;
  if (row < 0) issues.push({ file: index.dir, problem: `no rollout record with step ${step} and sample_idx ${sampleIdx}` });
  else {
    const file = index.shards[s.shard[row]].file;
    try {
      record = parseJsonWithNaN(await readRange(file, index.root, s.offset[row], s.length[row])) as Record<string, unknown>;
    } catch (err) {
      issues.push({ file, problem: `cannot read record at byte ${s.offset[row]}: ${describeError(err)} (file changed since indexing?)` });
    }
  }
  const d = index.dppo;
  for (let i = 0; i < d.step.length; i++) {
    if (d.step[i] !== step || d.sampleIdx[i] !== sampleIdx) continue;
    const file = index.trainerFiles[d.file[i]].file;
    try {
      // The line may be a packed micro-batch: keep only this sample's tokens.
      const line = parseJsonWithNaN(await readRange(file, index.root, d.offset[i], d.length[i])) as Record<string, unknown>;
      const samples = trainerLineSamples(line);
      const mine = typeof samples === "string" ? undefined : samples.find((x: TrainerSample) => x.sample_idx === sampleIdx);
      if (mine) trainer = { ...mine };
      else issues.push({ file, problem: `trainer logprobs at byte ${d.offset[i]} hold no sample ${sampleIdx}${typeof samples === "string" ? `: ${samples}` : ""}` });
    } catch (err) {
      issues.push({ file, problem: `cannot read trainer logprobs at byte ${d.offset[i]}: ${describeError(err)}` });
    }
    break;
  }
  const adv = row >= 0 && Number.isFinite(s.advantage[row]) ? s.advantage[row] : null;
  return { record, trainer, dppo: trainer ? dppoTokens(trainer, adv) : null, issues };
}
