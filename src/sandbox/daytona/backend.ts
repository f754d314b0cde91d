// EXPERIMENTAL: the Daytona backend (cloud sandboxes through the official TypeScript SDK, @daytonaio/sdk).
//
// What is verified and what is not. Verified: the SDK surface used here (daytonaSdk.ts) against the type
// declarations of @daytonaio/sdk 0.218.0 with tsc in a scratch project; the SDK's own behaviour read from its
// 0.218.0 sources (how a string image becomes `FROM <name>`, error classes and statusCode, its transport retry).
// Read from the Daytona daemon's sources (github.com/daytonaio/daytona, apps/daemon/pkg/session), not
// observed: a session is one shell (its own process group) that runs the commands written to it one after
// another; each command's stdout and stderr are logged line by line with a prefix per stream, and the last,
// unterminated line gets a "\n"; the exit code is written to a file when the command ends (older daemons wrote
// it before the log was drained, so the very end of the output could be missing there); deleting a session
// ends its whole process tree. None of this has been run against the Daytona service: the tests use an
// in-process fake of the SDK (test/unit/sandbox/daytona/backend.test.ts) that runs the commands on the test machine.
//
// Exec (daytonaExec.ts): through sessions, with stdout and stderr kept apart by the daemon. Commands run with
// runAsync and are polled; output is capped at maxOutputBytes inside the sandbox; the timeout is `timeout -k`
// inside the sandbox on the command's own process group, and the host kills that group (from another session)
// on an abort or when the command overruns. SDK 0.218.0 has no call that kills one session command (newer
// daemons have one, the SDK does not expose it), hence the kill through a second session. A `direct` exec (the
// verifier's kill isolation, which kills every process but PID 1, itself and its parent) runs in a session of
// its own under a recorder process that keeps its exit status in a file, since its wrapper and every session's
// shell die with it; sessions made before it are not used again. (Daytona's runner makes the daemon the
// container's entrypoint, so it is PID 1 and survives: apps/runner/pkg/docker/container_configs.go.) A session
// whose shell is gone for another reason is noticed when the daemon cannot write to it (400) and replaced.
//
// Image (daytonaImage.ts): snapshot, Dockerfile or prebuilt image, decided as Harbor's Daytona environment does.
// Sandboxes are ephemeral (deleted when stopped) and stop after IDLE_STOP_MINUTES without activity (Harbor's
// defaults are 0 for both intervals, i.e. never stopped and deleted at stop; tmax keeps a bound on sandboxes it
// lost track of). Network: networkBlockAll unless the task allows the internet, as Harbor and the docker backend.
//
// The SDK is an optional dependency loaded on first use (or injected: tests, doctor), so tmax runs without it.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { Readable } from "node:stream";
import { track, untrack } from "../cleanup.js";
import { DEFAULT_TUNING, SessionPool, execInSandbox, type ExecTuning } from "./exec.js";
import { planImage } from "./image.js";
import { resilientSandbox, waitOutQuota, withRetries, type QuotaPolicy, type RetryPolicy } from "./retry.js";
import {
  MISSING_KEY_MESSAGE,
  MISSING_SDK_MESSAGE,
  SDK_INSTALL_FIX,
  isConnectionError,
  loadSdk,
  messageOf,
  oneLine,
  statusOf,
  type DaytonaClientLike,
  type DaytonaCreateParams,
  type DaytonaSandboxLike,
  type DaytonaSdkLike,
} from "./sdk.js";
import { candidate, ownerLabels, prunable, type PruneFilter } from "../owner.js";
import { newBudget, safeExtract } from "../bytes/safeExtract.js";
import { DEFAULT_READ_MAX_BYTES, packItems, packLocalPath } from "../bytes/tarball.js";
import { withDeadline } from "../../util/deadline.js";
import { SandboxError, TMAX_JOB_LABEL, TMAX_LABEL, type ExecOptions, type Sandbox, type SandboxBackend, type SandboxSpec } from "../types.js";

export * from "./sdk.js";
export { execScript, sessionCommand, decodeStream, shellQuote } from "./exec.js";
export { snapshotName } from "./image.js";

