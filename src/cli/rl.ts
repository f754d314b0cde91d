// `tmax rl analyze|pack|batch|parquet`: work with rollout records.
import path from "node:path";
import type { Command } from "commander";
import { toInt } from "./options.js";

export function registerRl(program: Command): void {
  const rl = program.command("rl").description("work with rollout records");
  rl.command("analyze <dir>")
    .description("DPPO statistics per step (masked fractions by advantage sign, mean |π−μ|, ratio, loss) from rollouts + trainer logprobs")
    .option("--trainer-dir <dir>", "where the *_trainer_logprobs_step*.jsonl files are (default: <dir>)")
    .option("--run <name>", "only this run's files")
    .option("--delta <d>", "trust-region threshold δ", Number.parseFloat, 0.1)
    .option("--json", "print JSON")
    .action(async (dir: string, o: { trainerDir?: string; run?: string; delta: number; json?: boolean }) => {
      const { analyzeRun, formatStepTable } = await import("../rl/analyze.js");
      const steps = await analyzeRun(path.resolve(dir), { trainerDir: o.trainerDir, run: o.run, delta: o.delta });
      if (steps.length === 0) throw new Error(`no trainer logprobs found for ${dir}`);
      console.log(o.json ? JSON.stringify(steps.map(({ samples, ...rest }) => rest), null, 2) : formatStepTable(steps));
    });
  rl.command("pack <dir>")
    .description("first-fit-decreasing packing of the records' sequences: packs, rejected samples, padding waste")
    .option("--max-tokens <n>", "tokens per pack", toInt, 67_584)
    .action(async (dir: string, o: { maxTokens: number }) => {
      const { readRollouts } = await import("../rl/records.js");
      const { packSequences } = await import("../rl/packing.js");
      const lengths: number[] = [];
      for await (const r of readRollouts(path.resolve(dir))) lengths.push(r.prompt_tokens.length + r.response_tokens.length);
      const p = packSequences(lengths, { maxTokens: o.maxTokens });
      console.log(`${lengths.length} samples → ${p.packs.length} packs of ≤ ${o.maxTokens} tokens; padding ${p.waste.padding} tokens (${(100 * p.waste.paddingFraction).toFixed(2)}%); ${p.rejected.length} sample(s) longer than a pack`);
    });
  rl.command("batch <dir>")
    .description("write one step's learner batch (docs/learner-handoff.md) from rollout records")
    .requiredOption("--step <n>", "the rollout step", toInt)
    .option("--out <dir>", "where the batch file goes (default <dir>/learner)")
    .option("--pack <tokens>", "pack samples into sequences of at most this many tokens (e.g. 67584)", toInt)
    .option("--run <name>", "only this run's records; also the file name prefix")
    .action(async (dir: string, o: { step: number; out?: string; pack?: number; run?: string }) => {
      const { readRollouts, writeLearnerBatch } = await import("../rl/records.js");
      const records = [];
      for await (const r of readRollouts(path.resolve(dir), { run: o.run })) if (r.step === o.step) records.push(r);
      if (records.length === 0) throw new Error(`no records of step ${o.step} in ${dir}`);
      const out = await writeLearnerBatch(path.resolve(o.out ?? path.join(dir, "learner")), o.step, records, { run: o.run, ...(o.pack ? { pack: true, maxTokens: o.pack } : {}) });
      const rejected = out.packing?.rejected.length ?? 0;
      console.log(`wrote ${out.file}: ${out.samples} samples, ${out.tokens} tokens, ${out.lines} lines${out.packing ? `, padding ${(100 * out.packing.waste.paddingFraction).toFixed(2)}%` : ""}${rejected ? `, ${rejected} sample(s) longer than a pack left out` : ""}`);
    });
  rl.command("parquet <dir>")
    .description("export rollout records to one Parquet file")
    .requiredOption("--out <file>", "the .parquet file to write")
    .action(async (dir: string, o: { out: string }) => {
      const { readRollouts } = await import("../rl/records.js");
      const { exportRolloutsToParquet } = await import("../rl/parquet.js");
      await exportRolloutsToParquet(readRollouts(path.resolve(dir)), path.resolve(o.out));
      console.log(`wrote ${path.resolve(o.out)}`);
    });
}
