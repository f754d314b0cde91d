// `tmax serve` for tests and benchmarks: an in-process server over a dataset, a minimal OpenEnv-protocol
// WebSocket client, and the soak driver (many sessions, random disconnects, concurrent steps).
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import WebSocket from "ws";
import { ensureJobId } from "../../src/jobs/identity.js";
import type { TrialSettings } from "../../src/trial/trial.js";
import type { TokenClient } from "../../src/model/tokens.js";
import type { Profile } from "../../src/model/types.js";
import { createBackend } from "../../src/sandbox/index.js";
import type { ServeEnv } from "../../src/serve/env.js";
import { startServer, type ServeHandle } from "../../src/serve/server.js";
import { loadDataset } from "../../src/tasks/load.js";
import { seededRandom } from "../../src/util/random.js";

export interface TestServe extends ServeHandle {
  env: ServeEnv;
  jobDir: string;
  wsUrl: string;
  /** Names of this server's containers on the engine (by its job id). */
  containers(): string[];
}

export async function startTestServe(o: {
  dataset: string;
  maxSessions?: number;
  idleTimeoutSec?: number;
  token?: string;
  settings?: Partial<TrialSettings>;
  actionSet?: "tb2" | "harness";
  profile?: Profile;
  tokens?: TokenClient;
}): Promise<TestServe> {
  const jobDir = await mkdtemp(path.join(os.tmpdir(), "tmax-serve-test-"));
  const { tasks } = await loadDataset(o.dataset);
  const env: ServeEnv = {
    datasetDir: path.resolve(o.dataset),
    tasks: new Map(tasks.map((t) => [t.name, t])),
    backend: createBackend("docker"),
    settings: { timeoutMultiplier: 1, imageMap: {}, backend: "docker", network: "task", ...o.settings },
    jobDir,
    jobId: await ensureJobId(jobDir),
    actionSet: o.actionSet ?? "tb2",
    profile: o.profile ?? "eval",
    ...(o.tokens ? { tokens: o.tokens } : {}),
    modelName: "tmax-9b",
  };
  const handle = await startServer({ env, host: "127.0.0.1", port: 0, token: o.token, maxSessions: o.maxSessions ?? 8, idleTimeoutSec: o.idleTimeoutSec ?? 0 });
  // closing removes the trial dirs too (the containers are checked by job id, which the caller already has)
  const close = () => handle.close().then(() => rm(jobDir, { recursive: true, force: true }));
  return { ...handle, close, env, jobDir, wsUrl: `${handle.url.replace(/^http/, "ws")}/ws`, containers: () => containersOfJob(env.jobId) };
}

