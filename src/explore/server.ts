// `tmax explore <dir>`: a local web UI (node:http, no framework) over job dirs and rollout shard sets.
// Pages are rendered in the browser from small JSON APIs; rollout sets are indexed once by streaming
// (see rlIndex.ts) so a multi-GB set never sits in memory. Every failure is answered, never thrown.
import http from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { describeError, discoverSources, loadJob, loadTrajectory, type Discovered, type Issue, type JobData, type RolloutSetRef } from "./load.js";
import { listSamples, loadRunIndex, readSample, runIndexIsStale, stepAggregates, type IndexProgress, type RunIndex, type SampleFilter } from "./rlIndex.js";
import { chartJsSource } from "./ui/chartjs.js";
import { APP_JS, COMMON_JS, STYLE_CSS } from "./ui/assets.js";
import { isRegularFile, readTail } from "../results/safeRead.js";
import { redactAll } from "../util/redact.js";

export interface ExplorerOptions {
  /** directory holding job dirs and/or rollout shard sets (searched a few levels deep) */
  dir: string;
  port?: number;
  host?: string;
  /** where rollout indexes are cached; null = no cache (default: ~/.cache/tmax/explore or $TMAX_EXPLORE_CACHE) */
  cacheDir?: string | null;
  /** how many directory levels to search (default 3) */
  maxDepth?: number;
}

export interface Explorer {
  url: string;
  close(): Promise<void>;
}

