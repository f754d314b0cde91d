import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { analyzeRun, analyzeStep, formatStepTable } from "../../../src/rl/analyze.js";
import { dppoBatch } from "../../../src/rl/dppo.js";
import { exportRolloutsToParquet, readRolloutsParquet } from "../../../src/rl/parquet.js";
import {
  createRolloutWriter,
  readLearnerBatch,
  readRollouts,
  writeLearnerBatch,
  type JsonlReadError,
} from "../../../src/rl/records.js";
import { LooseRolloutRecord, type RolloutRecord, type TrainerLogprobsRecord } from "../../../src/rl/schema.js";
import { listTrainerLogprobs, readTrainerLogprobs, trainerLogprobsName, writeTrainerLogprobs } from "../../../src/rl/trainerLogprobs.js";
import { seededRandom } from "../../../src/util/random.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");


/** A rollout record shaped like tmax's: model spans (mask 1, real logprobs) and observation spans (mask 0, logprob 0). */
function makeRecord(step: number, sampleIdx: number, rand: () => number, responseLength = 40): RolloutRecord {
  const response_tokens: number[] = [];
  const logprobs: number[] = [];
  const response_mask: number[] = [];
  for (let t = 0; t < responseLength; t++) {
    const model = Math.floor(t / 8) % 2 === 0;
    response_tokens.push(Math.floor(rand() * 151_000));
    response_mask.push(model ? 1 : 0);
    // Full float64 logprobs, including awkward values, must survive every format exactly.
    logprobs.push(model ? -rand() * rand() * 5 : 0);
  }
  if (responseLength > 2) logprobs[1] = -1.2345678901234567e-9;
  const reward = sampleIdx % 3 === 0 ? 1 : 0;
  return {
    step,
    sample_idx: sampleIdx,
    prompt_idx: Math.floor(sampleIdx / 4),
    task_name: `task-${Math.floor(sampleIdx / 4)}`,
    dataset: "tb2-offline",
    ground_truth: sampleIdx % 2 ? null : "",
    policy_version: "Qwen/Qwen3.5-9B@3",
    prompt_tokens: Array.from({ length: 12 }, (_, i) => 151_644 + (i % 3)),
    response_tokens,
    logprobs,
    response_mask,
    num_prompt_tokens: 12,
    num_response_tokens: response_tokens.length,
    num_model_tokens: response_mask.filter((m) => m === 1).length,
    reward,
    advantage: reward - 1 / 3,
    finish_reason: "stop",
    request_info: {
      num_calls: 2,
      timeouts: sampleIdx % 5 === 0 ? 1 : 0,
      tool_errors: 1,
      tool_outputs: ["total 0\n", "bash: x: command not found ✗"],
      tool_runtimes: [0.013, 30.000000001],
      tool_calleds: [true, true, false],
    },
    num_turns: 3,
    exit_status: "submitted",
    trajectory_path: sampleIdx % 2 ? `/runs/t/${sampleIdx}/trajectory.json` : null,
    created_at: "2025-06-01T12:00:00.000Z",
  };
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "tmax-rl-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shards

test("rollout writer: 10k-style sharding, .partial until full, exact names, stream-read back in order", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(1);
  const records = Array.from({ length: 7 }, (_, i) => makeRecord(0, i, rand));
  const writer = await createRolloutWriter(dir, "run1", { shardSize: 3 });
  for (const r of records.slice(0, 4)) await writer.write(r);
  // One full shard renamed; the second still open as .partial and invisible to readers.
  assert.deepEqual((await readdir(dir)).sort(), ["run1_rollouts_000000.jsonl", "run1_rollouts_000001.jsonl.partial"]);
  assert.equal((await collect(readRollouts(dir))).length, 3);
  await Promise.all(records.slice(4).map((r) => writer.write(r))); // un-awaited writes keep order
  const files = await writer.close();
  assert.deepEqual(
    files.map((f) => path.basename(f)),
    ["run1_rollouts_000000.jsonl", "run1_rollouts_000001.jsonl", "run1_rollouts_000002.jsonl"],
  );
  assert.deepEqual((await readdir(dir)).sort(), files.map((f) => path.basename(f)).sort());
  assert.deepEqual(await collect(readRollouts(dir)), records);
  // Each line is one record; the last shard holds the remainder.
  const lastShard = await readFile(files[2], "utf8");
  assert.equal(lastShard.split("\n").filter(Boolean).length, 1);
  await assert.rejects(writer.write(records[0]), /closed/);
});