export interface DaytonaBackendOptions {
  /** The SDK module; default: `loadSdk` (below) on first use. */
  sdk?: DaytonaSdkLike;
  /** How to load the SDK when `sdk` is not given; default `await import("@daytonaio/sdk")`. */
  loadSdk?: () => Promise<DaytonaSdkLike>;
  /** Default $DAYTONA_API_KEY. */
  apiKey?: string;
  /** Default $DAYTONA_API_URL, else the SDK's own default (https://app.daytona.io/api). */
  apiUrl?: string;
  /** Region; default $DAYTONA_TARGET, else the SDK's own default. */
  target?: string;
  /** Snapshot name template (`{name}` = the task's name); default $TMAX_DAYTONA_SNAPSHOT_TEMPLATE. See daytonaImage.ts. */
  snapshotTemplate?: string;
  /** Backoff on rate limits and transient errors (tests shorten it). */
  retry?: RetryPolicy;
  /** Waiting for a full quota on create (default Harbor's: 10 tries, 15 s steps, 120 s cap; tests shorten it). */
  quotaWait?: QuotaPolicy;
  /** Polling of running commands (tests shorten it). */
  poll?: { firstMs: number; maxMs: number };
}

/** Minutes without activity after which Daytona stops (and, ephemeral, deletes) a sandbox tmax lost track of. */
const IDLE_STOP_MINUTES = 60;
const CREATE_TIMEOUT_SEC = 600;
const DEFAULT_BUILD_TIMEOUT_SEC = 1800;

export function daytonaBackend(opts: DaytonaBackendOptions = {}): SandboxBackend {
  const apiKey = opts.apiKey ?? process.env.DAYTONA_API_KEY;
  if (!apiKey) throw new Error(MISSING_KEY_MESSAGE);
  const apiUrl = opts.apiUrl ?? (process.env.DAYTONA_API_URL || undefined);
  const target = opts.target ?? (process.env.DAYTONA_TARGET || undefined);
  const tuning: ExecTuning = { pollMs: opts.poll?.firstMs ?? DEFAULT_TUNING.pollMs, pollMaxMs: opts.poll?.maxMs ?? DEFAULT_TUNING.pollMaxMs };
  const snapshotTemplate = opts.snapshotTemplate ?? (process.env.TMAX_DAYTONA_SNAPSHOT_TEMPLATE || undefined);
  const ctx: Ctx = { apiKey, apiUrl, target, sdk: undefined, client: undefined, retry: opts.retry, quotaWait: opts.quotaWait, tuning, snapshotTemplate };
  let loading: Promise<void> | undefined;
  const ready = async (): Promise<Ready> => {
    loading ??= (async () => {
      const sdk = opts.sdk ?? (await (opts.loadSdk ?? loadSdk)());
      let client: DaytonaClientLike;
      try {
        client = new sdk.Daytona({ apiKey, ...(apiUrl ? { apiUrl } : {}), ...(target ? { target } : {}) });
      } catch (err) {
        throw new SandboxError(`cannot set up the Daytona client: ${messageOf(err, ctx)}`, "engine_unreachable");
      }
      ctx.sdk = sdk;
      ctx.client = client;
    })().catch((err) => {
      loading = undefined;
      throw err;
    });
    await loading;
    return ctx as Ready;
  };

  return {
    name: "daytona",
    create: async (spec, createOpts) => createSandbox(await ready(), spec, createOpts?.signal, createOpts?.onNote),
    prune: async (filter) => pruneSandboxes(await ready(), filter),
    listPrunable: async (filter) => (await prunableSandboxes(await ready(), filter)).map((sb) => candidate("sandbox", sb.id, sb.name ?? "", sb.labels)),
    check: async () => {
      let c: Ready;
      try {
        c = await ready();
      } catch (err) {
        const detail = (err as Error).message;
        return { ok: false, detail, fix: detail === MISSING_SDK_MESSAGE ? SDK_INSTALL_FIX : undefined };
      }
      return checkApi(c);
    },
  };
}

interface Ctx {
  retry?: RetryPolicy;
  quotaWait?: QuotaPolicy;
  tuning: ExecTuning;
  snapshotTemplate?: string;
  apiKey: string;
  apiUrl?: string;
  target?: string;
  sdk?: DaytonaSdkLike;
  client?: DaytonaClientLike;
}
type Ready = Ctx & { sdk: DaytonaSdkLike; client: DaytonaClientLike };

/** One-line SandboxError for an SDK failure, with a hint for the failures a user can fix. */
function sdkError(err: unknown, ctx: Ctx, kind: SandboxError["kind"], what: string, log?: string): SandboxError {
  const status = statusOf(err);
  const why = messageOf(err, ctx);
  if (status === 401) return new SandboxError(`${what}: Daytona rejected the API key (401); check DAYTONA_API_KEY`, "engine_unreachable");
  if (status === 403) return new SandboxError(`${what}: the API key is not allowed to do this (403): ${why}`, kind, log);
  if (isConnectionError(err)) {
    return new SandboxError(`${what}: cannot reach the Daytona API${ctx.apiUrl ? ` at ${ctx.apiUrl}` : ""} (${why})`, "engine_unreachable");
  }
  return new SandboxError(`${what}: ${why}`, kind, log);
}

