// Contracts of the sandbox layer. A sandbox is one long-lived container (or a local dir with --unsafe).
// A leaf: it imports no other sandbox file but the type of the extraction budget (safeExtract.ts, itself a leaf),
// so every backend and helper can import it without a circle.
import type { ExtractBudget } from "./bytes/safeExtract.js";

export type SandboxBackendName = "docker" | "local" | "daytona";

/** One service of a multi-container sandbox (docker backend only; see compose.ts). */
export interface ComposeServiceSpec {
  name: string;
  build?: { contextDir: string; dockerfile: string };
  image?: string;
  command?: string[];
  entrypoint?: string[];
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  dependsOn: Array<{ service: string; condition: "service_started" | "service_healthy" | "service_completed_successfully" }>;
  healthcheck?: { test: string[]; intervalSec: number; timeoutSec: number; retries: number; startPeriodSec: number };
  cpus?: number;
  memoryMb?: number;
}

export interface SandboxSpec {
  /** Run this image as is ... */
  image?: string;
  /** ... or build this context first (image cached by content hash). */
  build?: { contextDir: string; dockerfile?: string; imageMap?: Record<string, string>; timeoutSec?: number; network?: "none" | "bridge" };
  cpus?: number;
  memoryMb?: number;
  /** Disk the task asks for (task.toml storage_mb): docker caps the writable layer where the engine can (overlay on xfs with pquota, else one warning); daytona sizes the sandbox disk. */
  storageMb?: number;
  pidsLimit?: number;
  network?: "none" | "bridge";
  env?: Record<string, string>;
  /** Overrides the image WORKDIR. */
  workdir?: string;
  /** Extra labels; tmax always adds its own so `tmax sandbox prune` can find leftovers. */
  labels?: Record<string, string>;
  /** Human-readable name prefix (a random suffix is added). */
  name?: string;
  /** A task's prebuilt image (docker_image): used per `pull`, with `build` as the fallback (see images.ts). */
  prebuilt?: string;
  pull?: PullPolicy;
  /** Build even when a prebuilt image is named. */
  forceBuild?: boolean;
  /** GPUs the task needs; refused when the engine host has none. */
  gpus?: number;
  /** Join this user-defined network under these aliases instead of `network` (multi-container sandboxes). */
  networkAttach?: { name: string; aliases: string[]; hosts?: string[] };
  /** Other services to run next to this one on a private network (the sandbox itself is the main service). */
  compose?: { main: string; services: ComposeServiceSpec[] };
}

/** When a task's prebuilt image is pulled (see images.ts). */
export type PullPolicy = "always" | "missing" | "never";

/** The image a sandbox actually ran (goes into result.json as `image`). */
export interface ImageUsed {
  name: string;
  /** Registry digest (`repo@sha256:…`) when the engine knows one, else the image ID. */
  digest: string | null;
  source: "pulled" | "built" | "local";
  /** Why the Dockerfile was built instead of the prebuilt image (pull failure, policy). */
  note?: string;
}

/** One progress event of a pull, as the engine reports it (layer id, status text, bytes). */
export interface PullProgress {
  image: string;
  status: string;
  layer?: string;
  current?: number;
  total?: number;
}

export interface CreateOptions {
  signal?: AbortSignal;
  /** Pull progress of a prebuilt image. */
  onPull?: (p: PullProgress) => void;
  /** One-line notices, e.g. a failed pull that fell back to building the Dockerfile. */
  onNote?: (message: string) => void;
}

export interface ExecOptions {
  timeoutSec?: number; // default: none (use with care)
  cwd?: string;
  env?: Record<string, string>;
  user?: string;
  /** Run through a fresh exec and retire the resident executor: for a command that kills every process (the executor's helper too); later commands run as execs. */
  direct?: boolean;
  /** Cap on raw bytes kept per stream (default 1 MiB); the rest is read and dropped. */
  maxOutputBytes?: number;
  signal?: AbortSignal;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  timedOut: boolean;
  /** True when output went over maxOutputBytes and was cut. */
  truncated: boolean;
  durationMs: number;
}

export interface Sandbox {
  readonly id: string;
  readonly backend: SandboxBackendName;
  readonly image: string;
  /** The WORKDIR of the image (or spec.workdir), `/` when none. */
  readonly workdir: string;
  /** What image runs, how it was obtained (docker backend). */
  readonly imageUsed?: ImageUsed;
  /** Runs `argv` (no shell) inside the sandbox. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Copies a local file or directory to `remoteDir` (created if missing): local `a/b` lands as `remoteDir/b`. */
  upload(localPath: string, remoteDir: string): Promise<void>;
  /**
   * Copies a remote file or directory into `localDir` (created if missing) as plain data (see safeExtract.ts):
   * regular files and dirs only, masked modes, links recorded in `budget.links` and never created, caps
   * charged to `budget` (one per trial). Missing remote path → false. A write error rejects (ExtractError).
   */
  download(remotePath: string, localDir: string, budget?: ExtractBudget): Promise<boolean>;
  writeFile(remotePath: string, content: string | Buffer, mode?: number): Promise<void>;
  /** Null when the file does not exist; a file over `maxBytes` (default 16 MiB) is refused (SandboxError). */
  readFile(remotePath: string, opts?: { maxBytes?: number }): Promise<Buffer | null>;
  /** Idempotent; never throws for an already removed sandbox. */
  remove(): Promise<void>;
  /** Filesystem changes since the image (the engine's container-changes API); absent when the backend has none. */
  changes?(): Promise<FileChange[]>;
  /**
   * A fresh sandbox from a snapshot (commit) of this one's filesystem, sharing only its network namespace
   * (services this sandbox runs stay reachable on localhost); none of this sandbox's processes run in it.
   * Removing it also removes the snapshot image. Absent when the backend cannot snapshot.
   */
  snapshot?(opts?: SnapshotOptions): Promise<Sandbox>;
  /**
   * What the engine says about `path` (its archive-stat), never through a program in the container: null when
   * it does not exist. Parent links are followed by the engine; `link` is about the last component.
   */
  stat?(path: string): Promise<PathStat | null>;
  /** The id of the image this sandbox runs (for caches keyed by image content). */
  imageId?(): Promise<string>;
  /** A fresh sandbox from this sandbox's image (none of its changes), no network: a baseline to compare against. */
  pristine?(): Promise<Sandbox>;
  /**
   * Runs `fn` with every process of the sandbox paused (the engine's pause: the cgroup freezer), then resumes
   * them. `fn` may use the engine's APIs (changes, archive) but not exec. `frozen` is false when the engine
   * could not pause (fn then ran with the processes alive). Absent when the backend cannot pause.
   */
  freeze?<T>(fn: () => Promise<T>): Promise<{ value: T; frozen: boolean; why?: string }>;
}

