// `tmax traces export`: trials' conversations as SFT messages JSONL, Harbor's trace rows, or Parquet.
import { createWriteStream } from "node:fs";
import { mkdir, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { Option, type Command } from "commander";
import { collectTraces, findJobDirs, harborRows, sftLine, type TraceFormat, type TraceRow } from "../results/traces.js";
import { importTraces } from "../results/tracesImport.js";
import { stripControl } from "../util/terminal.js";
import { errColor } from "./render.js";

interface ExportOptions {
  format: TraceFormat;
  out: string;
  all?: boolean;
  minReward?: number;
  task?: string[];
  job?: string[];
  episodes: "all" | "last";
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerTraces(program: Command): void {
  const traces = program.command("traces").description("trials' conversations as training data, and back");
  traces
    .command("import <file>")
    .description("an SFT export (JSONL or .parquet) back into job dirs that tmax explore, tmax report and tmax traces export read")
    .requiredOption("-o, --out <dir>", "a new (or empty) dir: one job dir per metadata.job")
    .action(async (file: string, o: { out: string }) => {
      const s = await importTraces(path.resolve(file), path.resolve(o.out));
      for (const k of s.skipped.slice(0, 5)) console.error(errColor.yellow(`note: row ${k.row} skipped: ${stripControl(k.why)}`));
      if (s.skipped.length > 5) console.error(errColor.yellow(`note: ${s.skipped.length - 5} more row(s) skipped`));
      console.log(`imported ${s.trials} trial(s) into ${s.jobs.length} job dir(s) under ${path.resolve(o.out)}: tmax explore ${path.resolve(o.out)}`);
      process.exitCode = s.trials === 0 ? 1 : 0;
    });
  traces
    .command("export <job-dirs...>")
    .description("export the conversations of job dirs (tmax's or Harbor's, or dirs of job dirs): SFT messages JSONL, Harbor's trace rows, or Parquet")
    .addOption(new Option("--format <f>", "sft (OpenAI messages JSONL), harbor (Harbor's traces export rows, JSONL), parquet (the sft rows)").choices(["sft", "harbor", "parquet"]).default("sft"))
    .requiredOption("-o, --out <file>", "the file to write")
    .option("--all", "every trial with a conversation, not only successful ones (the reward is in each row)")
    .option("--min-reward <r>", "only trials with at least this reward", Number.parseFloat)
    .option("--task <name>", "only this task (repeatable)", collect)
    .option("--job <name>", "only this job, by name or dir name (repeatable)", collect)
    .addOption(new Option("--episodes <which>", "harbor: a row per assistant turn (all) or per trial (last)").choices(["all", "last"]).default("all"))
    .action(async (dirs: string[], o: ExportOptions) => {
      process.exitCode = await exportCommand(dirs, o);
    });
}

async function exportCommand(dirs: string[], o: ExportOptions): Promise<number> {
  if (o.minReward !== undefined && !Number.isFinite(o.minReward)) throw new Error("--min-reward needs a number");
  const skipped: string[] = [];
  const rows = collectTraces(findJobDirs(dirs), { all: o.all || o.minReward !== undefined, minReward: o.minReward, tasks: o.task, jobs: o.job }, (dir, why) => skipped.push(`${path.basename(dir)}: ${why}`));
  const out = path.resolve(o.out);
  await mkdir(path.dirname(out), { recursive: true });
  const written = o.format === "parquet" ? await writeParquet(rows, out) : await writeJsonl(o.format === "sft" ? rows.map(sftLine) : rows.flatMap((r) => harborRows(r, o.episodes)), out);
  if (skipped.length) console.error(errColor.yellow(`note: ${skipped.length} trial(s) without a conversation skipped (first: ${stripControl(skipped[0]!)})`));
  console.log(`wrote ${out}: ${written} row(s) from ${rows.length} trial(s)`);
  if (rows.length === 0) console.error(errColor.dim("no trial passed the filters (successful trials only by default; --all for every one)"));
  return 0;
}

async function writeJsonl(lines: unknown[], file: string): Promise<number> {
  const tmp = `${file}.partial`;
  const stream = createWriteStream(tmp);
  for (const line of lines) if (!stream.write(`${JSON.stringify(line)}\n`)) await new Promise<void>((r) => stream.once("drain", () => r()));
  await new Promise<void>((resolve, reject) => stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
  await rename(tmp, file);
  return lines.length;
}

async function writeParquet(rows: TraceRow[], file: string): Promise<number> {
  const { writeTraceParquet } = await import("../results/tracesParquet.js");
  const tmp = `${file}.partial`;
  try {
    await writeTraceParquet(rows, tmp);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await rename(tmp, file);
  return rows.length;
}
