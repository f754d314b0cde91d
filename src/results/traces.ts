// `tmax traces export`: the conversations of job dirs (tmax's or Harbor's) as training data.
//  - sft: OpenAI chat messages, one JSON line per trial ({messages, tools?, metadata}); successful trials only
//    unless `all`, the reward always in metadata. The messages are the trajectory's, unchanged.
//  - harbor: the rows of Harbor's `harbor traces export` (utils/traces_utils.py): one row per episode (each
//    assistant turn, with the conversation up to it; or only the last) with conversations [{role, content}],
//    agent, model, model_provider, date, task, episode, run_id, trial_name, result (reward as "1.0" or the
//    exception type); observations are user turns and tool calls are written into the text, as Harbor's are.
//  - parquet: the sft rows as one Parquet file (messages and tools as JSON columns).
// Trials are read with readJob (rewards, exceptions, task names); the conversation comes from the tmax
// trajectory (agent/tmax-trajectory.json) when present, else from Harbor's ATIF (agent/trajectory.json).
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { renderQwenXmlToolCall } from "../model/qwenXml.js";
import { bashTool } from "../model/client.js";
import { trajectoryKind } from "./atif.js";
import { readJob, type ReadJob, type ReadTrial } from "./read.js";
import { isRegularFileSync, readTextCappedSync } from "./safeRead.js";

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : null);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export type TraceFormat = "sft" | "harbor" | "parquet";

export interface TraceFilters {
  /** Every trial with a conversation, not only the successful ones (reward > 0, no exception). */
  all?: boolean;
  minReward?: number;
  /** Task names (exact) to keep. */
  tasks?: string[];
  /** Job names or job dir basenames to keep. */
  jobs?: string[];
}

/** One trial's conversation and what trainers filter on. */
export interface TraceRow {
  messages: Json[];
  tools?: Json[];
  metadata: { job: string; task: string; trial: string; reward: number; exception: string | null; agent: string; model: string; started_at: string | null };
}

/** The job dirs under each path: the path itself when it holds trials, else its child dirs that do. */
export function findJobDirs(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    const dir = path.resolve(p);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`not a directory: ${p}`);
    if (holdsTrials(dir) || existsSync(path.join(dir, "config.json"))) {
      out.push(dir);
      continue;
    }
    const children = childDirs(dir).filter(holdsTrials).sort();
    if (children.length === 0) throw new Error(`${p} is neither a job dir nor a dir of job dirs (no trial with a result.json)`);
    out.push(...children);
  }
  return out;
}

const childDirs = (dir: string) => readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith(".")).map((e) => path.join(dir, e.name));

/** A trial dir holds a result.json and no dir below it does (a job dir holds a result.json too, over its trials'). */
const isTrialDir = (dir: string) => existsSync(path.join(dir, "result.json")) && !childDirs(dir).some((d) => existsSync(path.join(d, "result.json")));

function holdsTrials(dir: string): boolean {
  return childDirs(dir).some(isTrialDir);
}

const successful = (t: ReadTrial) => t.reward > 0 && !t.exception_info;

/** The rows of every trial of the jobs that passes the filters and has a readable conversation. */
export function collectTraces(jobDirs: string[], filters: TraceFilters = {}, onSkip?: (trialDir: string, why: string) => void): TraceRow[] {
  const rows: TraceRow[] = [];
  for (const dir of jobDirs) {
    const job = readJob(dir);
    if (filters.jobs?.length && !filters.jobs.includes(job.name) && !filters.jobs.includes(path.basename(job.dir))) continue;
    for (const trial of job.trials) {
      if (filters.tasks?.length && !filters.tasks.includes(trial.task_name)) continue;
      if (!filters.all && !successful(trial)) continue;
      if (filters.minReward !== undefined && !(trial.reward >= filters.minReward)) continue;
      const conversation = readConversation(trial.dir);
      if ("problem" in conversation) {
        onSkip?.(trial.dir, conversation.problem);
        continue;
      }
      rows.push({ ...conversation, metadata: metadataOf(job, trial) });
    }
  }
  return rows;
}

function metadataOf(job: ReadJob, t: ReadTrial): TraceRow["metadata"] {
  return { job: job.name, task: t.task_name, trial: t.trial_name, reward: t.reward, exception: t.exception_info?.exception_type ?? null, agent: job.agent, model: job.model, started_at: t.started_at };
}

