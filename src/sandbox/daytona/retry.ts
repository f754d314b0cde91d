// Daytona's rate limits and transient failures, retried with exponential backoff and jitter. What is retried
// depends on whether a repeat is safe: a 429 means the request was refused, so anything may be repeated; a
// 502/503/504 or a dropped connection may hide a request that ran, so only idempotent calls (file transfers,
// delete, list, creating or deleting a session, reading a session command's state or logs) are repeated then —
// never a sandbox create or a command. The SDK (0.218.0) reports a missing response as DaytonaConnectionError
// (its `code` is Daytona's error code, not the socket's), a status as DaytonaError.statusCode, and a 429 as
// DaytonaRateLimitError; its own transport retries only connect-phase failures (utils/RetryAdapter.js). Seen with
// the real 0.218.0 SDK against a local stub of the API: a 429 arrives as DaytonaRateLimitError (statusCode 429,
// `headers.get("retry-after")` readable), a refused connection as DaytonaConnectionError with neither statusCode
// nor code, a 401 as DaytonaAuthenticationError carrying the body's message.
import type { DaytonaSandboxLike } from "./sdk.js";
import { jitteredBackoff } from "../../util/backoff.js";
import { sleep } from "../../util/sleep.js";

export interface RetryPolicy {
  attempts: number;
  baseMs: number;
  capMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseMs: 1000, capMs: 30_000 };

const TRANSIENT_CODES = new Set(["ECONNRESET", "ETIMEDOUT", "EAI_AGAIN", "ECONNREFUSED", "EPIPE", "UND_ERR_SOCKET"]);

function status(err: unknown): number | undefined {
  const e = err as { statusCode?: unknown; status?: unknown; response?: { status?: unknown } };
  const s = e?.statusCode ?? e?.status ?? e?.response?.status;
  return typeof s === "number" ? s : undefined;
}

export function isRateLimited(err: unknown): boolean {
  return status(err) === 429 || (err as Error)?.name === "DaytonaRateLimitError" || /rate limit|too many requests/i.test((err as Error)?.message ?? "");
}

export function isTransient(err: unknown): boolean {
  const s = status(err);
  if (s !== undefined) return s === 429 || s === 502 || s === 503 || s === 504;
  const name = (err as Error)?.name ?? "";
  if (name === "DaytonaConnectionError" || name === "DaytonaConnectionTimeoutError" || name === "DaytonaRateLimitError") return true;
  return TRANSIENT_CODES.has((err as { code?: string })?.code ?? "") || /socket hang up|network error/i.test((err as Error)?.message ?? "");
}

/** The server's Retry-After (seconds or ms header), when it gave one. */
function retryAfterMs(err: unknown): number | undefined {
  const headers = (err as { headers?: Record<string, string> | { get?: (k: string) => string | null } })?.headers;
  const get = (k: string) => (typeof (headers as { get?: unknown })?.get === "function" ? (headers as { get: (k: string) => string | null }).get(k) : (headers as Record<string, string> | undefined)?.[k]);
  const sec = Number(get("retry-after"));
  return Number.isFinite(sec) && sec > 0 ? sec * 1000 : undefined;
}

export async function withRetries<T>(call: () => Promise<T>, opts: { idempotent: boolean; policy?: RetryPolicy; signal?: AbortSignal; onRetry?: (attempt: number, err: unknown) => void }): Promise<T> {
  const policy = opts.policy ?? DEFAULT_RETRY;
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const retryable = opts.idempotent ? isTransient(err) : isRateLimited(err);
      if (!retryable || attempt + 1 >= policy.attempts || opts.signal?.aborted) throw err;
      opts.onRetry?.(attempt + 1, err);
      const wait = retryAfterMs(err) ?? jitteredBackoff(attempt, policy.baseMs, policy.capMs);
      await new Promise((r) => setTimeout(r, Math.min(wait, policy.capMs)));
    }
  }
}

/** The same sandbox with every SDK call going through withRetries (idempotent or not, per call). */
export function resilientSandbox(remote: DaytonaSandboxLike, policy: RetryPolicy = DEFAULT_RETRY): DaytonaSandboxLike {
  return {
    get id() {
      return remote.id;
    },
    get name() {
      return remote.name;
    },
    get user() {
      return remote.user;
    },
    get labels() {
      return remote.labels;
    },
    getWorkDir: () => withRetries(() => remote.getWorkDir(), { idempotent: true, policy }),
    delete: (timeout) => withRetries(() => remote.delete(timeout), { idempotent: true, policy }),
    get state() {
      return remote.state;
    },
    process: {
      // A session that was made by an attempt whose answer got lost comes back as a 409 on the repeat: it exists.
      createSession: (id) =>
        withRetries(
          async () => {
            try {
              await remote.process.createSession(id);
            } catch (err) {
              if (status(err) !== 409) throw err;
            }
          },
          { idempotent: true, policy },
        ),
      executeSessionCommand: (id, req, timeout) => withRetries(() => remote.process.executeSessionCommand(id, req, timeout), { idempotent: false, policy }),
      getSessionCommand: (id, cmdId) => withRetries(() => remote.process.getSessionCommand(id, cmdId), { idempotent: true, policy }),
      getSessionCommandLogs: (id, cmdId) => withRetries(() => remote.process.getSessionCommandLogs(id, cmdId), { idempotent: true, policy }),
      deleteSession: (id) => withRetries(() => remote.process.deleteSession(id), { idempotent: true, policy }),
    },
    fs: {
      uploadFile: (file, remotePath, timeout) => withRetries(() => remote.fs.uploadFile(file, remotePath, timeout), { idempotent: true, policy }),
      downloadFile: (remotePath, timeout) => withRetries(() => remote.fs.downloadFile(remotePath, timeout), { idempotent: true, policy }),
    },
  };
}

/** Waits for a full organisation quota to free up, as Harbor does on create: linear steps, a cap, a bounded count. */
export interface QuotaPolicy {
  attempts: number;
  stepMs: number;
  capMs: number;
}

/** Harbor's numbers: 10 tries, 15 s × the attempt between them, at most 120 s. */
export const DEFAULT_QUOTA_WAIT: QuotaPolicy = { attempts: 10, stepMs: 15_000, capMs: 120_000 };

/** A create refused because the organisation's CPU, memory or disk quota is in use (Daytona's message names the limit). */
export function isQuotaExceeded(err: unknown): boolean {
  return /\b(cpu|memory|disk|gpu) (quota|limit) exceeded\b|quota exceeded/i.test((err as Error)?.message ?? "");
}

export async function waitOutQuota<T>(call: () => Promise<T>, opts: { policy?: QuotaPolicy; signal?: AbortSignal; onWait?: (attempt: number, waitMs: number, err: unknown) => void }): Promise<T> {
  const policy = opts.policy ?? DEFAULT_QUOTA_WAIT;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!isQuotaExceeded(err) || attempt >= policy.attempts || opts.signal?.aborted) throw err;
      const wait = Math.min(policy.stepMs * attempt, policy.capMs);
      opts.onWait?.(attempt, wait, err);
      await sleep(wait, opts.signal);
    }
  }
}
