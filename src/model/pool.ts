// Several servers of one model behind one ModelClient: least-outstanding-requests routing, an episode kept on
// the server that served its first turn (its prefix is in that server's KV cache), servers that fail taken
// out and probed back with backoff. An episode is recognised without any new argument: every later turn's
// messages start with the system prompt, the instruction and the first assistant reply, which together are
// unique to the episode.
import { createHash } from "node:crypto";
import { jitteredBackoff } from "../util/backoff.js";
import { redactUrl } from "../util/redact.js";
import { ModelError, type ChatMessage, type ModelClient, type ModelConfig, type ModelTurn } from "./types.js";

const PROBE_BASE_MS = 1000;
const PROBE_CAP_MS = 30_000;
/** Episodes remembered for stickiness (oldest forgotten first). */
const MAX_EPISODES = 100_000;

interface Server {
  url: string;
  client: ModelClient;
  outstanding: number;
  healthy: boolean;
  served: number;
  probing?: NodeJS.Timeout;
}

export interface PoolStats {
  url: string;
  healthy: boolean;
  outstanding: number;
  served: number;
}

export interface ModelPool extends ModelClient {
  stats(): PoolStats[];
  close(): void;
}

/** Failures that say the server (not the request) is the problem. */
function serverFailure(err: unknown): boolean {
  return err instanceof ModelError && (err.kind === "unreachable" || err.kind === "timeout" || (err.kind === "http" && (err.status ?? 500) >= 500));
}

function episodeKey(messages: ChatMessage[]): string | undefined {
  const firstReply = messages.findIndex((m) => m.role === "assistant");
  if (firstReply < 0) return undefined;
  const h = createHash("sha256");
  for (const m of messages.slice(0, firstReply + 1)) h.update(JSON.stringify(m)).update("\0");
  return h.digest("hex");
}

export function createModelPool(config: ModelConfig, single: (c: ModelConfig) => ModelClient, opts: { onNotice?: (line: string) => void } = {}): ModelPool {
  const urls = [...new Set(config.baseUrls ?? [config.baseUrl])];
  const servers: Server[] = urls.map((url) => ({ url, client: single({ ...config, baseUrl: url, baseUrls: undefined }), outstanding: 0, healthy: true, served: 0 }));
  const sticky = new Map<string, Server>();
  const notice = opts.onNotice ?? ((line: string) => process.stderr.write(`tmax: ${line}\n`));
  let rr = 0;

  const takeOut = (s: Server, why: string) => {
    if (!s.healthy) return;
    s.healthy = false;
    notice(`model server ${redactUrl(s.url)} taken out of rotation (${why}); probing it`);
    const probe = (attempt: number) => {
      s.probing = setTimeout(async () => {
        try {
          await s.client.listModels({ signal: AbortSignal.timeout(10_000) });
          s.healthy = true;
          s.probing = undefined;
          notice(`model server ${redactUrl(s.url)} answers again; back in rotation`);
        } catch {
          probe(attempt + 1);
        }
      }, jitteredBackoff(attempt, PROBE_BASE_MS, PROBE_CAP_MS));
      s.probing.unref();
    };
    probe(0);
  };

  /** The healthy server with the fewest requests in flight (ties rotate). */
  const leastOutstanding = (exclude: Set<Server>): Server | undefined => {
    const healthy = servers.filter((s) => s.healthy && !exclude.has(s));
    if (healthy.length === 0) return undefined;
    const min = Math.min(...healthy.map((s) => s.outstanding));
    const best = healthy.filter((s) => s.outstanding === min);
    return best[rr++ % best.length];
  };

  const remember = (key: string, s: Server) => {
    if (sticky.size >= MAX_EPISODES) sticky.delete(sticky.keys().next().value!);
    sticky.set(key, s);
  };

  const pool: ModelPool = {
    config,
    async complete(messages, callOpts) {
      const key = episodeKey(messages);
      const tried = new Set<Server>();
      let lastError: unknown;
      for (;;) {
        const home = key ? sticky.get(key) : undefined;
        const server = home && home.healthy && !tried.has(home) ? home : leastOutstanding(tried);
        if (!server) {
          if (lastError) throw lastError;
          throw new ModelError(`no model server answers (${servers.map((s) => redactUrl(s.url)).join(", ")} all out of rotation)`, "unreachable");
        }
        tried.add(server);
        server.outstanding++;
        let turn: ModelTurn;
        try {
          turn = await server.client.complete(messages, callOpts);
        } catch (err) {
          if (callOpts?.signal?.aborted || !serverFailure(err)) throw err;
          lastError = err;
          takeOut(server, (err as Error).message);
          continue; // the next healthy server takes the turn (its prefix cache is cold, the episode goes on)
        } finally {
          server.outstanding--;
        }
        server.served++;
        // the first turn picks the episode's home; later turns find it by the episode's prefix
        const next = episodeKey([...messages, turn.message]);
        if (next) remember(next, server);
        return turn;
      }
    },
    async listModels(callOpts) {
      // every server is asked (preflight sees each); the answer is the first healthy one's
      const answers = await Promise.allSettled(servers.map((s) => s.client.listModels(callOpts)));
      let first: Awaited<ReturnType<ModelClient["listModels"]>> | undefined;
      let firstError: unknown;
      answers.forEach((a, i) => {
        if (a.status === "fulfilled") first ??= a.value;
        else {
          firstError ??= a.reason;
          if (serverFailure(a.reason)) takeOut(servers[i], (a.reason as Error).message);
        }
      });
      if (first) return first;
      throw firstError;
    },
    stats: () => servers.map((s) => ({ url: redactUrl(s.url), healthy: s.healthy, outstanding: s.outstanding, served: s.served })),
    close() {
      for (const s of servers) clearTimeout(s.probing);
    },
  };
  return pool;
}