test("rollout writer: default shard size is 10,000; a restarted writer continues numbering", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(2);
  const first = await createRolloutWriter(dir, "r");
  for (let i = 0; i < 3; i++) await first.write(makeRecord(0, i, rand, 4));
  assert.deepEqual(await readdir(dir), ["r_rollouts_000000.jsonl.partial"], "10k not reached: still partial");
  await first.close();
  // A crash leaves a .partial behind; a new writer must not overwrite it or the finished shard.
  await writeFile(path.join(dir, "r_rollouts_000001.jsonl.partial"), "{\"torn\":");
  const second = await createRolloutWriter(dir, "r");
  await second.write(makeRecord(1, 0, rand, 4));
  const [file] = await second.close();
  assert.equal(path.basename(file), "r_rollouts_000002.jsonl");
  // Other runs in the same directory are separate; the reader can filter by run.
  const other = await createRolloutWriter(dir, "other");
  await other.write(makeRecord(5, 0, rand, 4));
  await other.close();
  assert.equal((await collect(readRollouts(dir, { run: "r" }))).length, 4);
  assert.equal((await collect(readRollouts(dir))).length, 5);
  // An empty writer leaves no file.
  const empty = await createRolloutWriter(dir, "empty");
  assert.deepEqual(await empty.close(), []);
});

test("rollout writer: invalid records are rejected with one line; the writer keeps going", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(3);
  const writer = await createRolloutWriter(dir, "v", { shardSize: 10 });
  const bad = { ...makeRecord(0, 0, rand), reward: "high" } as unknown as RolloutRecord;
  await assert.rejects(writer.write(bad), (err: Error) => /step=0 sample_idx=0: reward: /.test(err.message) && !err.message.includes("\n"));
  const short = { ...makeRecord(0, 1, rand), logprobs: [0] };
  await assert.rejects(writer.write(short), /logprobs has 1 entries, response_tokens has 40/);
  await writer.write(makeRecord(0, 2, rand));
  await writer.close();
  assert.deepEqual(
    (await collect(readRollouts(dir))).map((r) => r.sample_idx),
    [2],
  );
  await assert.rejects(createRolloutWriter(dir, "../escape"), /no path separators/);
});

test("reader: a truncated last line is reported and skipped, never fatal", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(4);
  const writer = await createRolloutWriter(dir, "t");
  const records = [makeRecord(2, 0, rand), makeRecord(2, 1, rand)];
  for (const r of records) await writer.write(r);
  const [file] = await writer.close();
  // Simulate a writer killed mid-line.
  const torn = JSON.stringify(makeRecord(2, 2, rand)).slice(0, 500);
  await appendFile(file, torn);

  const errors: JsonlReadError[] = [];
  assert.deepEqual(await collect(readRollouts(dir, { onError: (e) => errors.push(e) })), records);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, "truncated");
  assert.equal(errors[0].line, 3);
  assert.equal(errors[0].file, file);

  // Without onError: a warning on stderr, still no crash.
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (msg: string) => warnings.push(msg);
  try {
    assert.equal((await collect(readRollouts(file))).length, 2);
  } finally {
    console.warn = warn;
  }
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /t_rollouts_000000\.jsonl:3: truncated last line skipped/);
});