interface RunState {
  ref: RolloutSetRef;
  status: "indexing" | "ready" | "error";
  progress: IndexProgress;
  index?: RunIndex;
  error?: string;
  done: Promise<void>;
  /** when the files were last compared with the index */
  checkedAt: number;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const MAX_OVERVIEW_JOBS = 100; // beyond this the overview lists job dirs without reading their trials
const FRESH_MS = 3000; // job dirs change while jobs run: re-read them at most this often

export async function startExplorer(opts: ExplorerOptions): Promise<Explorer> {
  const root = path.resolve(opts.dir);
  const host = opts.host ?? "127.0.0.1";
  const maxDepth = opts.maxDepth ?? 3;
  let discovered: { at: number; value: Promise<Discovered> } | null = null;
  const jobs = new Map<string, { at: number; value: Promise<JobData> }>();
  const runs = new Map<string, RunState>();
  const memo = new Map(); // per-file indexes, so re-indexing a grown run rescans only changed files
  let indexQueue: Promise<void> = Promise.resolve(); // one index build at a time bounds memory and CPU

  const jobId = (dir: string) => path.relative(root, dir) || ".";
  const runId = (r: RolloutSetRef) => `${path.relative(root, r.dir) || "."}::${r.run}`;

  function discover(): Promise<Discovered> {
    if (!discovered || Date.now() - discovered.at > FRESH_MS) discovered = { at: Date.now(), value: discoverSources(root, maxDepth) };
    return discovered.value;
  }
  async function job(id: string): Promise<JobData> {
    const d = await discover();
    const dir = d.jobs.find((j) => jobId(j) === id);
    if (!dir) throw new HttpError(404, `no job dir "${id}" under ${root}`);
    const cached = jobs.get(id);
    if (cached && Date.now() - cached.at < FRESH_MS) return cached.value;
    const value = loadJob(dir, root);
    jobs.set(id, { at: Date.now(), value });
    return value;
  }
  async function run(id: string): Promise<RunState> {
    const existing = runs.get(id);
    if (existing && (existing.status === "indexing" || Date.now() - existing.checkedAt < FRESH_MS)) return existing;
    const d = await discover();
    const ref = d.rollouts.find((r) => runId(r) === id);
    if (!ref) {
      if (existing) return existing;
      throw new HttpError(404, `no rollout set "${id}" under ${root}`);
    }
    // a live training run grows: re-index (only the files that changed) when the set on disk moved on
    if (existing) {
      existing.checkedAt = Date.now();
      if (existing.index && !(await runIndexIsStale(ref, existing.index))) return existing;
      if (runs.get(id) !== existing) return runs.get(id)!;
    }
    const state: RunState = { ref, status: "indexing", progress: { bytesDone: 0, bytesTotal: 0 }, done: Promise.resolve(), checkedAt: Date.now() };
    state.done = indexQueue = indexQueue.then(async () => {
      try {
        state.index = await loadRunIndex(ref, { cacheDir: opts.cacheDir, memo, onProgress: (p) => (state.progress = p) });
        state.status = "ready";
      } catch (err) {
        state.status = "error";
        state.error = describeError(err);
      }
      state.checkedAt = Date.now();
    });
    runs.set(id, state);
    return state;
  }
  async function readyRun(id: string): Promise<RunIndex> {
    const s = await run(id);
    await s.done;
    if (!s.index) throw new HttpError(500, `indexing ${s.ref.run} failed: ${s.error}`);
    return s.index;
  }

  const insideRoot = (abs: string) => abs === root || abs.startsWith(root + path.sep);

  const assets = {
    css: STYLE_CSS,
    js: `${COMMON_JS}\n${APP_JS}`,
    chart: await chartJsSource(),
  };
  const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tmax explorer</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><header class="top"><a class="brand" href="#/">tmax explorer</a><nav><a href="#/">overview</a></nav><span class="where" id="root-dir"></span></header>
<main><div id="page"><div class="empty">Loading…</div></div></main>
<script src="/assets/chart.umd.js"></script><script src="/assets/app.js"></script></body></html>`;

  const api: Record<string, (q: URLSearchParams) => Promise<unknown>> = {
    "/api/sources": async () => {
      const d = await discover();
      const summarize = d.jobs.length <= MAX_OVERVIEW_JOBS;
      const jobRows = await Promise.all(
        d.jobs.map(async (dir) => {
          const id = jobId(dir);
          if (!summarize) return { id, name: path.basename(dir), dir, benchmark: null, model: null, trials: null, pending: null, meanReward: null, issues: null };
          const j = await job(id);
          const rewards = j.trials.map((t) => t.reward);
          return {
            id, name: j.name, dir, benchmark: j.benchmark, model: j.model, trials: j.trials.length, pending: j.pending,
            meanReward: rewards.length ? rewards.reduce((a, b) => a + b, 0) / rewards.length : null,
            issues: j.issues.length,
          };
        }),
      );
      const runRows = d.rollouts.map((r) => {
        const s = runs.get(runId(r));
        return { id: runId(r), run: r.run, dir: r.dir, shards: r.shards.length, trainerFiles: r.trainerLogprobs.length, status: s?.status ?? "not indexed", samples: s?.index?.samples.step.length ?? null };
      });
      return { root, jobs: jobRows, rollouts: runRows, issues: d.issues };
    },
    "/api/job": async (q) => {
      const j = await job(need(q, "id"));
      return { ...j, trials: j.trials.map(({ dir: _d, trajectory, ...t }) => ({ ...t, hasTrajectory: trajectory !== null })) };
    },
    "/api/trial": async (q) => {
      const j = await job(need(q, "job"));
      const name = need(q, "trial");
      const row = j.trials.find((t) => t.trial === name);
      if (!row) throw new HttpError(404, `no finished trial "${name}" in job ${j.name}`);
      const issues: Issue[] = [];
      let trajectory: Record<string, unknown> | null = null;
      let raw: string | undefined;
      if (row.trajectory) {
        const t = await loadTrajectory(row.trajectory, root);
        trajectory = t.trajectory;
        raw = t.raw;
        issues.push(...t.issues);
      }
      const verifier = await readTail(path.join(row.dir, "verifier", "test-stdout.txt"), 6000, root);
      const { dir: _d, ...trial } = row;
      return { job: j.name, trial, trajectory, raw, verifier, issues };
    },
    "/api/rl/steps": async (q) => {
      const s = await run(need(q, "id"));
      // answer within ~1 s: the page shows progress and asks again while a large set is indexed
      await Promise.race([s.done, new Promise((r) => setTimeout(r, 1000))]);
      if (s.status === "indexing") return { status: "indexing", run: s.ref.run, dir: s.ref.dir, progress: s.progress };
      if (s.status === "error" || !s.index) return { status: "error", run: s.ref.run, dir: s.ref.dir, issues: [{ file: s.ref.dir, problem: `indexing failed: ${s.error}` }] };
      const ix = s.index;
      return {
        status: "ready",
        run: ix.run,
        dir: ix.dir,
        shards: ix.shards.length,
        trainerFiles: ix.trainerFiles.length,
        bytes: ix.bytes,
        buildMs: ix.buildMs,
        samples: ix.samples.step.length,
        tasks: ix.tasks,
        exits: ix.exits,
        steps: stepAggregates(ix),
        issues: ix.issues,
      };
    },
    "/api/rl/samples": async (q) => {
      const ix = await readyRun(need(q, "id"));
      const f: SampleFilter = {
        step: optNum(q, "step"),
        task: q.get("task") || undefined,
        exit: q.get("exit") || undefined,
        minReward: optNum(q, "minReward"),
        maxReward: optNum(q, "maxReward"),
        offset: optNum(q, "offset"),
        limit: Math.min(optNum(q, "limit") ?? 100, 1000),
      };
      return listSamples(ix, f);
    },
    "/api/rl/sample": async (q) => {
      const ix = await readyRun(need(q, "id"));
      const step = optNum(q, "step");
      const idx = optNum(q, "idx");
      if (step === undefined || idx === undefined) throw new HttpError(400, "step and idx must be numbers");
      const sample = await readSample(ix, step, idx);
      // a record's trajectory (absolute, or relative to its shard dir) opens in the conversation view
      const tp = sample.record?.trajectory_path;
      let trajectoryRef: string | null = null;
      if (typeof tp === "string" && tp) {
        const abs = path.resolve(ix.dir, tp);
        if (insideRoot(abs) && (await isRegularFile(abs, root))) trajectoryRef = path.relative(root, abs);
      }
      return { ...sample, trajectoryRef };
    },
    "/api/trajectory-file": async (q) => {
      const rel = need(q, "path");
      const abs = path.resolve(root, rel);
      // opened below the root one component at a time, no link followed (see results/safeRead.ts)
      if (!insideRoot(abs) || !abs.endsWith(".json")) throw new HttpError(403, `only .json files under ${root} can be opened`);
      return { path: abs, ...(await loadTrajectory(abs, root)) };
    },
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      // last resort: the server keeps serving whatever went wrong
      if (!res.headersSent) sendJson(res, 500, { error: describeError(err) });
      else res.end();
    });
  });
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // DNS rebinding: a page on another origin that resolves to 127.0.0.1 sends its own Host
    if (!LOCAL_HOST.test(req.headers.host ?? "")) return sendJson(res, 403, { error: "this server answers only Host: localhost or 127.0.0.1" });
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, { error: "only GET" });
    if (url.pathname === "/" || url.pathname === "/index.html") return send(res, 200, "text/html; charset=utf-8", page);
    if (url.pathname === "/assets/app.css") return send(res, 200, "text/css; charset=utf-8", assets.css);
    if (url.pathname === "/assets/app.js") return send(res, 200, "text/javascript; charset=utf-8", assets.js);
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204, SECURITY_HEADERS).end();
      return;
    }
    if (url.pathname === "/assets/chart.umd.js") return send(res, 200, "text/javascript; charset=utf-8", assets.chart);
    const handler = api[url.pathname];
    if (!handler) return sendJson(res, 404, { error: `not found: ${url.pathname}` });
    try {
      sendJson(res, 200, await handler(url.searchParams));
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      sendJson(res, status, { error: describeError(err) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8080, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function need(q: URLSearchParams, name: string): string {
  const v = q.get(name);
  if (!v) throw new HttpError(400, `missing query parameter "${name}"`);
  return v;
}
function optNum(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new HttpError(400, `query parameter "${name}" must be a number, got "${v}"`);
  return n;
}
const LOCAL_HOST = /^(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/i;
/** Largest JSON answer; bigger ones are replaced by an error the page shows. */
export const MAX_RESPONSE_BYTES = 24 * 1024 * 1024;
export const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};
function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": type, "cache-control": "no-store", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  let body = redactAll(JSON.stringify(value));
  if (body.length > MAX_RESPONSE_BYTES) {
    body = JSON.stringify({ error: `answer too large to send (${(body.length / 1024 / 1024).toFixed(1)} MB, cap ${MAX_RESPONSE_BYTES / 1024 / 1024} MB)` });
    status = 413;
  }
  send(res, status, "application/json; charset=utf-8", body);
}