// ---------------------------------------------------------------------------------------------------------
// create

async function createSandbox(ctx: Ready, spec: SandboxSpec, signal?: AbortSignal, onNote?: (message: string) => void): Promise<Sandbox> {
  signal?.throwIfAborted();
  const name = `tmax-${slug(spec.name ?? "sandbox")}-${randomBytes(4).toString("hex")}`;
  const plan = await planImage(ctx.sdk, ctx.client, spec, { snapshotTemplate: ctx.snapshotTemplate });
  if (plan.kind === "snapshot" && plan.note) onNote?.(plan.note);
  try {
    const params: DaytonaCreateParams = {
      name,
      ...(plan.kind === "snapshot" ? { snapshot: plan.snapshot } : { image: plan.image, resources: resourcesOf(spec) }),
      envVars: spec.env && Object.keys(spec.env).length ? { ...spec.env } : undefined,
      labels: { ...spec.labels, ...ownerLabels(), [TMAX_LABEL]: "1" },
      // The docker backend's default is no network too; "bridge" keeps Daytona's default (open) network.
      networkBlockAll: (spec.network ?? "none") === "none",
      autoStopInterval: IDLE_STOP_MINUTES,
      ephemeral: true,
    };
    if (params.resources === undefined) delete params.resources;
    const logLines: string[] = [];
    const building = plan.kind === "dockerfile";
    const timeout = building ? spec.build?.timeoutSec ?? DEFAULT_BUILD_TIMEOUT_SEC : CREATE_TIMEOUT_SEC;
    // A 429 (the create was refused) is retried with backoff, a full quota waited out as Harbor does; anything
    // else may have created a sandbox and is not repeated.
    const once = () => withRetries(() => ctx.client.create(params, { timeout, onSnapshotCreateLogs: (chunk) => logLines.push(chunk) }), { idempotent: false, policy: ctx.retry, signal });
    const creating = waitOutQuota(once, {
      policy: ctx.quotaWait,
      signal,
      onWait: (attempt, ms, err) => onNote?.(`Daytona quota in use (${messageOf(err, ctx)}); try ${attempt + 1} in ${Math.round(ms / 1000)} s`),
    });
    let remote: DaytonaSandboxLike;
    try {
      remote = await raceAbort(creating, signal, (late) => void late.delete().catch(() => undefined));
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      const from = plan.kind === "dockerfile" ? `the Dockerfile in ${spec.build!.contextDir}` : plan.kind === "snapshot" ? `snapshot '${plan.snapshot}'` : `'${plan.imageName}'`;
      throw sdkError(err, ctx, building ? "build_failed" : "create_failed", `cannot create a Daytona sandbox from ${from}`, logLines.join(""));
    }

    let workdir: string;
    try {
      signal?.throwIfAborted();
      workdir = spec.workdir ? path.posix.resolve("/", spec.workdir) : (await remote.getWorkDir().catch(() => undefined)) || "/";
    } catch (err) {
      await remote.delete().catch(() => undefined);
      throw err;
    }
    const sandbox = makeSandbox(ctx, resilientSandbox(remote, ctx.retry), plan.imageName, workdir);
    track(sandbox);
    if (spec.workdir) {
      try {
        const made = await sandbox.exec(["mkdir", "-p", "--", workdir], { cwd: "/", timeoutSec: 60, signal });
        if (made.exitCode !== 0) throw new SandboxError(`cannot create workdir ${workdir}: ${oneLine(made.stderr)}`, "create_failed");
      } catch (err) {
        await sandbox.remove().catch(() => undefined);
        throw err;
      }
    }
    return sandbox;
  } finally {
    if (plan.kind === "dockerfile") await plan.cleanup();
  }
}