test("reader: corruption in the middle of a file is an error (reported via onError, else thrown)", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(5);
  const good = JSON.stringify(makeRecord(0, 0, rand, 4));
  const file = path.join(dir, "c_rollouts_000000.jsonl");
  await writeFile(file, `${good}\n{not json\n${good}\n${JSON.stringify({ step: 0 })}\n`);
  const errors: JsonlReadError[] = [];
  const read = await collect(readRollouts(file, { onError: (e) => errors.push(e) }));
  assert.equal(read.length, 2);
  assert.deepEqual(
    errors.map((e) => [e.line, e.kind]),
    [
      [2, "invalid-json"],
      [4, "invalid-record"],
    ],
  );
  await assert.rejects(collect(readRollouts(file)), /c_rollouts_000000\.jsonl:2: invalid-json/);
  await assert.rejects(collect(readRollouts(path.join(dir, "missing"))), /no such file or directory/);
});

test("reader: released open-instruct records (no tmax fields) read with LooseRolloutRecord", async (t) => {
  const dir = await tempDir(t);
  const released = {
    step: 7,
    sample_idx: 3,
    prompt_idx: 0,
    prompt_tokens: [1, 2],
    response_tokens: [3, 4, 5],
    logprobs: [-0.5, -0.25, -1],
    reward: 1,
    advantage: 0.5,
    finish_reason: "stop",
    dataset: "tmax",
    ground_truth: "x",
    request_info: { num_calls: 1, timeouts: 0, tool_errors: 0, tool_outputs: ["ok"], tool_runtimes: [0.1], extra_key: true },
  };
  await writeFile(path.join(dir, "tmax_rollouts_000000.jsonl"), JSON.stringify(released) + "\n");
  const strictErrors: JsonlReadError[] = [];
  assert.equal((await collect(readRollouts(dir, { onError: (e) => strictErrors.push(e) }))).length, 0);
  assert.equal(strictErrors[0].kind, "invalid-record");
  const loose = await collect(readRollouts(dir, { schema: LooseRolloutRecord }));
  assert.deepEqual(loose, [released], "unknown fields are kept");
});

// ---------------------------------------------------------------------------------------------
// Parquet

test("round trip: write shards → stream-read → Parquet → read back, deep-equal (ints and float64 exact)", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(6);
  const records = Array.from({ length: 9 }, (_, i) => makeRecord(4, i, rand, i === 5 ? 0 : 30 + i));
  const writer = await createRolloutWriter(dir, "pq", { shardSize: 4 });
  for (const r of records) await writer.write(r);
  await writer.close();
  const file = path.join(dir, "pq.parquet");
  const { rows } = await exportRolloutsToParquet(readRollouts(dir), file, { rowGroupSize: 4 });
  assert.equal(rows, 9);
  const back = await collect(readRolloutsParquet(file));
  assert.deepEqual(back, records);
  // Bit-exact logprobs, not merely close.
  assert.ok(back.every((r, i) => r.logprobs.every((x, k) => Object.is(x, records[i].logprobs[k]))));
  assert.deepEqual(await readdir(dir).then((names) => names.filter((n) => n.endsWith(".partial"))), []);
});

test("parquet export refuses values its INT32 columns cannot hold", async (t) => {
  const dir = await tempDir(t);
  const rec = { ...makeRecord(0, 0, seededRandom(7), 3), response_tokens: [1, 2.5, 3] };
  await assert.rejects(exportRolloutsToParquet([rec], path.join(dir, "x.parquet")), /response_tokens\[1\] = 2\.5 is not a 32-bit integer/);
  assert.deepEqual(await readdir(dir), [], "no partial file left behind");
});

// ---------------------------------------------------------------------------------------------
// Trainer logprobs + analysis

