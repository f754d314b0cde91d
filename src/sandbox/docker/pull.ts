// Pulling prebuilt images through the engine's /images/create API, with registry credentials read from the usual
// auth files (Docker's config.json, podman's auth.json, $REGISTRY_AUTH_FILE) and retries with backoff when the
// registry answers 429 or 5xx. Credentials go to the engine in the X-Registry-Auth header only: never logged.
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type Docker from "dockerode";
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
  /** Auth files to read, most important first (default: authFiles()). */
  authFiles?: string[];
}

export interface RegistryAuth {
  username: string;
  password: string;
  serveraddress: string;
}

/** The registry host of an image reference (`docker.io` for Docker Hub short names). */
export function registryHost(ref: string): string {
  const first = ref.split("/")[0]!;
  if (ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost")) return first;
  return "docker.io";
}

/** Where credentials are looked up, in order: $REGISTRY_AUTH_FILE, podman's auth.json, Docker's config.json. */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, "containers", "auth.json"));
  const dockerConfig = env.DOCKER_CONFIG ?? path.join(env.HOME ?? os.homedir(), ".docker");
  files.push(path.join(dockerConfig, "config.json"));
  return files;
}

/** Credentials for `host` from the first auth file that has them (`auths` entries with `auth` or username/password). */
export function lookupAuth(host: string, files: string[] = authFiles()): RegistryAuth | undefined {
  const keys = host === "docker.io" ? ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"] : [host, `https://${host}`, `http://${host}`];
  for (const file of files) {
    let doc: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
    try {
      doc = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      continue; // missing or unreadable: try the next file
    }
    const auths = doc?.auths ?? {};
    for (const [key, entry] of Object.entries(auths)) {
      const bare = key.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
      if (!keys.includes(key) && !keys.includes(bare)) continue;
      if (entry?.auth) {
        const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), serveraddress: host };
      }
      if (entry?.username && entry.password) return { username: entry.username, password: entry.password, serveraddress: host };
    }
  }
  return undefined;
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
  const auth = lookupAuth(registryHost(ref), opts.authFiles);
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      await pullOnce(docker, ref, auth, opts);
      return;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (isUnreachable(err)) throw unreachableError(docker, err);
      if (attempt >= retries || !isRetryablePullError(err)) {
        throw new SandboxError(`cannot pull '${ref}': ${oneLine(err instanceof Error ? engineMessage(err) : String(err)).slice(0, 300)}`, "image_not_found");
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