function resourcesOf(spec: SandboxSpec): DaytonaCreateParams["resources"] {
  // Daytona takes whole cores and whole GiB; round up so a task never gets less than it asked for
  // (Harbor rounds memory and disk down).
  const cpu = spec.cpus ? Math.max(1, Math.ceil(spec.cpus)) : undefined;
  const memory = spec.memoryMb ? Math.max(1, Math.ceil(spec.memoryMb / 1024)) : undefined;
  const disk = spec.storageMb ? Math.max(1, Math.ceil(spec.storageMb / 1024)) : undefined;
  const out = { ...(cpu ? { cpu } : {}), ...(memory ? { memory } : {}), ...(disk ? { disk } : {}) };
  return Object.keys(out).length ? out : undefined;
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^[-.]+|-+$/g, "").slice(0, 40) || "sandbox";
}
/** Resolves with `work` unless `signal` aborts first; a result that arrives after the abort goes to `onLate`. */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined, onLate: (value: T) => void): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error("aborted"));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) onLate(value);
        else resolve(value);
      },
      (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------------------
// the sandbox object

function makeSandbox(ctx: Ctx, remote: DaytonaSandboxLike, image: string, workdir: string): Sandbox {
  const label = remote.name || remote.id;
  let removing: Promise<void> | undefined;
  let removed = false;
  const pool = new SessionPool(remote);
  const resolve = (p: string) => path.posix.resolve(sandbox.workdir, p);
  const run = (argv: string[], opts: ExecOptions = {}) => {
    if (removed || removing) return Promise.reject(new SandboxError(`sandbox ${label} was removed`, "exec_failed"));
    return execInSandbox({ remote, pool, label, workdir: sandbox.workdir, tuning: ctx.tuning, fail: (err, what) => sdkError(err, ctx, "exec_failed", what) }, argv, opts);
  };
  /** Runs a small helper script; a failure becomes one SandboxError naming `what`. */
  const helper = async (what: string, script: string, args: string[], okCodes = [0]): Promise<number> => {
    const result = await run(["bash", "-c", script, "tmax", ...args], { cwd: "/", timeoutSec: 300 });
    if (!okCodes.includes(result.exitCode)) {
      const why = oneLine(result.stderr || result.stdout) || `exit ${result.exitCode}`;
      throw new SandboxError(`cannot ${what} in ${label}: ${why}`, "exec_failed");
    }
    return result.exitCode;
  };
  /** Puts a tar archive into the sandbox and unpacks it at `/` (member names are absolute paths minus the slash). */
  const putTar = async (archive: Readable, what: string, mkdir?: string) => {
    const data = await collect(archive);
    const tarPath = `/tmp/.tmax-put-${randomBytes(8).toString("hex")}.tar`;
    try {
      await remote.fs.uploadFile(data, tarPath);
    } catch (err) {
      throw sdkError(err, ctx, "exec_failed", `cannot ${what}`);
    }
    await helper(what, `ec=0; if [ -n "$1" ]; then mkdir -p -- "$1" || ec=$?; fi; [ $ec = 0 ] && { tar -xpf "$2" -C / || ec=$?; }; rm -f -- "$2"; exit $ec`, [mkdir ?? "", tarPath]);
  };

  const sandbox: Sandbox = {
    id: remote.id,
    backend: "daytona",
    image,
    workdir,
    exec: run,

    // Files and directories go through one tar archive each way (uploaded/downloaded as a single file and
    // unpacked with `tar` in the sandbox): modes and symlinks survive, and it is one API round trip per copy.
    async upload(localPath, remoteDir) {
      const target = resolve(remoteDir);
      const archive = await packLocalPath(localPath, target).catch((err) => {
        throw new SandboxError(`cannot upload ${localPath}: ${oneLine((err as Error).message)}`, "exec_failed");
      });
      await putTar(archive, `upload ${localPath} to ${label}:${remoteDir}`, target);
    },

    async download(remotePath, localDir, budget = newBudget()) {
      const source = resolve(remotePath);
      const tarPath = `/tmp/.tmax-get-${randomBytes(8).toString("hex")}.tar`;
      // The archive is made in the sandbox; its size is checked before the SDK buffers it on the host.
      const packScript = `{ [ -e "$1" ] || [ -L "$1" ]; } || exit 3; tar -C "$(dirname -- "$1")" -cf "$2" -- "$(basename -- "$1")"; s=$(stat -c %s "$2") && [ "$s" -le "$3" ] || exit 4`;
      const code = await helper(`read ${remotePath}`, packScript, [source, tarPath, String(budget.limits.maxStreamBytes)], [0, 3, 4]);
      if (code === 3) return false;
      if (code === 4) {
        budget.error ??= `archive of ${remotePath} larger than ${budget.limits.maxStreamBytes} bytes: not downloaded`;
        await run(["rm", "-f", "--", tarPath], { cwd: "/", timeoutSec: 60 }).catch(() => undefined);
        return true;
      }
      try {
        let data: Buffer;
        try {
          data = await remote.fs.downloadFile(tarPath);
        } catch (err) {
          throw sdkError(err, ctx, "exec_failed", `cannot download ${label}:${remotePath}`);
        }
        await safeExtract(Readable.from([data]), localDir, budget);
        return true;
      } finally {
        await run(["rm", "-f", "--", tarPath], { cwd: "/", timeoutSec: 60 }).catch(() => undefined);
      }
    },

    async writeFile(remotePath, content, mode = 0o644) {
      const target = resolve(remotePath);
      const archive = packItems([{ name: target.replace(/^\/+/, ""), content: Buffer.from(content), mode }]);
      await putTar(archive, `write ${label}:${target}`);
    },

    async readFile(remotePath, opts = {}) {
      const target = resolve(remotePath);
      const maxBytes = opts.maxBytes ?? DEFAULT_READ_MAX_BYTES;
      // the size is checked in the sandbox first: the SDK buffers the whole file on the host
      const size = await run(["stat", "-L", "-c", "%s", "--", target], { cwd: "/", timeoutSec: 60 }).catch(() => undefined);
      const bytes = size && size.exitCode === 0 ? Number(size.stdout.trim()) : NaN;
      if (bytes > maxBytes) throw new SandboxError(`${label}:${target} is larger than ${maxBytes} bytes (${bytes}): not read`, "exec_failed");
      try {
        return Buffer.from(await remote.fs.downloadFile(target));
      } catch (err) {
        // The SDK's error for a missing file is not reliably typed (it may lack a status code): ask the sandbox.
        const exists = await run(["test", "-e", target], { cwd: "/", timeoutSec: 60 }).catch(() => undefined);
        if (exists && exists.exitCode !== 0) return null;
        throw sdkError(err, ctx, "exec_failed", `cannot read ${label}:${target}`);
      }
    },

    remove() {
      removing ??= (async () => {
        // Sessions first (each delete ends what the session still runs), then the sandbox.
        await pool.close();
        try {
          await remote.delete();
        } catch (err) {
          // 404: already gone; 409: a deletion is already under way (e.g. prune).
          const status = statusOf(err);
          if (status !== 404 && status !== 409) {
            removing = undefined;
            throw sdkError(err, ctx, "exec_failed", `cannot remove sandbox ${label}`);
          }
        }
        removed = true;
        untrack(sandbox);
      })();
      return removing;
    },
  };
  return sandbox;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------------------
// prune and check

async function prunableSandboxes(ctx: Ready, filter: PruneFilter = {}): Promise<DaytonaSandboxLike[]> {
  const labels: Record<string, string> = { [TMAX_LABEL]: "1", ...(filter.job ? { [TMAX_JOB_LABEL]: filter.job } : {}) };
  const found: DaytonaSandboxLike[] = [];
  try {
    for await (const sb of ctx.client.list({ labels })) {
      // Re-check the labels here: never delete a sandbox tmax did not label, whatever the filter did.
      if (Object.entries(labels).every(([k, v]) => sb.labels?.[k] === v) && prunable(sb.labels, filter)) found.push(sb);
    }
  } catch (err) {
    throw sdkError(err, ctx, "exec_failed", "cannot list Daytona sandboxes");
  }
  return found;
}

async function pruneSandboxes(ctx: Ready, filter: PruneFilter = {}): Promise<number> {
  const found = await prunableSandboxes(ctx, filter);
  const removed = await Promise.all(
    found.map((sb) =>
      sb.delete().then(
        () => 1,
        () => 0, // already gone, or being deleted by someone else
      ),
    ),
  );
  return removed.reduce((a, b) => a + b, 0);
}

async function checkApi(ctx: Ready): Promise<{ ok: boolean; detail: string; fix?: string }> {
  const where = `${ctx.apiUrl ?? "the Daytona API (SDK default URL)"}${ctx.target ? `, target ${ctx.target}` : ""}`;
  try {
    let count = 0;
    await withDeadline(
      (async () => {
        for await (const _ of ctx.client.list({ labels: { [TMAX_LABEL]: "1" }, limit: 1 })) {
          count++;
          break;
        }
      })(),
      15_000,
    );
    return { ok: true, detail: `Daytona (experimental backend): ${where} answered; ${count ? "tmax sandboxes exist" : "no tmax sandboxes running"}` };
  } catch (err) {
    const status = statusOf(err);
    const fix =
      status === 401 || status === 403
        ? "check DAYTONA_API_KEY (create a key in the Daytona dashboard)"
        : "check network access and DAYTONA_API_URL / DAYTONA_TARGET";
    return { ok: false, detail: `cannot list Daytona sandboxes at ${where}: ${messageOf(err, ctx)}`, fix };
  }
}