/** Trainer lines for records: logπ = logμ + drift on model tokens, response-aligned. */
function trainerLines(records: RolloutRecord[], rand: () => number, drift = 0.4): TrainerLogprobsRecord[] {
  return records.map((r) => ({
    step: r.step,
    sample_idx: r.sample_idx,
    token_ids: r.response_tokens,
    trainer_logprobs: r.logprobs.map((lp, k) => (r.response_mask[k] ? Math.min(0, lp + (rand() - 0.5) * drift) : 0)),
    vllm_logprobs: r.logprobs,
    response_mask: r.response_mask,
    advantage: r.advantage,
  }));
}

test("trainer logprobs: name layout, atomic write, validated read", async (t) => {
  const dir = await tempDir(t);
  assert.equal(trainerLogprobsName("tmax-9b", 42), "tmax-9b_trainer_logprobs_step000042.jsonl");
  const rand = seededRandom(8);
  const lines = trainerLines([makeRecord(42, 0, rand), makeRecord(42, 1, rand)], rand);
  const file = await writeTrainerLogprobs(dir, "tmax-9b", 42, lines);
  assert.equal(path.basename(file), "tmax-9b_trainer_logprobs_step000042.jsonl");
  assert.deepEqual(await collect(readTrainerLogprobs(file)), lines);
  assert.deepEqual(await listTrainerLogprobs(dir), [{ file, run: "tmax-9b", step: 42, rank: null }]);
  await assert.rejects(writeTrainerLogprobs(dir, "tmax-9b", 43, lines), /is from step 42, not 43/);
  await assert.rejects(
    writeTrainerLogprobs(dir, "tmax-9b", 42, [{ ...lines[0], response_mask: [1] }]),
    /response_mask: has 1 entries, token_ids has 40/,
  );
});

test("analyzeStep joins on (step, sample_idx) and equals dppoBatch on the concatenated tokens", async () => {
  const rand = seededRandom(9);
  const records = Array.from({ length: 8 }, (_, i) => makeRecord(3, i, rand, 20 + 3 * i));
  const lines = trainerLines(records, rand, 1.5);
  // Same arrays by hand.
  const logpi = Float64Array.from(lines.flatMap((l) => l.trainer_logprobs));
  const logmu = Float64Array.from(lines.flatMap((l) => l.vllm_logprobs));
  const adv = Float64Array.from(lines.flatMap((l) => l.token_ids.map(() => l.advantage!)));
  const lossMask = Uint8Array.from(lines.flatMap((l) => l.response_mask));
  const expected = dppoBatch({ logpi, logmu, adv, lossMask });

  const a = analyzeStep(records, [...lines].reverse());
  assert.equal(a.step, 3);
  assert.equal(a.samples, 8);
  assert.equal(a.tokenCount, expected.tokenCount);
  assert.equal(a.stats.maskedCount, expected.stats.maskedCount);
  assert.ok(a.stats.maskedCount > 0, "fixture masks something");
  assert.ok(Math.abs(a.loss - expected.loss) < 1e-12);
  assert.ok(Math.abs(a.stats.meanAbsDiff - expected.stats.meanAbsDiff) < 1e-12);
  assert.equal(a.stats.maskedFractionPosAdv, expected.stats.maskedFractionPosAdv);
  assert.equal(a.stats.maskedFractionNegAdv, expected.stats.maskedFractionNegAdv);
  assert.equal(a.groups, 2);
  assert.equal(a.rewardMean, records.reduce((s, r) => s + r.reward, 0) / 8);
  assert.equal(
    a.perSample.reduce((s, p) => s + p.tokenCount, 0),
    a.tokenCount,
  );
  assert.deepEqual([a.missingRollout, a.missingTrainer, a.tokenMismatch, a.muMismatch, a.advantageMismatch, a.noAdvantage], [[], [], [], [], [], []]);
  assert.match(formatStepTable([a]), /^\s*step\s+samples/);
});