/** The engine's archive-stat of one path (Docker and podman: `X-Docker-Container-Path-Stat`). */
export interface PathStat {
  size: number;
  /** Permission bits (0o7777). */
  perm: number;
  mtime: string;
  dir: boolean;
  /** The last component is a symbolic link. */
  link: boolean;
  /** For a link: where it resolves to (absolute, resolved by the engine in the container). */
  linkTarget?: string;
}

export interface SnapshotOptions {
  /** Refuse (SnapshotTooLargeError) when the container's changed files add up to more bytes than this (apparent size: a sparse file counts whole, as a commit writes it). */
  maxBytes?: number;
  /** Runs with the sandbox frozen right before the commit (the same freeze): e.g. the change scan. */
  beforeCommit?: () => Promise<void>;
  /** Called once with how the freeze went (see freeze()). */
  onFreeze?: (frozen: boolean, why?: string) => void;
}

/** A snapshot refused because the container's writable layer is larger than the cap (a commit would write it all to the host). */
export class SnapshotTooLargeError extends Error {
  constructor(readonly bytes: number, readonly maxBytes: number) {
    super(`the container's changes are ${Math.round(bytes / 2 ** 20)} MiB (apparent size), over the snapshot cap of ${Math.round(maxBytes / 2 ** 20)} MiB`);
    this.name = "SnapshotTooLargeError";
  }
}

/** One entry of the container-changes API: kind 0 = modified, 1 = added, 2 = deleted. */
export interface FileChange {
  path: string;
  kind: 0 | 1 | 2;
}

/** One leftover that prune would remove. Labels are whoever made the container's text: print them stripped. */
export interface PruneCandidate {
  kind: "container" | "snapshot-image" | "sandbox";
  id: string;
  /** Container or sandbox name; an image's first tag (or "" when untagged). */
  name: string;
  /** The job id label, or null. */
  job: string | null;
  /** The job dir label (display only), or null. */
  jobDir: string | null;
  /** Owner pid@host from the labels, or null when they are missing. */
  owner: string | null;
}

export interface SandboxBackend {
  readonly name: SandboxBackendName;
  create(spec: SandboxSpec, opts?: CreateOptions): Promise<Sandbox>;
  /**
   * Removes tmax's containers on this engine: by default only those whose owning process is gone (same host,
   * pid dead or reused); `{ job }` every container of one job id; `{ all: true }` every tmax container.
   */
  prune(filter?: { job?: string; all?: boolean }): Promise<number>;
  /** Removes verifier snapshot images chosen by the same rule as prune (owner gone, one job, all); absent when the backend makes none. */
  pruneSnapshots?(filter?: { job?: string; all?: boolean }): Promise<number>;
  /** What prune and pruneSnapshots would remove with this filter, removing nothing (`tmax sandbox prune --dry-run`). */
  listPrunable?(filter?: { job?: string; all?: boolean }): Promise<PruneCandidate[]>;
  /** Quick health check for `tmax doctor`. */
  check(): Promise<{ ok: boolean; detail: string; fix?: string }>;
}

/** Label every tmax container carries. */
export const TMAX_LABEL = "io.tmax.managed";
/** Label holding the unique id (UUID) of the job/run a container belongs to (set it through SandboxSpec.labels); `prune({ job })` filters on it. */
export const TMAX_JOB_LABEL = "io.tmax.job";
/** Label on the private networks of multi-container sandboxes (with the job label), for prune. */
export const TMAX_NETWORK_LABEL = "io.tmax.network";

export class SandboxError extends Error {
  /** The engine failed, not the task or the agent: the trial is retried and left out of the infra-clean score. */
  readonly infrastructure: boolean;
  constructor(
    message: string,
    readonly kind: "engine_unreachable" | "image_not_found" | "build_failed" | "build_timeout" | "create_failed" | "exec_failed",
    /** Full engine output behind a one-line message (the whole build log for build_failed / build_timeout). */
    readonly log?: string,
  ) {
    super(message);
    this.name = "SandboxError";
    this.infrastructure = SandboxError.isInfrastructure(kind);
  }

  /** The kinds that are the engine's failure (a build or a missing image is the task's). */
  static isInfrastructure(kind: string): boolean {
    return kind === "engine_unreachable" || kind === "create_failed" || kind === "exec_failed";
  }
}