/** The trial's messages: tmax's trajectory as sent to the model, else Harbor's ATIF turned into chat messages. */
export function readConversation(trialDir: string): { messages: Json[]; tools?: Json[] } | { problem: string } {
  const native = path.join(trialDir, "agent", "tmax-trajectory.json");
  const atif = path.join(trialDir, "agent", "trajectory.json");
  const file = existsSync(native) ? native : existsSync(atif) ? atif : null;
  if (!file) return { problem: "no agent/tmax-trajectory.json or agent/trajectory.json (e.g. the oracle or nop agent)" };
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    return { problem: `${path.basename(file)} is not JSON (${(e as Error).message.split("\n")[0]})` };
  }
  const kind = trajectoryKind(data);
  if (kind === "tmax") {
    const t = obj(data)!;
    const messages = (t.messages as unknown[]).map(obj).filter((m): m is Json => m !== null);
    const agent = obj(t.agent);
    return { messages, tools: [bashTool(str(agent?.toolDescription)) as unknown as Json] };
  }
  if (kind === "atif") return { messages: atifMessages(obj(data)!) };
  if (kind === "messages") {
    const messages = (Array.isArray(data) ? data : (obj(data)!.messages as unknown[])).map(obj).filter((m): m is Json => m !== null);
    const tools = readTools(path.join(trialDir, "agent", "tools.json"), trialDir);
    return tools ? { messages, tools } : { messages };
  }
  return { problem: `${path.basename(file)} is neither a tmax trajectory, ATIF nor a list of messages` };
}

/** The tools next to a plain message list (`tmax traces import` writes them there), when they are a list of objects. */
function readTools(file: string, root: string): Json[] | undefined {
  if (!isRegularFileSync(file, root)) return undefined;
  try {
    const v = JSON.parse(readTextCappedSync(file, root));
    return Array.isArray(v) && v.every((t) => obj(t)) ? (v as Json[]) : undefined;
  } catch {
    return undefined;
  }
}

/** ATIF steps as OpenAI chat messages: system/user steps as is, agent steps with tool_calls, observations as tool messages. */
function atifMessages(a: Json): Json[] {
  const out: Json[] = [];
  for (const step of Array.isArray(a.steps) ? a.steps.map(obj) : []) {
    if (!step) continue;
    const content = typeof step.message === "string" ? step.message : JSON.stringify(step.message ?? "");
    if (step.source === "system" || step.source === "user") {
      out.push({ role: step.source, content });
      continue;
    }
    if (step.source !== "agent") continue;
    const calls = (Array.isArray(step.tool_calls) ? step.tool_calls : []).map(obj).filter((c): c is Json => c !== null);
    out.push({
      role: "assistant",
      content,
      ...(calls.length
        ? { tool_calls: calls.map((c) => ({ id: str(c.tool_call_id) ?? "", type: "function", function: { name: str(c.function_name) ?? "", arguments: JSON.stringify(c.arguments ?? {}) } })) }
        : {}),
    });
    const results = Array.isArray(obj(step.observation)?.results) ? (obj(step.observation)!.results as unknown[]).map(obj) : [];
    for (const r of results) {
      if (!r) continue;
      const text = typeof r.content === "string" ? r.content : JSON.stringify(r.content ?? "");
      out.push(r.source_call_id ? { role: "tool", tool_call_id: r.source_call_id, content: text } : { role: "user", content: text });
    }
  }
  return out;
}

/** One SFT line (OpenAI's fine-tuning shape plus a metadata object). */
export function sftLine(row: TraceRow): Json {
  return { messages: row.messages, ...(row.tools ? { tools: row.tools } : {}), metadata: row.metadata };
}

/** A message as Harbor's rows hold it: text only; tool calls written into the text (Qwen XML), tool results as user turns. */
function harborMessage(m: Json): { role: string; content: string } {
  const content = typeof m.content === "string" ? m.content : m.content == null ? "" : JSON.stringify(m.content);
  if (m.role === "assistant" && Array.isArray(m.tool_calls) && m.tool_calls.length) {
    const calls = m.tool_calls.map(obj).filter((c): c is Json => c !== null).map((c) => {
      const fn = obj(c.function) ?? {};
      let args: Json = {};
      try {
        args = obj(JSON.parse(str(fn.arguments) ?? "{}")) ?? {};
      } catch {
        args = { arguments: fn.arguments };
      }
      return renderQwenXmlToolCall(str(fn.name) ?? "", args);
    });
    return { role: "assistant", content: [content, ...calls].filter(Boolean).join("\n") };
  }
  return { role: m.role === "tool" ? "user" : String(m.role), content };
}

/** Harbor's rows for one trial: an episode per assistant turn (`all`) or only the last one. */
export function harborRows(row: TraceRow, episodes: "all" | "last" = "all"): Json[] {
  const conversation = row.messages.map(harborMessage);
  const turns = conversation.flatMap((m, i) => (m.role === "assistant" ? [i] : []));
  const chosen = episodes === "last" ? turns.slice(-1) : turns;
  const md = row.metadata;
  return chosen.map((end) => ({
    conversations: conversation.slice(0, end + 1),
    agent: md.agent,
    model: md.model,
    model_provider: md.model.includes("/") ? md.model.split("/")[0] : "hosted_vllm",
    date: md.started_at ?? "",
    task: md.task,
    episode: `episode-${turns.indexOf(end)}`,
    run_id: md.job,
    trial_name: md.trial,
    result: md.exception ?? pyFloat(md.reward),
  }));
}

/** A number as Python's str(float(x)) writes it ("1.0", "0.5"), the way Harbor buckets rewards. */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}