test("analyzeStep reports join problems and accepts prompt+response aligned lines", () => {
  const rand = seededRandom(10);
  const records = Array.from({ length: 4 }, (_, i) => makeRecord(1, i, rand));
  const lines = trainerLines(records, rand);
  const changedToken = { ...lines[0], token_ids: lines[0].token_ids.map((x, k) => (k === 5 ? x + 1 : x)) };
  const changedMu = { ...lines[1], vllm_logprobs: lines[1].vllm_logprobs.map((x, k) => (k === 0 ? x - 1e-3 : x)) };
  const noAdv = { ...lines[2], sample_idx: 99, advantage: undefined };
  // Prompt + response alignment: prompt positions carry mask 0.
  const r3 = records[3];
  const full = {
    ...lines[3],
    token_ids: [...r3.prompt_tokens, ...r3.response_tokens],
    trainer_logprobs: [...r3.prompt_tokens.map(() => 0), ...lines[3].trainer_logprobs],
    vllm_logprobs: [...r3.prompt_tokens.map(() => 0), ...lines[3].vllm_logprobs],
    response_mask: [...r3.prompt_tokens.map(() => 0), ...lines[3].response_mask],
    advantage: r3.advantage + 1,
  };
  const a = analyzeStep(records, [changedToken, changedMu, noAdv, full]);
  assert.deepEqual(a.tokenMismatch, [0]);
  assert.deepEqual(a.muMismatch, [1]);
  assert.deepEqual(a.missingRollout, [99]);
  assert.deepEqual(a.noAdvantage, [99]);
  assert.deepEqual(a.missingTrainer, [2]);
  assert.deepEqual(a.advantageMismatch, [3]);
  assert.equal(a.samples, 3);
  assert.equal(a.perSample.find((p) => p.sample_idx === 3)!.advantage, r3.advantage + 1, "the trainer line's advantage wins");
  assert.throws(() => analyzeStep(records, [lines[0], { ...lines[1], step: 2 }]), /span steps 1, 2/);
});

test("analyzeRun streams released-style rollouts and every trainer-logprobs step", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(11);
  const writer = await createRolloutWriter(dir, "run", { shardSize: 5 });
  const byStep: RolloutRecord[][] = [[], [], []];
  for (let step = 0; step < 3; step++) {
    for (let i = 0; i < 6; i++) {
      const r = makeRecord(step, i, rand);
      byStep[step].push(r);
      await writer.write(r);
    }
  }
  await writer.close();
  // Trainer logprobs for steps 0 and 2 only.
  const lines0 = trainerLines(byStep[0], rand, 2);
  const lines2 = trainerLines(byStep[2], rand, 2);
  await writeTrainerLogprobs(dir, "run", 0, lines0);
  await writeTrainerLogprobs(dir, "run", 2, lines2);
  const analyses = await analyzeRun(dir, { run: "run" });
  assert.deepEqual(
    analyses.map((a) => [a.step, a.samples]),
    [
      [0, 6],
      [2, 6],
    ],
  );
  const direct = analyzeStep(byStep[2], lines2);
  assert.equal(analyses[1].loss, direct.loss);
  assert.deepEqual(analyses[1].stats, direct.stats);
  assert.deepEqual(analyses[1].tokenMismatch, []);
  assert.deepEqual(
    (await analyzeRun(dir, { run: "run", steps: [2] })).map((a) => a.step),
    [2],
  );
  await assert.rejects(analyzeRun(dir, { run: "nope" }), /no trainer-logprobs files/);
});

// ---------------------------------------------------------------------------------------------
// Learner batch

