// The docker backend: one long-lived container per sandbox on any Docker-compatible engine (podman's compat
// API by default, Docker alike). Nothing is ever pulled: images are local or built from a context. What this file
// owns: creating a container (limits, network, storage cap) and the sandbox object over it (exec routing, files,
// removal, freeze, snapshot). The rest is one concept a file: exec.ts (one command as an engine exec), files.ts
// (the archive API), snapshot.ts (a verifier snapshot's pieces), prune.ts (clean-up), engine.ts (connection, check).
import { randomBytes } from "node:crypto";
import path from "node:path";
import type Docker from "dockerode";
import { track, untrack } from "../cleanup.js";
import { createComposeSandbox } from "./compose.js";
import { checkEngine, connectEngine, engineAddress, engineError, engineMessage, statusCode } from "./engine.js";
import { execInContainer, toEnvList } from "./exec.js";
import { startExecutor, type Executor } from "./executor.js";
import { getArchive, linkOnPath, putArchive, statPath } from "./files.js";
import { gpuCheck } from "./gpus.js";
import { ensureHostGuard } from "./hostGuard.js";
import { resolveImage, type ImageUsed } from "./images.js";
import { prunableContainers, prunableImages, pruneContainers, pruneSnapshotImages } from "./prune.js";
import { changedBytes, readNetworkFiles, restoreNetworkFiles, snapshotCap, unpause } from "./snapshot.js";
import { candidate, ownerLabels } from "../owner.js";
import { newBudget, printableName, safeExtract } from "../bytes/safeExtract.js";
import { DEFAULT_READ_MAX_BYTES, joinTarName, packItems, packLocalPath, readFirstMember } from "../bytes/tarball.js";
import { SandboxError, TMAX_LABEL, type CreateOptions, type Sandbox, type SandboxBackend, type SandboxSpec, SnapshotTooLargeError } from "../types.js";

export const DEFAULT_PIDS_LIMIT = 4096;
/** PID 1 of a snapshot (verifier) container, by absolute path: a `sleep` the agent put earlier in PATH is never used. */
const SLEEP_BINARY = "/bin/sleep";

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
