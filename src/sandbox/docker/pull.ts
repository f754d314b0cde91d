// Pulling prebuilt images through the engine's /images/create API, with registry credentials from the usual auth
// files and Docker's credential helpers (registryAuth.ts), and retries with backoff when the registry answers 429
// or 5xx. Credentials go to the engine in the X-Registry-Auth header only: never logged.
import type Docker from "dockerode";
import { lookupAuth, type RegistryAuth } from "./registryAuth.js";
import { engineMessage, isUnreachable, oneLine, statusCode, unreachableError } from "./engine.js";
import { SandboxError, type PullProgress } from "../types.js";
import { sleep } from "../../util/sleep.js";

export type { PullProgress } from "../types.js";

export interface PullOptions {
  signal?: AbortSignal;
  onProgress?: (p: PullProgress) => void;
  /** Attempts after the first on 429/5xx (default 3); backoff doubles from `backoffMs` (default 1000). */
  retries?: number;
  backoffMs?: number;
  /** Auth files to read, most important first (default: authFiles(env)). */
  authFiles?: string[];
  /** Environment for the auth files and credential helpers (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** True for failures worth retrying: the registry said 429 / 5xx (directly or in the engine's error text). */
export function isRetryablePullError(err: unknown): boolean {
  const code = statusCode(err);
  if (code === 429 || (code !== undefined && code >= 500 && code !== 501)) {
    // the engine wraps registry errors in its own 500: look at the text when there is one
    const text = engineMessage(err);
    if (code >= 500 && /not found|manifest unknown|unauthorized|denied|no such host|name resolution|connection refused/i.test(text)) return false;
    return true;
  }
  const text = err instanceof Error ? err.message : String(err);
  return /\b429\b|too ?many ?requests|\b50[0234]\b|service unavailable|bad gateway/i.test(text);
}

/**
 * Pulls `ref` and returns once the engine has it. Throws SandboxError("image_not_found") when the registry
 * refuses or does not have it, after retries for 429/5xx.
 */
export async function pullImage(docker: Docker, ref: string, opts: PullOptions = {}): Promise<void> {
  const retries = opts.retries ?? 3;
  const backoff = opts.backoffMs ?? 1000;
  const { auth, problems } = await lookupAuth(ref, { ...(opts.authFiles ? { files: opts.authFiles } : {}), ...(opts.env ? { env: opts.env } : {}) });
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      await pullOnce(docker, ref, auth, opts);
      return;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (isUnreachable(err)) throw unreachableError(docker, err);
      if (attempt >= retries || !isRetryablePullError(err)) {
        const why = oneLine(err instanceof Error ? engineMessage(err) : String(err)).slice(0, 300);
        const helpers = problems.length ? ` (credentials: ${problems.join("; ")})` : "";
        throw new SandboxError(`cannot pull '${ref}': ${why}${helpers}`, "image_not_found");
      }
      const wait = backoff * 2 ** attempt;
      opts.onProgress?.({ image: ref, status: `registry busy (${oneLine(engineMessage(err)).slice(0, 80)}); retry ${attempt + 1}/${retries} in ${wait / 1000}s` });
      await sleep(wait, opts.signal);
    }
  }
}

async function pullOnce(docker: Docker, ref: string, auth: RegistryAuth | undefined, opts: PullOptions): Promise<void> {
  const stream = (await docker.pull(ref, { ...(auth ? { authconfig: auth } : {}), abortSignal: opts.signal } as object)) as NodeJS.ReadableStream;
  let failure: string | undefined;
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null) => (err ? reject(err) : resolve()),
      (event: { status?: string; id?: string; progressDetail?: { current?: number; total?: number }; error?: string; errorDetail?: { message?: string } }) => {
        if (event.error || event.errorDetail) {
          failure = event.errorDetail?.message ?? event.error;
          return;
        }
        if (!event.status) return;
        opts.onProgress?.({
          image: ref,
          status: event.status,
          ...(event.id ? { layer: event.id } : {}),
          ...(event.progressDetail?.current !== undefined ? { current: event.progressDetail.current } : {}),
          ...(event.progressDetail?.total !== undefined ? { total: event.progressDetail.total } : {}),
        });
      },
    );
  });
  if (failure !== undefined) throw new Error(failure);
}

