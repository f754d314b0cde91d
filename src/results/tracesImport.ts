// `tmax traces import`: an SFT traces export (JSONL or Parquet, as `tmax traces export` writes it, or any file of
// that shape) back into job dirs: one Harbor-style job dir per `metadata.job`, one trial dir per row, with
// result.json (task, trial, reward, exception) and agent/trajectory.json (the messages; tools in agent/tools.json).
// What `tmax explore` and `tmax report` read, and what `tmax traces export` exports again to the same rows.
// The file is untrusted: every row is checked, names become safe dir names, a bad row is skipped with its line.
import { createReadStream } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { z } from "zod";
import { readTraceParquet } from "./tracesParquet.js";
import type { TraceRow } from "./traces.js";

const Message = z.looseObject({ role: z.string() });
const Row = z.object({
  messages: z.array(Message).min(1),
  tools: z.array(z.record(z.string(), z.unknown())).optional(),
  metadata: z.looseObject({
    job: z.string().min(1),
    task: z.string().min(1),
    trial: z.string().min(1),
    reward: z.number().finite(),
    exception: z.string().nullable().optional(),
    agent: z.string().optional(),
    model: z.string().optional(),
    started_at: z.string().nullable().optional(),
  }),
});

export interface ImportSummary {
  jobs: string[];
  trials: number;
  /** Rows not imported: 1-based line (JSONL) or row number (Parquet), and why. */
  skipped: { row: number; why: string }[];
}

/** A name as a dir name: no separators, no dot-only names, bounded. */
export function safeDirName(name: string): string {
  const s = name.replace(/[^\w.@+-]+/g, "-").replace(/^\.+/, "_").slice(0, 120);
  return s === "" ? "_" : s;
}

async function* rowsOf(file: string): AsyncGenerator<{ row: number; value: unknown; error?: string }> {
  if (/\.parquet$/i.test(file)) {
    let n = 0;
    for (const r of await readTraceParquet(file)) {
      const { messages, tools, ...metadata } = r;
      yield { row: ++n, value: { messages, ...(Array.isArray(tools) && tools.length ? { tools } : {}), metadata } };
    }
    return;
  }
  let n = 0;
  const lines = createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
  for await (const line of lines) {
    n++;
    if (line.trim() === "") continue;
    try {
      yield { row: n, value: JSON.parse(line) };
    } catch (e) {
      yield { row: n, value: undefined, error: `not JSON (${(e as Error).message.split("\n")[0]})` };
    }
  }
}

/** Reads an SFT export into job dirs under `outDir` (which must not hold a job of the same name already). */
export async function importTraces(file: string, outDir: string): Promise<ImportSummary> {
  const existing = await readdir(outDir).catch(() => []);
  if (existing.length) throw new Error(`${outDir} is not empty: import into a new dir (nothing was written)`);
  const summary: ImportSummary = { jobs: [], trials: 0, skipped: [] };
  const jobs = new Map<string, { dir: string; agent: string; model: string; trials: Set<string>; attempts: number }>();
  for await (const { row, value, error } of rowsOf(file)) {
    if (error) {
      summary.skipped.push({ row, why: error });
      continue;
    }
    const parsed = Row.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      summary.skipped.push({ row, why: `${issue.path.join(".") || "(row)"}: ${issue.message}` });
      continue;
    }
    const r = parsed.data as unknown as TraceRow;
    const md = parsed.data.metadata;
    let job = jobs.get(md.job);
    if (!job) {
      job = { dir: path.join(outDir, safeDirName(md.job)), agent: md.agent ?? "unknown", model: md.model ?? "unknown", trials: new Set(), attempts: 1 };
      if ([...jobs.values()].some((j) => j.dir === job!.dir)) {
        summary.skipped.push({ row, why: `job ${JSON.stringify(md.job)} maps to the dir of another job` });
        continue;
      }
      jobs.set(md.job, job);
    }
    const trialDir = safeDirName(md.trial);
    if (job.trials.has(trialDir)) {
      summary.skipped.push({ row, why: `trial ${JSON.stringify(md.trial)} of job ${JSON.stringify(md.job)} appears twice` });
      continue;
    }
    job.trials.add(trialDir);
    const attempt = Number(/__(\d+)$/.exec(md.trial)?.[1] ?? NaN);
    if (Number.isInteger(attempt)) job.attempts = Math.max(job.attempts, attempt + 1);
    const dir = path.join(job.dir, trialDir);
    await mkdir(path.join(dir, "agent"), { recursive: true });
    await writeFile(path.join(dir, "agent", "trajectory.json"), `${JSON.stringify(r.messages)}\n`);
    if (r.tools?.length) await writeFile(path.join(dir, "agent", "tools.json"), `${JSON.stringify(r.tools)}\n`);
    const result = {
      task_name: md.task,
      trial_name: md.trial,
      ...(Number.isInteger(attempt) ? { attempt } : {}),
      reward: md.reward,
      verifier_result: { rewards: { reward: md.reward } },
      exception_info: md.exception ? { exception_type: md.exception, exception_message: "(from a traces export)" } : null,
      agent_info: { name: job.agent, model_info: job.model === "unknown" ? null : { name: job.model } },
      started_at: md.started_at ?? null,
      finished_at: null,
      imported_from: path.resolve(file),
    };
    await writeFile(path.join(dir, "result.json"), `${JSON.stringify(result, null, 2)}\n`);
    summary.trials++;
  }
  for (const [name, job] of jobs) {
    const config = { job_name: name, n_attempts: job.attempts, agents: [{ name: job.agent, model_name: job.model === "unknown" ? null : job.model }], datasets: [], imported_from: path.resolve(file) };
    await writeFile(path.join(job.dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
    summary.jobs.push(job.dir);
  }
  return summary;
}