test("learner batch, unpacked: one line per sample, prompt + response aligned", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(12);
  const records = Array.from({ length: 3 }, (_, i) => makeRecord(5, i, rand, 10 + i));
  const res = await writeLearnerBatch(dir, 5, records);
  assert.equal(path.basename(res.file), "learner_batch_step000005.jsonl");
  assert.equal(res.lines, 3);
  const lines = await collect(readLearnerBatch(res.file));
  const first = lines[0];
  assert.equal(first.kind, "sample");
  if (first.kind !== "sample") return;
  const r = records[0];
  assert.deepEqual(first.input_ids, [...r.prompt_tokens, ...r.response_tokens]);
  assert.deepEqual(first.response_mask, [...r.prompt_tokens.map(() => 0), ...r.response_mask]);
  assert.deepEqual(first.vllm_logprobs, [...r.prompt_tokens.map(() => 0), ...r.logprobs]);
  assert.equal(first.num_prompt_tokens, 12);
  assert.equal(first.advantage, r.advantage);
  await assert.rejects(writeLearnerBatch(dir, 6, records), /is from step 5, not 6/);
});

test("learner batch, packed: FFD packs with cu_seqlens; too-long samples rejected and reported", async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(13);
  // Lengths 12 + response: 52, 42, 32, 72 (too long for 60).
  const records = [40, 30, 20, 60].map((n, i) => makeRecord(8, i, rand, n));
  const res = await writeLearnerBatch(dir, 8, records, { pack: true, maxTokens: 60, run: "tmax" });
  assert.equal(path.basename(res.file), "tmax_learner_batch_step000008.jsonl");
  assert.deepEqual(res.packing!.rejected, [{ index: 3, length: 72 }]);
  assert.equal(res.samples, 3);
  const lines = await collect(readLearnerBatch(res.file));
  assert.equal(lines.length, res.lines);
  const packed = lines.flatMap((l) => (l.kind === "pack" ? [l] : []));
  assert.equal(packed.length, 3, "52, 42 and 32 do not pair under 60");
  for (const p of packed) {
    assert.equal(p.max_tokens, 60);
    assert.equal(p.cu_seqlens.at(-1), p.input_ids.length);
    assert.equal(p.response_mask.length, p.input_ids.length);
    p.sample_idxs.forEach((idx, k) => {
      const r = records[idx];
      assert.deepEqual(p.input_ids.slice(p.cu_seqlens[k], p.cu_seqlens[k + 1]), [...r.prompt_tokens, ...r.response_tokens]);
      assert.equal(p.advantages[k], r.advantage);
    });
  }
  assert.equal(res.tokens, 52 + 42 + 32);
});

test("examples/learner/read_batch.py reads our batch and reproduces the TypeScript DPPO loss", { skip: pythonSkip() }, async (t) => {
  const dir = await tempDir(t);
  const rand = seededRandom(14);
  const records = Array.from({ length: 6 }, (_, i) => makeRecord(2, i, rand, 30 + 5 * i));
  const batch = await writeLearnerBatch(dir, 2, records, { pack: true, maxTokens: 150, run: "ex" });
  const lines = trainerLines(records, rand, 1.5);
  const trainerFile = await writeTrainerLogprobs(dir, "ex", 2, lines);
  const expected = analyzeStep(records, lines);
  const script = path.join(ROOT, "examples/learner/read_batch.py");
  const out = spawnSync("python3", [script, batch.file, "--trainer-logprobs", trainerFile], { encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
  const report = JSON.parse(out.stdout.trim().split("\n").at(-1)!);
  assert.equal(report.samples, 6);
  assert.equal(report.model_tokens, expected.tokenCount);
  assert.equal(report.masked_tokens, expected.stats.maskedCount);
  // Per-token terms are float32 on both sides; numpy's float32 exp and ours may differ by 1 ulp.
  assert.ok(Math.abs(report.loss - expected.loss) < 1e-6 * Math.max(1, Math.abs(expected.loss)), `python ${report.loss} vs ts ${expected.loss}`);
});

function pythonSkip(): string | false {
  const probe = spawnSync("python3", ["-c", "import numpy"], { encoding: "utf8" });
  return probe.status === 0 ? false : "skipped: python3 with numpy not available (examples/learner/read_batch.py check)";
}