export function containersOfJob(jobId: string): string[] {
  const r = spawnSync("podman", ["ps", "-a", "--filter", `label=io.tmax.job=${jobId}`, "--format", "{{.Names}}"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

/** A WebSocket session speaking OpenEnv's messages; `request` resolves with the raw response (errors included). */
export class WsSession {
  /** Responses not yet asked for, and askers waiting in order (the server answers in order). */
  private readonly queue: unknown[] = [];
  private readonly waiters: ((m: unknown) => void)[] = [];
  private constructor(private readonly ws: WebSocket) {}

  static open(url: string, headers: Record<string, string> = {}): Promise<WsSession> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, maxPayload: 128 * 1024 * 1024 });
      const session = new WsSession(ws);
      ws.on("message", (raw) => {
        const m = JSON.parse(raw.toString());
        const w = session.waiters.shift();
        if (w) w(m);
        else session.queue.push(m);
      });
      ws.on("close", () => {
        for (const w of session.waiters.splice(0)) w({ type: "closed" });
      });
      ws.once("open", () => resolve(session));
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  next(): Promise<any> {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve({ type: "closed" });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Sends text as is (not JSON-encoded) and waits for the answer. */
  async requestRaw(text: string): Promise<any> {
    this.ws.send(text);
    return this.next();
  }

  /** Sends and waits for the answer; a server that does not answer within `timeoutMs` fails the request. */
  async request(message: unknown, timeoutMs = 600_000): Promise<any> {
    this.ws.send(JSON.stringify(message));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(message).slice(0, 80)} within ${timeoutMs / 1000}s`)), timeoutMs);
    });
    try {
      return await Promise.race([this.next(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  reset(data: Record<string, unknown> = {}) {
    return this.request({ type: "reset", data });
  }

  step(data: Record<string, unknown>) {
    return this.request({ type: "step", data });
  }

  /** OpenEnv's disconnect: a close message, then the socket. */
  close(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "close" }));
    this.ws.close();
  }

  /** The connection drops without a close message. */
  drop(): void {
    this.ws.terminate();
  }
}

export interface SoakReport {
  sessions: number;
  completed: number;
  disconnected: number;
  rewards: number[];
  /** Evaluates answered without a reward, and protocol errors: must be none. */
  lost: string[];
  /** Steps that failed inside the sandbox (success false, e.g. an engine error under load), with their error. */
  stepFailures: string[];
  /** Connections refused as busy (a slot still held while a dropped session's sandbox was removed), retried. */
  busyRetries: number;
  wallMs: number;
  resetMs: number[];
  stepMs: number[];
  evaluateMs: number[];
}

/**
 * `sessions` sessions, `concurrency` at a time, on the tbench2 actions of hello-file: each either solves it
 * (write_file, two concurrent execs, evaluate → reward 1 expected) or drops its connection at a random point
 * (before or after reset, mid-step). Every evaluate must answer with a reward.
 */
export async function soak(url: string, o: { sessions: number; concurrency: number; disconnectRate: number; seed: number; task?: string }): Promise<SoakReport> {
  const rand = seededRandom(o.seed);
  const report: SoakReport = { sessions: o.sessions, completed: 0, disconnected: 0, rewards: [], lost: [], stepFailures: [], busyRetries: 0, wallMs: 0, resetMs: [], stepMs: [], evaluateMs: [] };
  const task = o.task ?? "hello-file";
  const plans = Array.from({ length: o.sessions }, () => (rand() < o.disconnectRate ? Math.floor(rand() * 4) : -1));
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < plans.length) {
      const i = next++;
      const dropAt = plans[i]!;
      let s = await WsSession.open(url);
      try {
        if (dropAt === 0) {
          s.drop();
          report.disconnected++;
          continue;
        }
        let t = performance.now();
        let r = await s.reset({ task_id: task });
        while (r.type === "error" && r.data?.code === "CAPACITY_REACHED") {
          // a full server answers at once; a trainer backs off and retries (or tries another server)
          report.busyRetries++;
          await new Promise((res) => setTimeout(res, 100 + rand() * 200));
          s = await WsSession.open(url);
          r = await s.reset({ task_id: task });
        }
        report.resetMs.push(performance.now() - t);
        if (r.type !== "observation") throw new Error(`reset: ${JSON.stringify(r.data)}`);
        if (dropAt === 1) {
          s.drop();
          report.disconnected++;
          continue;
        }
        t = performance.now();
        // concurrent steps on one session: answered in order, one at a time
        const [w, a, b] = await Promise.all([
          s.step({ action_type: "write_file", file_path: "/app/hello.txt", content: "Hello, tmax!\n" }),
          s.step({ action_type: "exec", command: "cat /app/hello.txt" }),
          s.step({ action_type: "exec", command: "wc -c < /app/hello.txt" }),
        ]).then((rs) => rs.map((x) => x as any));
        report.stepMs.push((performance.now() - t) / 3);
        const failed = [w, a, b].filter((x) => x.type === "observation" && !x.data.observation.success);
        if (failed.length) {
          report.stepFailures.push(`session ${i}: ${failed.map((x) => x.data.observation.error).join("; ")}`);
          s.drop();
          continue;
        }
        if (w.type !== "observation" || a.data?.observation?.output !== "Hello, tmax!\n" || b.data?.observation?.output !== "13\n") {
          throw new Error(`steps out of order: ${JSON.stringify([w, a, b].map((x) => x.data?.observation?.output ?? x.data))}`);
        }
        if (dropAt === 2) {
          // drop while a step runs
          s.step({ action_type: "exec", command: "sleep 5" }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 100));
          s.drop();
          report.disconnected++;
          continue;
        }
        if (dropAt === 3) {
          // drop while the verifier runs: the session's removal waits for it
          s.step({ action_type: "evaluate" }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 200));
          s.drop();
          report.disconnected++;
          continue;
        }
        t = performance.now();
        const e = await s.step({ action_type: "evaluate" });
        report.evaluateMs.push(performance.now() - t);
        if (e.type !== "observation" || typeof e.data.reward !== "number") report.lost.push(`session ${i}: ${JSON.stringify(e.data).slice(0, 200)}`);
        else report.rewards.push(e.data.reward);
        report.completed++;
        s.close();
      } catch (err) {
        report.lost.push(`session ${i}: ${(err as Error).message}`);
        s.drop();
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  report.wallMs = performance.now() - started;
  return report;
}
