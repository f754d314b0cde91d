// Which image a sandbox runs: a task's prebuilt docker_image (pulled per the pull policy, as Harbor does), or its
// Dockerfile built locally — when asked to (--force-build), when there is no prebuilt image, or when the pull fails
// (then with a visible note). The result says what was used: name, digest, pulled | built | local.
import type Docker from "dockerode";
import { buildImage, type BuildSpec } from "./build.js";
import { engineError, oneLine, statusCode } from "./engine.js";
import { pullImage } from "./pull.js";
import { SandboxError, type ImageUsed, type PullPolicy, type PullProgress } from "../types.js";

export type { ImageUsed, PullPolicy } from "../types.js";
export const PULL_POLICIES: readonly PullPolicy[] = ["always", "missing", "never"];

export interface ImageRequest {
  /** A ready image to run as is (no pull policy applies: e.g. `tmax run --image`). */
  image?: string;
  /** A task's prebuilt image, subject to the pull policy. */
  prebuilt?: string;
  build?: BuildSpec;
  pull?: PullPolicy;
  forceBuild?: boolean;
}

export interface ImageEvents {
  signal?: AbortSignal;
  onPull?: (p: PullProgress) => void;
  onNote?: (message: string) => void;
  /** Retries/backoff for pulls (tests use short ones). */
  pullRetries?: number;
  pullBackoffMs?: number;
}

/** The default pull policy: $TMAX_PULL when valid, else Harbor's behaviour (pull when missing). */
export function defaultPullPolicy(env: NodeJS.ProcessEnv = process.env): PullPolicy {
  const v = env.TMAX_PULL as PullPolicy | undefined;
  return v && PULL_POLICIES.includes(v) ? v : "missing";
}

export async function resolveImage(docker: Docker, req: ImageRequest, ev: ImageEvents = {}): Promise<ImageUsed> {
  if (req.image && !req.prebuilt && !req.build) return { name: req.image, digest: await digestOf(docker, req.image), source: "local" };
  const prebuilt = req.prebuilt ?? (req.build ? undefined : req.image);
  const policy = req.pull ?? defaultPullPolicy();

  const build = async (note?: string): Promise<ImageUsed> => {
    if (!req.build) throw new SandboxError(note ?? "a sandbox needs an image or a build context", "create_failed");
    if (note) ev.onNote?.(note);
    const tag = await buildImage(req.build, docker, { signal: ev.signal });
    return { name: tag, digest: await digestOf(docker, tag), source: "built", ...(note ? { note } : {}) };
  };

  if (!prebuilt || (req.forceBuild && req.build)) return build();

  const local = await inspect(docker, prebuilt);
  if (local && policy !== "always") return { name: prebuilt, digest: pickDigest(local, prebuilt), source: "local" };
  if (policy === "never") {
    if (!req.build) throw new SandboxError(`image '${prebuilt}' not found locally and pulling is off (--pull never)`, "image_not_found");
    return build(`image '${prebuilt}' is not present locally and pulling is off (--pull never): building the task's Dockerfile instead`);
  }
  try {
    await pullImage(docker, prebuilt, { signal: ev.signal, onProgress: ev.onPull, retries: ev.pullRetries, backoffMs: ev.pullBackoffMs });
  } catch (err) {
    if (ev.signal?.aborted) throw err;
    const why = oneLine(err instanceof Error ? err.message : String(err));
    if (local) {
      ev.onNote?.(`${why}; using the local copy`);
      return { name: prebuilt, digest: pickDigest(local, prebuilt), source: "local", note: `${why}; using the local copy` };
    }
    if (!req.build) throw err;
    return build(`${why}; building the task's Dockerfile instead`);
  }
  const pulled = await inspect(docker, prebuilt);
  if (!pulled) throw new SandboxError(`pull of '${prebuilt}' finished but the engine does not list it`, "image_not_found");
  return { name: prebuilt, digest: pickDigest(pulled, prebuilt), source: "pulled" };
}

async function inspect(docker: Docker, ref: string): Promise<Docker.ImageInspectInfo | null> {
  try {
    return await docker.getImage(ref).inspect();
  } catch (err) {
    if (statusCode(err) === 404) return null;
    throw engineError(docker, err, "create_failed", `cannot inspect image '${ref}'`);
  }
}

async function digestOf(docker: Docker, ref: string): Promise<string | null> {
  const info = await inspect(docker, ref);
  return info ? pickDigest(info, ref) : null;
}

/** The repo digest of `ref`'s repository when the engine has one (e.g. after a pull), else the image ID. */
export function pickDigest(info: Pick<Docker.ImageInspectInfo, "Id" | "RepoDigests">, ref: string): string | null {
  const repo = repoOf(ref);
  const digests = info.RepoDigests ?? [];
  const match = digests.find((d) => repoOf(d) === repo) ?? digests.find((d) => repoOf(d).endsWith(`/${repo}`) || repo.endsWith(`/${repoOf(d)}`));
  return match ?? (info.Id ? (info.Id.startsWith("sha256:") ? info.Id : `sha256:${info.Id}`) : null);
}

function repoOf(ref: string): string {
  const at = ref.indexOf("@");
  let repo = at >= 0 ? ref.slice(0, at) : ref;
  const colon = repo.lastIndexOf(":");
  if (colon > repo.lastIndexOf("/")) repo = repo.slice(0, colon);
  return repo.replace(/^docker\.io\/(library\/)?/, "");
}
