// Whole episodes as a service (generator-style trainers, SkyRL-like): POST /episodes runs one rollout step —
// G train-profile samples of each named task against the caller's OpenAI-compatible (vLLM) endpoint — with
// `tmax rollout`'s own orchestration (runRollout: seeds, rewards, advantages, staleness, exact token streams),
// and streams NDJSON back: progress lines as samples and groups finish, then the records `tmax rollout` writes
// (read back from its shards), then the step summary.
import { randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { modelConfigFromOptions } from "../model/client.js";
import { requireTokenSupport } from "../model/preflight.js";
import { createTokenClient } from "../model/tokens.js";
import { registerSecret } from "../util/redact.js";
import { readRollouts } from "../rl/records.js";
import { checkGroupSize, runRollout } from "../jobs/rollout.js";
import type { ServeEnv } from "./env.js";
import { ProtocolError } from "./protocol.js";

export const EpisodesRequest = z.strictObject({
  /** The policy's OpenAI-compatible endpoint (vLLM, with /tokenize and return_token_ids). */
  base_url: z.string().regex(/^https?:\/\/\S+$/, "must be an http(s) URL"),
  model: z.string().min(1),
  api_key: z.string().optional(),
  /** The tasks of this step (one group each); `task` for one. */
  tasks: z.array(z.string().min(1)).min(1).optional(),
  task: z.string().min(1).optional(),
  /** G, samples per task (≥ 2: advantages are centered per group). */
  samples: z.number().int().min(2),
  /** Episodes at a time (each holds one of the server's session slots while the request runs). */
  concurrency: z.number().int().min(1).default(4),
  /** Sample i of a group is generated with vLLM seed seed + i. */
  seed: z.number().int().min(0).default(0),
  /** The learner's policy version the samples are generated with (records carry model@version). */
  policy_version: z.number().int().min(0).optional(),
  temperature: z.number().min(0).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  request_timeout: z.number().int().positive().default(3600),
});
export type EpisodesRequest = z.infer<typeof EpisodesRequest>;

export type EpisodesLine =
  | { type: "sample"; task: string; reward: number; exit_status: string; trial: string; infra: boolean }
  | { type: "group"; task: string; rewards: number[]; kept: boolean }
  | { type: "record"; record: unknown }
  | { type: "summary"; summary: unknown }
  | { type: "error"; message: string }
  | { type: "done"; records: number };

/** Checks the request (names, endpoint) before anything streams; throws ProtocolError with one line. */
export async function prepareEpisodes(env: ServeEnv, req: EpisodesRequest): Promise<string[]> {
  checkGroupSize(req.samples);
  const names = req.tasks ?? (req.task ? [req.task] : []);
  if (names.length === 0) throw new ProtocolError("VALIDATION_ERROR", "Invalid request: name the tasks (tasks: [...] or task)");
  for (const n of names) if (!env.tasks.has(n)) throw new ProtocolError("EXECUTION_ERROR", `Task not found: ${JSON.stringify(n)} is not a task of the served dataset`);
  if (new Set(names).size !== names.length) throw new ProtocolError("VALIDATION_ERROR", "Invalid request: a task is named twice (one group per task and step)");
  registerSecret(req.api_key);
  const tokens = createTokenClient({ baseUrl: req.base_url, model: req.model, apiKey: req.api_key, timeoutMs: 30_000, maxRetries: 1 });
  await requireTokenSupport(tokens).catch((e: Error) => {
    throw new ProtocolError("EXECUTION_ERROR", `the policy endpoint cannot serve train-profile episodes: ${e.message.split("\n")[0]}`);
  });
  return names;
}

/** Runs the step and yields its lines; `signal` (the caller hung up) stops the episodes. */
export async function* runEpisodes(env: ServeEnv, req: EpisodesRequest, names: string[], signal: AbortSignal): AsyncGenerator<EpisodesLine> {
  const id = randomUUID();
  const root = path.join(env.jobDir, "episodes");
  const outDir = path.join(root, id);
  await mkdir(root, { recursive: true });
  let policyVersionFile: string | undefined;
  if (req.policy_version !== undefined) {
    policyVersionFile = path.join(root, `${id}.policy-version`);
    await writeFile(policyVersionFile, `${req.policy_version}\n`);
  }
  const lines: EpisodesLine[] = [];
  let wake: (() => void) | null = null;
  const push = (l: EpisodesLine) => {
    lines.push(l);
    wake?.();
  };
  const s = env.settings;
  const run = runRollout({
    ...s,
    datasetDir: env.datasetDir,
    outDir,
    runName: "tmax",
    steps: 1,
    uniqueTasks: names.length,
    samplesPerTask: req.samples,
    concurrency: req.concurrency,
    maxGroupsPerStep: names.length, // U = the named tasks, each drawn once
    filters: { include: names },
    model: modelConfigFromOptions({
      profile: "train",
      baseUrl: req.base_url,
      model: req.model,
      ...(req.api_key ? { apiKey: req.api_key } : {}),
      timeoutMs: req.request_timeout * 1000,
      logprobs: true,
      tokenIds: true,
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
      ...(req.top_p !== undefined ? { topP: req.top_p } : {}),
    }),
    seed: req.seed,
    maxStaleness: Number.MAX_SAFE_INTEGER, // one step, one version: nothing is stale within a request
    ...(policyVersionFile ? { policyVersionFile } : {}),
    learnerBatch: false,
    agentTimeout: s.agentTimeout ?? "none",
    signal,
    onSample: (x) => push({ type: "sample", task: x.task, reward: x.reward, exit_status: x.exitStatus, trial: x.trial, infra: x.infra }),
    onGroup: (g) => push({ type: "group", task: g.task, rewards: g.rewards, kept: g.kept }),
  }).then(
    (summaries) => ({ summaries, error: null as string | null }),
    (e: Error) => ({ summaries: [], error: e.message.split("\n")[0]! }),
  );
  let finished: Awaited<typeof run> | null = null;
  void run.then((f) => {
    finished = f;
    wake?.();
  });
  for (;;) {
    while (lines.length) yield lines.shift()!;
    if (finished) break;
    await new Promise<void>((resolve) => (wake = resolve));
    wake = null;
  }
  const done = finished as unknown as Awaited<typeof run>;
  if (done.error) {
    yield { type: "error", message: done.error };
    return;
  }
  let records = 0;
  for await (const record of readRollouts(outDir)) {
    records++;
    yield { type: "record", record };
  }
  for (const summary of done.summaries) yield { type: "summary", summary };
  yield { type: "done", records };
}
