// Image builds must not run Dockerfile RUN steps in the host's network namespace. Docker's build API honours
// `networkmode`; podman's compat and libpod build APIs (4.3 measured here) ignore it and run RUN steps on the
// host network, where 127.0.0.1-only services (and the model server) are reachable. So on a local podman
// engine the build goes through the `podman build --network <mode>` CLI, which does isolate.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { privateCacheDir } from "../../util/cache.js";
import { engineAddress } from "./engine.js";

export type BuildNetwork = "none" | "bridge";

/** Memory of a build's RUN steps: $TMAX_BUILD_MEMORY_MB when a positive whole number, else half the host's memory. */
export function buildMemoryMb(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.TMAX_BUILD_MEMORY_MB);
  if (Number.isSafeInteger(v) && v >= 64) return v;
  return Math.max(512, Math.floor(os.totalmem() / 2 / 1024 / 1024));
}

const podmanChecks = new WeakMap<Docker, Promise<boolean>>();
const memoryChecks = new WeakMap<Docker, Promise<boolean>>();

/**
 * Can this podman engine limit a container's memory? Not when its cgroups give it no memory controller: rootless
 * on cgroup v1, or cgroup v2 without the controller delegated to the user. There `podman build --memory` makes
 * every RUN step fail (runc: "did not get container create message from subprocess: EOF"; measured on podman 4.3,
 * rootless, cgroup v1), while a run's limits are only ignored with a warning. Unknown (no libpod info): true.
 */
export function podmanLimitsMemory(docker: Docker): Promise<boolean> {
  let check = memoryChecks.get(docker);
  if (!check) {
    check = new Promise<boolean>((resolve) =>
      docker.modem.dial({ path: "/v4.0.0/libpod/info", method: "GET", statusCodes: { 200: true }, options: {} }, (err, data) => {
        const controllers = (data as { host?: { cgroupControllers?: unknown } } | undefined)?.host?.cgroupControllers;
        resolve(err || !Array.isArray(controllers) ? true : controllers.includes("memory"));
      }),
    );
    memoryChecks.set(docker, check);
  }
  return check;
}

/** True when `docker` is a podman engine on this host's unix socket and the `podman` CLI is installed. */
export function usePodmanCli(docker: Docker): Promise<boolean> {
  if (process.env.TMAX_BUILD_VIA_API === "1") return Promise.resolve(false);
  let check = podmanChecks.get(docker);
  if (!check) {
    check = (async () => {
      if (!engineAddress(docker).startsWith("unix://")) return false;
      const version = await docker.version().catch(() => null);
      const isPodman = Boolean(version?.Components?.some((c) => /podman/i.test(c.Name)));
      if (!isPodman) return false;
      return spawnSync("podman", ["--version"], { stdio: "ignore" }).status === 0;
    })();
    podmanChecks.set(docker, check);
  }
  return check;
}

/**
 * Builds `context` (a tar stream) with the local `podman build --network <network>` (not `--url`: the remote
 * client goes through the same build API), into the local store the rootful service shares. Resolves with the
 * exit status and the log.
 */
export async function podmanCliBuild(
  context: Readable,
  o: {
    tag: string;
    dockerfile: string;
    labels: Record<string, string>;
    network: BuildNetwork;
    signal: AbortSignal;
    onLog?: (line: string) => void;
    /** false: the engine has no memory controller (see podmanLimitsMemory); the RUN steps go unlimited. */
    limitMemory?: boolean;
  },
): Promise<{ ok: boolean; log: string[] }> {
  // One private work dir per build (under the 0700 per-user cache): the context, and the TMPDIR podman keeps
  // `RUN --mount=type=cache` dirs in. Its default, /var/tmp/buildah-cache, is world-traversable and outlives
  // the build: measured, a cache mount left a setuid-root bash there that any local user could run. Here the
  // cache lives only as long as the build (as a fresh cache would) and is removed with the work dir.
  const work = await fs.mkdtemp(path.join(privateCacheDir("build"), "b-"));
  const dir = path.join(work, "context");
  const tmp = path.join(work, "tmp");
  try {
    await fs.mkdir(dir, { mode: 0o700 });
    await fs.mkdir(tmp, { mode: 0o700 });
    // unpack the exact context the API would have received (rewritten Dockerfile included)
    await new Promise<void>((resolve, reject) => {
      const tar = spawn("tar", ["-x", "--no-same-owner", "-C", dir], { stdio: ["pipe", "ignore", "pipe"] });
      let err = "";
      tar.stderr.on("data", (d) => (err += d));
      tar.on("error", reject);
      tar.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`cannot unpack the build context: ${err.trim()}`))));
      context.on("error", reject);
      context.pipe(tar.stdin);
    });
    const memory = `${buildMemoryMb()}m`;
    const args = [
      // "private": a fresh netns on the default network, never the host's
      "build", "--network", o.network === "bridge" ? "private" : "none", "--layers", "--force-rm", "-t", o.tag, "-f", path.join(dir, o.dockerfile),
      // podman copies tmax's *_proxy variables (proxy credentials included) into every RUN step unless told not to
      // (measured: http_proxy=http://u:pw@… was in the build's env); Docker/compose builds do not pass them either
      "--http-proxy=false",
      // never pull: tmax checks FROM images are local, but `FROM $ARG` and `COPY --from=<image>` escape that check,
      // and podman pulled them itself on the host network (measured: `FROM 127.0.0.1:<port>/x` reached a host service)
      "--pull=never",
      // RUN steps have no memory limit otherwise (measured: memory.limit_in_bytes = 2^63 in a build), so one task's
      // build could take the host's memory (and the OOM killer other jobs, or tmax)
      ...(o.limitMemory === false ? [] : ["--memory", memory, "--memory-swap", memory]),
      ...Object.entries(o.labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
      dir,
    ];
    const log: string[] = [];
    const code = await new Promise<number>((resolve, reject) => {
      // cwd: the build's own temp dir, never the user's (the engine's helpers may leave files there, e.g. an `oom` marker)
      const child = spawn("podman", args, { cwd: tmp, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TMPDIR: tmp } });
      const onAbort = () => child.kill("SIGKILL");
      o.signal.addEventListener("abort", onAbort, { once: true });
      let partial = "";
      const onData = (d: Buffer) => {
        const lines = (partial + d.toString("utf8")).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          log.push(line);
          o.onLog?.(line);
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.on("error", reject);
      child.on("close", (c) => {
        o.signal.removeEventListener("abort", onAbort);
        if (partial) log.push(partial);
        resolve(c ?? 1);
      });
    });
    return { ok: code === 0, log };
  } finally {
    await fs.rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}
