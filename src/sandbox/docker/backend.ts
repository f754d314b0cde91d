// The docker backend: one long-lived container per sandbox on any Docker-compatible engine (podman's compat
// API by default, Docker alike). Nothing is ever pulled: images are local or built from a context.
import { randomBytes } from "node:crypto";
import { readFile as readHostFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { track, untrack } from "../cleanup.js";
import { createComposeSandbox, pruneNetworks } from "./compose.js";
import { connectEngine, engineAddress, engineError, engineMessage, isUnreachable, statusCode, unreachableError } from "./engine.js";
import { DEFAULT_MAX_OUTPUT_BYTES, cappedBuffer, demuxer } from "../bytes/execOutput.js";
import { gpuCheck } from "./gpus.js";
import { ensureHostGuard } from "./hostGuard.js";
import { resolveImage, type ImageUsed } from "./images.js";
import { startExecutor, type Executor } from "./executor.js";
import { candidate, ownerLabels, prunable, type PruneFilter } from "../owner.js";
import { newBudget, printableName, safeExtract } from "../bytes/safeExtract.js";
import { DEFAULT_READ_MAX_BYTES, joinTarName, packItems, packLocalPath, readFirstMember } from "../bytes/tarball.js";
import { withDeadline } from "../../util/deadline.js";
import {
  SandboxError,
  TMAX_LABEL,
  TMAX_JOB_LABEL,
  type CreateOptions,
  type ExecOptions,
  type ExecResult,
  type PathStat,
  type Sandbox,
  type SandboxBackend,
  type SandboxSpec,
  type SnapshotOptions,
  SnapshotTooLargeError,
} from "../types.js";

export const DEFAULT_PIDS_LIMIT = 4096;
/** `timeout -k`: grace between the TERM at the deadline and the KILL (same as the Terminal-Bench harness). */
const KILL_AFTER_SEC = 10;
/** The host gives up on an exec stream this long after the in-container deadline. */
const WATCHDOG_SLACK_SEC = 15;
/** After the host watchdog killed an exec, how long its stream may take to deliver what was written before. */
const WATCHDOG_DRAIN_MS = 2_000;
/**
 * tmax's own exec wrapper, by absolute path: a `timeout` the agent put earlier in PATH (/usr/local/bin) is
 * never used. Images without it fall back to the host watchdog (see execInContainer).
 */
export const TIMEOUT_BINARY = "/usr/bin/timeout";
/** PID 1 of a snapshot (verifier) container, by absolute path for the same reason. */
const SLEEP_BINARY = "/bin/sleep";
/**
 * The network files the engine writes into a container (bind mounts). A snapshot container in the agent
 * container's network namespace shares them, agent edits included; the verifier gets the engine's versions,
 * read right after the agent container started (see docs/reward-integrity.md).
 */
const NETWORK_FILES = ["/etc/hosts", "/etc/resolv.conf"] as const;
/** Default cap on a snapshot's changed bytes (apparent size), TMAX_SNAPSHOT_MAX_MB overrides. */
export const DEFAULT_SNAPSHOT_MAX_BYTES = 4096 * 2 ** 20;

export interface DockerBackendOptions {
  /** Engine address in DOCKER_HOST form; default $DOCKER_HOST, else unix:///run/podman/podman.sock. */
  host?: string;
  /** An existing client (tests, or sharing one connection pool). Wins over `host`. */
  docker?: Docker;
  /**
   * How commands run: "resident" (default) through one long-lived helper per container (executor.ts),
   * falling back to an exec per command where it cannot start; "exec" always one exec per command.
   * Env TMAX_EXECUTOR=exec sets the default.
   */
  executor?: "resident" | "exec";
}

/** A docker sandbox also exposes its container name (handy in logs and for `podman exec -it`). */
export interface DockerSandbox extends Sandbox {
  readonly name: string;
  /** Notes the engine's own files as they are at start (see ENGINE_FILES); `changes()` lists them when edited. */
  recordEngineFiles(): Promise<void>;
}

/**
 * Files the engine bind-mounts into every container: edits of them are not in the container-changes list (they
 * are not in the container's layer), so their path-stat at start is kept and compared by `changes()`. The
 * engine's archive read costs about a second per file on podman, so the stat (size, mode, mtime to the
 * nanosecond) stands in for the content.
 */
// None for now: podman rewrites /etc/hosts of a running container by itself (its path-stat and bytes change with no
// write of the agent's), so listing it flagged every honest trial (network-config) and zeroed it under strict. A
// snapshot verifier gets the engine's own network files back instead (restoreNetworkFiles); in shared mode the
// agent's edits are what Harbor's verifier sees too. Add a file here only with a test that an honest trial stays clean.
const ENGINE_FILES: string[] = [];

export function dockerBackend(opts: DockerBackendOptions = {}): SandboxBackend {
  const docker = opts.docker ?? connectEngine(opts.host);
  return {
    name: "docker",
    create: (spec, createOpts = {}) =>
      spec.compose
        ? createComposeSandbox(docker, spec, createOpts, (main, o) => createSandbox(docker, main, o))
        : createSandbox(docker, spec, createOpts, opts.executor),
    prune: (filter) => pruneContainers(docker, filter),
    pruneSnapshots: (filter) => pruneSnapshotImages(docker, filter),
    listPrunable: async (filter) => [
      ...(await prunableContainers(docker, filter)).map((c) => candidate("container", c.Id, c.Names?.[0]?.replace(/^\//, "") ?? "", c.Labels)),
      ...(await prunableImages(docker, filter ?? {}, false)).map((i) => candidate("snapshot-image", i.Id, i.RepoTags?.find((t) => t !== "<none>:<none>") ?? "", i.Labels)),
    ],
    check: () => checkEngine(docker),
  };
}

// ---------------------------------------------------------------------------------------------------------
// create

function defaultExecutor(): "resident" | "exec" {
  return process.env.TMAX_EXECUTOR === "exec" ? "exec" : "resident";
}

/** Per engine: can it cap a container's writable layer (StorageOpt size)? Unknown until the first try. */
const storageSupported = new Map<string, boolean>();
const STORAGE_UNSUPPORTED = /storage-opt|storage option|pquota|backingFS|not supported.*size|size.*not supported/i;

/** `from`: a snapshot (verifier) sandbox made from a commit of another container, in that container's network namespace. */
export async function createSandbox(docker: Docker, spec: SandboxSpec, opts: CreateOptions & { from?: SnapshotOf } = {}, executor: "resident" | "exec" = defaultExecutor()): Promise<DockerSandbox> {
  const signal = opts.signal;
  const from = opts.from;
  signal?.throwIfAborted();
  if (spec.gpus && spec.gpus > 0) {
    const gpu = gpuCheck(spec.gpus);
    if (gpu) throw new SandboxError(gpu, "create_failed");
  }
  const used = await resolveImage(docker, spec, { signal, onPull: opts.onPull, onNote: opts.onNote });
  const image = used.name;
  const imageInfo = await inspectImage(docker, image);
  const workdir = spec.workdir ? path.posix.resolve("/", spec.workdir) : imageInfo.Config?.WorkingDir || "/";
  const memory = spec.memoryMb ? Math.round(spec.memoryMb * 1024 * 1024) : undefined;

  // a container on a bridge network reaches the host through its gateway: guard the host's own addresses first
  if (!from && (spec.networkAttach || (spec.network ?? "none") !== "none")) await ensureHostGuard(docker);
  signal?.throwIfAborted();
  const name = `tmax-${slug(spec.name ?? "sandbox")}-${randomBytes(4).toString("hex")}`;
  let container: Docker.Container;
  const storage = !from && spec.storageMb && storageSupported.get(engineAddress(docker)) !== false ? { size: `${Math.ceil(spec.storageMb)}m` } : undefined;
  const createOptions = (storageOpt?: { size: string }) => ({
    name,
    Image: image,
    // A process that idles forever and dies at once on stop: PID 1 ignores SIGTERM, so the stop signal is
    // SIGKILL with no grace period (otherwise podman's `rm -f` waits 10 s).
    Entrypoint: [from ? SLEEP_BINARY : "sleep", "infinity"],
    Cmd: [],
    StopSignal: "SIGKILL",
    StopTimeout: 0,
    WorkingDir: workdir, // both engines create it at start when missing
    Env: toEnvList(spec.env),
    Labels: { ...spec.labels, ...ownerLabels(), [TMAX_LABEL]: "1" },
    Tty: false,
    OpenStdin: false,
    ...(spec.networkAttach ? { NetworkingConfig: { EndpointsConfig: { [spec.networkAttach.name]: { Aliases: spec.networkAttach.aliases } } } } : {}),
    HostConfig: {
      NetworkMode: from ? `container:${from.containerId}` : (spec.networkAttach?.name ?? spec.network ?? "none"),
      ...(!from && spec.networkAttach?.hosts?.length ? { ExtraHosts: spec.networkAttach.hosts } : {}),
      ...(spec.gpus ? { DeviceRequests: [{ Driver: "", Count: spec.gpus, Capabilities: [["gpu"]] }] } : {}),
      NanoCpus: spec.cpus ? Math.round(spec.cpus * 1e9) : undefined,
      Memory: memory,
      MemorySwap: memory, // no swap beyond the memory limit
      PidsLimit: spec.pidsLimit ?? DEFAULT_PIDS_LIMIT,
      Init: false,
      ...(storageOpt ? { StorageOpt: storageOpt } : {}),
    },
  }) as Docker.ContainerCreateOptions;
  try {
    try {
      container = await docker.createContainer(createOptions(storage));
      if (storage) storageSupported.set(engineAddress(docker), true);
    } catch (err) {
      if (!storage || !STORAGE_UNSUPPORTED.test(engineMessage(err))) throw err;
      // the engine cannot cap the writable layer (overlay needs xfs with pquota): said once, then run without
      if (storageSupported.get(engineAddress(docker)) !== false) {
        storageSupported.set(engineAddress(docker), false);
        console.error(`tmax: warning: storage limits (task storage_mb) are not enforced on this engine: ${engineMessage(err).split(": ").at(-1)}`);
      }
      container = await docker.createContainer(createOptions());
    }
  } catch (err) {
    if (statusCode(err) === 404) throw imageNotFound(image);
    throw engineError(docker, err, "create_failed", `cannot create a container from '${image}'`);
  }

  const info: SandboxInfo = { image, workdir, name, used, executor, spec, ownedImage: from?.image };
  const sandbox = makeSandbox(docker, container, info);
  track(sandbox);
  try {
    signal?.throwIfAborted();
    await container.start();
    signal?.throwIfAborted();
    await sandbox.recordEngineFiles();
    // the engine's network files, before any command of the agent (a snapshot's verifier gets these back)
    if (!from) info.networkFiles = await readNetworkFiles(container);
  } catch (err) {
    await sandbox.remove().catch(() => undefined);
    if (signal?.aborted) throw signal.reason ?? err;
    throw engineError(docker, err, "create_failed", `cannot start a container from '${image}'`);
  }
  return sandbox;
}

async function inspectImage(docker: Docker, image: string): Promise<Docker.ImageInspectInfo> {
  try {
    return await docker.getImage(image).inspect();
  } catch (err) {
    if (statusCode(err) === 404) throw imageNotFound(image);
    throw engineError(docker, err, "create_failed", `cannot inspect image '${image}'`);
  }
}

function imageNotFound(image: string): SandboxError {
  return new SandboxError(`image '${image}' not found locally; build it or check --image`, "image_not_found");
}

function slug(name: string): string {
  return name.replace(/[^a-zA-Z0-9_.-]+/g, "-").replace(/^[-.]+|-+$/g, "").slice(0, 40) || "sandbox";
}

function toEnvList(env?: Record<string, string>): string[] | undefined {
  return env ? Object.entries(env).map(([k, v]) => `${k}=${v}`) : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// the sandbox object

interface SandboxInfo {
  image: string;
  workdir: string;
  name: string;
  used?: ImageUsed;
  executor?: "resident" | "exec";
  spec: SandboxSpec;
  /** A snapshot image this sandbox was made from; removed with it. */
  ownedImage?: string;
  /** The engine's /etc/hosts and /etc/resolv.conf as they were when the container started. */
  networkFiles?: Record<string, Buffer>;
}

async function readNetworkFiles(container: Docker.Container): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  for (const file of NETWORK_FILES) {
    const archive = await container.getArchive({ path: file }).catch(() => null);
    const member = archive ? await readFirstMember(archive as unknown as Readable, 1 << 20).catch(() => null) : null;
    if (member?.type === "file") files[file] = member.content;
  }
  return files;
}

/** The snapshot's size before a commit: the engine's size of the writable layer (apparent: a sparse file counts whole). */
async function changedBytes(container: Docker.Container): Promise<number> {
  const inspected = (await container.inspect({ size: true } as never)) as unknown as { SizeRw?: number };
  return typeof inspected.SizeRw === "number" ? inspected.SizeRw : 0;
}

function snapshotCap(opts: SnapshotOptions): number {
  if (opts.maxBytes !== undefined) return opts.maxBytes;
  const mb = Number(process.env.TMAX_SNAPSHOT_MAX_MB);
  return Number.isFinite(mb) && mb > 0 ? mb * 2 ** 20 : DEFAULT_SNAPSHOT_MAX_BYTES;
}

/** A snapshot sandbox: made from `image` (a commit of `containerId`), in `containerId`'s network namespace. */
interface SnapshotOf {
  containerId: string;
  image: string;
}

export function makeSandbox(docker: Docker, container: Docker.Container, info: SandboxInfo): DockerSandbox {
  const resolve = (p: string) => path.posix.resolve(info.workdir, p);
  let removing: Promise<void> | undefined;
  let removed = false;
  // Cleared when the image turns out to have no `timeout` binary (then only the host watchdog enforces limits).
  const state = { hasTimeoutBinary: true };
  // Started on the first command; null (or dead) means plain execs.
  let executor: Promise<Executor | null> | undefined;
  // ENGINE_FILES' path-stat at start (JSON), once recorded
  const engineFiles = new Map<string, string>();

  const sandbox: DockerSandbox = {
    id: container.id,
    backend: "docker",
    image: info.image,
    workdir: info.workdir,
    name: info.name,
    ...(info.used ? { imageUsed: info.used } : {}),

    exec(argv, opts = {}) {
      if (removed) return Promise.reject(new SandboxError(`sandbox ${info.name} was removed`, "exec_failed"));
      if (opts.direct && executor) {
        // retired before the command runs: it may kill every process, the executor's helper included
        const old = executor;
        executor = Promise.resolve(null);
        void old.then((x) => x?.close());
      }
      if (info.executor === "resident" && !opts.user && !opts.direct && argv.length > 0 && !argv.some((a) => a.includes("\0"))) {
        executor ??= startExecutor(container, randomBytes(6).toString("hex"));
        return executor.then((x) =>
          x?.alive ? x.exec(argv, info.workdir, { ...opts, cwd: resolve(opts.cwd ?? ".") }) : execInContainer(docker, container, info, state, argv, opts),
        );
      }
      return execInContainer(docker, container, info, state, argv, opts);
    },

    async upload(localPath, remoteDir) {
      const archive = await packLocalPath(localPath, resolve(remoteDir)).catch((err) => {
        throw new SandboxError(`cannot upload ${localPath}: ${engineMessage(err)}`, "exec_failed");
      });
      await putArchive(docker, container, archive, `upload ${localPath} to ${info.name}:${remoteDir}`);
    },

    async download(remotePath, localDir, budget = newBudget()) {
      const target = resolve(remotePath);
      // the engine's archive API follows a link at (or above) the path: refuse a path that is not itself. Asked
      // of the engine, component by component: a `readlink` run in the container is whatever the agent put there
      const linked = await linkOnPath(container, target);
      if (linked) {
        budget.skipped.push({ path: printableName(path.posix.basename(target)), reason: `the downloaded path itself is a link: refused (${printableName(linked.at)} resolves to ${printableName(linked.to)})` });
        return true;
      }
      const archive = await getArchive(docker, container, target);
      if (!archive) return false;
      await safeExtract(archive, localDir, budget);
      return true;
    },

    async writeFile(remotePath, content, mode = 0o644) {
      const target = resolve(remotePath);
      const archive = packItems([{ name: joinTarName("/", target), content: Buffer.from(content), mode }]);
      await putArchive(docker, container, archive, `write ${info.name}:${target}`);
    },

    async readFile(remotePath, opts = {}) {
      let target = resolve(remotePath);
      const maxBytes = opts.maxBytes ?? DEFAULT_READ_MAX_BYTES;
      // The archive API returns a symlink as a link; follow a few hops (inside the container) like `cat` would.
      for (let hops = 0; hops < 8; hops++) {
        const archive = await getArchive(docker, container, target);
        if (!archive) return null;
        const member = await readFirstMember(archive, maxBytes);
        if (!member) return null;
        if (member.type === "file") return member.content;
        if (member.type === "too_large") throw new SandboxError(`${info.name}:${target} is larger than ${maxBytes} bytes (${member.size}): not read`, "exec_failed");
        if (member.type === "other") throw new SandboxError(`${info.name}:${target} is not a regular file`, "exec_failed");
        target = path.posix.resolve(path.posix.dirname(target), member.target);
      }
      throw new SandboxError(`${info.name}:${remotePath}: too many levels of symbolic links`, "exec_failed");
    },

    remove() {
      void executor?.then((x) => x?.close());
      removing ??= (async () => {
        try {
          // a snapshot (verifier) container in this one's network namespace must go first: wait for it briefly
          for (let attempt = 0; ; attempt++) {
            try {
              await container.remove({ force: true, v: true });
              break;
            } catch (err) {
              if (attempt >= 20 || !/dependent containers/i.test(engineMessage(err))) throw err;
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        } catch (err) {
          // 404: already gone; 409: a removal is already in progress elsewhere (e.g. prune).
          const code = statusCode(err);
          if (code !== 404 && code !== 409) {
            removing = undefined;
            throw engineError(docker, err, "exec_failed", `cannot remove sandbox ${info.name}`);
          }
        }
        removed = true;
        untrack(sandbox);
        if (info.ownedImage) await docker.getImage(info.ownedImage).remove({ force: true }).catch(() => undefined);
      })();
      return removing;
    },

    async recordEngineFiles() {
      for (const f of ENGINE_FILES) engineFiles.set(f, JSON.stringify(await statPath(container, f).catch(() => null)));
    },

    async changes() {
      let list: Array<{ Path: string; Kind: number }>;
      try {
        list = ((await container.changes()) ?? []) as typeof list;
      } catch (err) {
        throw engineError(docker, err, "exec_failed", `cannot list the filesystem changes of ${info.name}`);
      }
      const out = list.map((c) => ({ path: c.Path, kind: (c.Kind === 1 || c.Kind === 2 ? c.Kind : 0) as 0 | 1 | 2 }));
      const listed = new Set(out.map((c) => c.path));
      for (const [f, before] of engineFiles) {
        if (listed.has(f)) continue;
        const now = JSON.stringify(await statPath(container, f).catch(() => null));
        if (now !== before) out.push({ path: f, kind: now === "null" ? 2 : 0 });
      }
      return out;
    },

    stat: (p) => statPath(container, resolve(p)),

    async imageId() {
      const inspected = await container.inspect().catch((err) => {
        throw engineError(docker, err, "exec_failed", `cannot inspect ${info.name}`);
      });
      return inspected.Image;
    },

    pristine() {
      const spec: SandboxSpec = { ...info.spec, image: info.image, build: undefined, prebuilt: undefined, compose: undefined, networkAttach: undefined, network: "none", storageMb: undefined, gpus: undefined, workdir: info.workdir, name: `${info.spec.name ?? "sandbox"}-baseline` };
      return createSandbox(docker, spec, {}, "exec");
    },

    async freeze(fn) {
      if (removed) throw new SandboxError(`sandbox ${info.name} was removed`, "exec_failed");
      // the cgroup v1 freezer can fail transiently (a task that does not reach the frozen state in time): retried
      for (let attempt = 0; ; attempt++) {
        try {
          await container.pause();
          break;
        } catch (err) {
          if (attempt < 4 && statusCode(err) !== 404) {
            await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
            continue;
          }
          // an engine without a freezer (e.g. rootless cgroup v1): the caller records that nothing was frozen
          return { value: await fn(), frozen: false, why: engineMessage(err).split("\n")[0] };
        }
      }
      try {
        return { value: await fn(), frozen: true };
      } finally {
        await unpause(container);
      }
    },

    async snapshot(opts = {}) {
      if (removed) throw new SandboxError(`sandbox ${info.name} was removed`, "exec_failed");
      let image: string;
      const cap = snapshotCap(opts);
      // frozen: nothing of the agent's runs between the caller's scan, the size check and the commit
      const frozen = await this.freeze!(async () => {
        await opts.beforeCommit?.();
        const bytes = await changedBytes(container).catch(() => 0);
        if (bytes > cap) throw new SnapshotTooLargeError(bytes, cap);
        try {
          const committed = (await container.commit({ pause: false, changes: `LABEL ${TMAX_LABEL}.snapshot=1` })) as { Id?: string; id?: string };
          const id = committed.Id ?? committed.id ?? "";
          if (!id) throw new Error("the engine returned no image id");
          return id;
        } catch (err) {
          throw engineError(docker, err, "create_failed", `cannot snapshot ${info.name}`);
        }
      });
      opts.onFreeze?.(frozen.frozen, frozen.why);
      image = frozen.value;
      const spec: SandboxSpec = { ...info.spec, image, build: undefined, prebuilt: undefined, networkAttach: undefined, workdir: info.workdir, name: `${info.spec.name ?? "sandbox"}-verifier` };
      let snap: DockerSandbox;
      try {
        snap = await createSandbox(docker, spec, { from: { containerId: container.id, image } }, info.executor);
      } catch (err) {
        await docker.getImage(image).remove({ force: true }).catch(() => undefined);
        throw err;
      }
      try {
        await restoreNetworkFiles(snap, info.networkFiles ?? {});
      } catch (err) {
        await snap.remove().catch(() => undefined);
        throw err;
      }
      return snap;
    },
  };
  return sandbox;
}

async function unpause(container: Docker.Container): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await container.unpause();
      return;
    } catch (err) {
      if (statusCode(err) === 404 || /not paused|is not running/i.test(engineMessage(err))) return;
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
}

/**
 * Writes the engine's /etc/hosts and /etc/resolv.conf back in a snapshot container (they are the agent
 * container's bind mounts, shared through the network namespace, agent edits included). With bash builtins:
 * the files are bind mounts, written in place.
 */
async function restoreNetworkFiles(snap: DockerSandbox, files: Record<string, Buffer>): Promise<void> {
  const names = Object.keys(files);
  if (names.length === 0) return;
  const tmp = `/.tmax-net-${randomBytes(8).toString("hex")}`;
  for (const [i, file] of names.entries()) await snap.writeFile(`${tmp}/${i}`, files[file], 0o644);
  const copy = names.map((file, i) => `{ IFS= read -r -d '' c < ${tmp}/${i}; printf '%s' "$c" > ${file}; } || ok=1`).join("\n");
  const run = await snap.exec(["/bin/bash", "--noprofile", "--norc", "-c", `ok=0\n${copy}\n/bin/rm -rf ${tmp}\nexit $ok`], { env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", LC_ALL: "C" }, cwd: "/", timeoutSec: 30, direct: true });
  if (run.exitCode !== 0) throw new SandboxError(`cannot restore the engine's network files in the verifier's snapshot: ${run.stderr.trim().split("\n")[0]}`, "create_failed");
}

// ---------------------------------------------------------------------------------------------------------
// exec

async function execInContainer(
  docker: Docker,
  container: Docker.Container,
  info: SandboxInfo,
  state: { hasTimeoutBinary: boolean },
  argv: string[],
  opts: ExecOptions,
): Promise<ExecResult> {
  if (argv.length === 0) throw new SandboxError("exec needs a command (argv is empty)", "exec_failed");
  opts.signal?.throwIfAborted();
  const started = performance.now();
  const limitSec = opts.timeoutSec && opts.timeoutSec > 0 ? opts.timeoutSec : undefined;
  const wrapped = limitSec !== undefined && state.hasTimeoutBinary;
  const cmd = wrapped ? [TIMEOUT_BINARY, "-k", String(KILL_AFTER_SEC), String(limitSec), ...argv] : argv;
  const cap = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const stdout = cappedBuffer(cap);
  const stderr = cappedBuffer(cap);

  let exec: Docker.Exec;
  let stream: Readable;
  try {
    exec = await container.exec({
      Cmd: cmd,
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      Env: toEnvList(opts.env),
      WorkingDir: opts.cwd ? path.posix.resolve(info.workdir, opts.cwd) : undefined,
      User: opts.user,
    });
    stream = (await exec.start({})) as unknown as Readable;
  } catch (err) {
    throw execError(docker, err, info);
  }

  // Without the in-container `timeout`, the host deadline is the only one.
  const watchdogMs = limitSec === undefined ? undefined : (limitSec + (wrapped ? WATCHDOG_SLACK_SEC : 0)) * 1000;
  const onData = demuxer((which, data) => (which === "stdout" ? stdout : stderr).push(data));
  let ended = false;
  const endedPromise = new Promise<void>((resolve) => {
    const onEnd = () => {
      ended = true;
      resolve();
    };
    stream.once("end", onEnd);
    stream.once("close", onEnd);
    stream.once("error", onEnd);
  });
  const detach = () => {
    stream.off("data", onData);
    stream.destroy();
  };
  const outcome = await new Promise<"end" | "watchdog" | "abort" | Error>((done) => {
    const timer = watchdogMs === undefined ? undefined : setTimeout(() => finish("watchdog"), watchdogMs);
    const onAbort = () => finish("abort");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let settled = false;
    function finish(result: "end" | "watchdog" | "abort" | Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      // after the watchdog the stream stays attached: what the command wrote before it was killed still arrives
      if (result !== "watchdog") stream.off("data", onData);
      if (result !== "end" && result !== "watchdog") stream.destroy();
      done(result);
    }
    stream.on("data", onData);
    stream.once("end", () => finish("end"));
    stream.once("close", () => finish("end"));
    stream.once("error", (err) => finish(err));
  });

  if (outcome === "watchdog" || outcome === "abort") {
    await killExec(docker, container, exec);
    if (outcome === "abort") throw opts.signal?.reason ?? new Error("exec aborted");
    // the partial output is the command's answer (as when timeout(1) stops it): drain what is in flight,
    // briefly (a process outside the killed group may hold the stream open)
    if (!ended) await Promise.race([endedPromise, new Promise((r) => setTimeout(r, WATCHDOG_DRAIN_MS).unref())]);
    detach();
    return result(124, true);
  }
  if (outcome instanceof Error) throw execError(docker, outcome, info);

  const exitCode = await exitCodeOf(docker, exec, info);
  const missingTimeout = (exitCode === 126 || exitCode === 127) && /\/usr\/bin\/timeout\b[^\n]*(not found|no such file)|exec: "\/usr\/bin\/timeout"/i.test(stderr.text() + stdout.text());
  if (wrapped && missingTimeout) {
    state.hasTimeoutBinary = false; // e.g. distroless images; retry under the host watchdog only
    const left = Math.max(1, limitSec! - Math.floor((performance.now() - started) / 1000));
    return execInContainer(docker, container, info, state, argv, { ...opts, timeoutSec: left });
  }
  // timeout(1) exits 124 after TERM, or 128+9 when it had to KILL.
  const elapsedMs = performance.now() - started;
  const timedOut = wrapped && (exitCode === 124 || (exitCode === 137 && elapsedMs >= limitSec! * 1000));
  return result(exitCode, timedOut);

  function result(exitCode: number, timedOut: boolean): ExecResult {
    return {
      stdout: stdout.text(),
      stderr: stderr.text(),
      exitCode,
      timedOut,
      truncated: stdout.truncated || stderr.truncated,
      durationMs: Math.round(performance.now() - started),
    };
  }
}

/** The exit code, from one inspect in the common case; Docker can report Running briefly after the stream ends. */
async function exitCodeOf(docker: Docker, exec: Docker.Exec, info: SandboxInfo): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    let state: Docker.ExecInspectInfo;
    try {
      state = await exec.inspect();
    } catch (err) {
      throw execError(docker, err, info);
    }
    if (!state.Running && state.ExitCode !== null && state.ExitCode !== undefined) return state.ExitCode;
    if (attempt >= 50) return -1;
    await new Promise((r) => setTimeout(r, Math.min(5 * 2 ** attempt, 100)));
  }
}

/**
 * Best effort to stop an exec the host gave up on. The engine API has no "kill exec", so when the engine
 * runs on this host we SIGKILL the exec's process group by host PID, after checking (through its cgroup)
 * that the PID really belongs to this container.
 */
async function killExec(docker: Docker, container: Docker.Container, exec: Docker.Exec): Promise<void> {
  if (!engineAddress(docker).startsWith("unix://")) return;
  try {
    const { Pid: pid, Running: running } = await exec.inspect();
    if (!running || !pid || pid <= 1) return;
    const cgroup = await readHostFile(`/proc/${pid}/cgroup`, "utf8");
    if (!cgroup.includes(container.id)) return;
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // not a group leader, or already gone
      }
    }
  } catch {
    // engine or /proc not reachable: the in-container `timeout -k` remains the safety net
  }
}

function execError(docker: Docker, err: unknown, info: SandboxInfo): SandboxError {
  if (isUnreachable(err)) return unreachableError(docker, err);
  const code = statusCode(err);
  if (code === 404) return new SandboxError(`sandbox ${info.name} no longer exists`, "exec_failed");
  if (code === 409 || code === 500) return new SandboxError(`sandbox ${info.name} is not running: ${engineMessage(err)}`, "exec_failed");
  return engineError(docker, err, "exec_failed", `exec in ${info.name} failed`);
}

// ---------------------------------------------------------------------------------------------------------
// files

/** Extracts `archive` at `/` (members carry absolute paths minus the slash; engines create missing parents). */
async function putArchive(docker: Docker, container: Docker.Container, archive: Readable, what: string): Promise<void> {
  try {
    await container.putArchive(archive as unknown as NodeJS.ReadableStream, { path: "/" });
  } catch (err) {
    throw engineError(docker, err, "exec_failed", `cannot ${what}`);
  }
}

const MODE_DIR = 2 ** 31;
const MODE_SYMLINK = 2 ** 27;

/** The engine's archive-stat of a path (HEAD on the archive endpoint: no program runs in the container). */
async function statPath(container: Docker.Container, remotePath: string): Promise<PathStat | null> {
  let res: { headers?: Record<string, string | string[] | undefined>; resume?: () => void };
  try {
    res = (await container.infoArchive({ path: remotePath })) as typeof res;
  } catch (err) {
    const code = statusCode(err);
    if (code === 404 || code === 400) return null; // missing, or a loop of links
    throw new SandboxError(`cannot stat ${remotePath}: ${engineMessage(err)}`, "exec_failed");
  }
  res.resume?.();
  const header = res.headers?.["x-docker-container-path-stat"];
  if (typeof header !== "string") throw new SandboxError(`cannot stat ${remotePath}: the engine sent no path stat`, "exec_failed");
  const st = JSON.parse(Buffer.from(header, "base64").toString("utf8")) as { size: number; mode: number; mtime: string; linkTarget?: string };
  const link = Math.floor(st.mode / MODE_SYMLINK) % 2 === 1;
  return { size: st.size, perm: st.mode % 0o10000, mtime: st.mtime, dir: Math.floor(st.mode / MODE_DIR) % 2 === 1, link, ...(link && st.linkTarget ? { linkTarget: st.linkTarget } : {}) };
}

/** The first component of `remotePath` that is a link, and where it leads; null when none is. */
async function linkOnPath(container: Docker.Container, remotePath: string): Promise<{ at: string; to: string } | null> {
  const parts = remotePath.split("/").filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const at = `/${parts.slice(0, i).join("/")}`;
    const st = await statPath(container, at);
    if (!st) return null;
    if (st.link) return { at, to: st.linkTarget ?? "?" };
  }
  return null;
}

/** A tar stream of `remotePath`, or null when it does not exist. */
async function getArchive(docker: Docker, container: Docker.Container, remotePath: string): Promise<Readable | null> {
  try {
    return (await container.getArchive({ path: remotePath })) as unknown as Readable;
  } catch (err) {
    if (statusCode(err) === 404 && /no such file|not found|could not find/i.test(engineMessage(err))) return null;
    throw engineError(docker, err, "exec_failed", `cannot read ${remotePath}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// prune and check

/** Containers with tmax's label selected by `filter`. */
async function prunableContainers(docker: Docker, filter: PruneFilter = {}): Promise<Docker.ContainerInfo[]> {
  const label = [`${TMAX_LABEL}=1`, ...(filter.job ? [`${TMAX_JOB_LABEL}=${filter.job}`] : [])];
  let list: Docker.ContainerInfo[];
  try {
    list = await docker.listContainers({ all: true, filters: { label } });
  } catch (err) {
    throw engineError(docker, err, "exec_failed", "cannot list containers");
  }
  // Re-check here, whatever the engine's filter did: only tmax's containers, and only those selected.
  return list.filter((c) => c.Labels?.[TMAX_LABEL] === "1" && prunable(c.Labels, filter));
}

async function pruneContainers(docker: Docker, filter: PruneFilter = {}): Promise<number> {
  const chosen = await prunableContainers(docker, filter);
  const removeAll = (cs: Docker.ContainerInfo[]) =>
    Promise.all(
      cs.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .then(
            () => 1,
            () => 0,
          ),
      ),
    );
  // verifier snapshots first: they share their agent container's network namespace, which the engine will not
  // remove while they exist
  const isSnapshot = (c: Docker.ContainerInfo) => c.Labels?.[`${TMAX_LABEL}.snapshot`] === "1";
  const removed = [...(await removeAll(chosen.filter(isSnapshot))), ...(await removeAll(chosen.filter((c) => !isSnapshot(c))))];
  // a compose network goes with its job (or --all); orphan pruning leaves networks alone (one may be in use by a
  // live job between its creation and its first container)
  if (filter.job || filter.all) await pruneNetworks(docker, filter.job);
  return removed.reduce((a, b) => a + b, 0);
}

/**
 * Verifier snapshot images (a commit carries the container's labels: job, owner, test run) left by a process that
 * died between the commit and the removal of its snapshot sandbox; chosen by the same rule as containers.
 */
async function pruneSnapshotImages(docker: Docker, filter: PruneFilter = {}): Promise<number> {
  const list = (all: boolean) => prunableImages(docker, filter, all);
  const remove = (id: string) =>
    docker
      .getImage(id)
      .remove({ force: true })
      .then(
        () => 1,
        () => 0,
      );
  // the commits first, one at a time; then what they leave labelled (an intermediate layer image whose removal
  // failed while the commit still depended on it)
  let removed = 0;
  for (const image of await list(false)) removed += await remove(image.Id);
  for (let round = 0; round < 3; round++) {
    const rest = await list(true);
    let n = 0;
    for (const image of rest) n += await remove(image.Id);
    if (n === 0) break;
  }
  return removed;
}

/** Verifier snapshot images selected by `filter` (`all`: intermediate layers too). */
async function prunableImages(docker: Docker, filter: PruneFilter, all: boolean): Promise<Docker.ImageInfo[]> {
  try {
    // one label filter only: podman 4.3's images endpoint answers nothing for two (its CLI ORs them); the job
    // and the owner are checked here
    const images = await docker.listImages({ all, filters: { label: [`${TMAX_LABEL}.snapshot=1`] } });
    return images.filter((i) => i.Labels?.[`${TMAX_LABEL}.snapshot`] === "1" && prunable(i.Labels, filter));
  } catch (err) {
    throw engineError(docker, err, "exec_failed", "cannot list images");
  }
}

async function checkEngine(docker: Docker): Promise<{ ok: boolean; detail: string; fix?: string }> {
  const address = engineAddress(docker);
  const fix = "run `npm run setup` (installs and starts podman) or set DOCKER_HOST to a running engine";
  // A loaded engine can be slow to answer: a time-out is asked again with more patience (15, 30, then 45 s);
  // an absent one fails at once (ECONNREFUSED/ENOENT/EACCES).
  for (const deadlineMs of [15_000, 30_000, 45_000]) {
    try {
      const version = await withDeadline(
        (async () => {
          await docker.ping();
          return docker.version();
        })(),
        deadlineMs,
      );
      const engine = version.Components?.[0]?.Name ?? "Docker Engine";
      return { ok: true, detail: `${engine} ${version.Version} (API ${version.ApiVersion}) at ${address}` };
    } catch (err) {
      const code = (err as { code?: string }).code;
      const absent = code === "ECONNREFUSED" || code === "ENOENT" || code === "EACCES" || code === "EPERM" || code === "ENOTFOUND";
      if (!absent && deadlineMs < 45_000) continue;
      const why = isUnreachable(err) ? (err as { code: string }).code : engineMessage(err);
      return { ok: false, detail: `cannot reach the container engine at ${address} (${why})`, fix };
    }
  }
  return { ok: false, detail: `cannot reach the container engine at ${address}`, fix };
}

