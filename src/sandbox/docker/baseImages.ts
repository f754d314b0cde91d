// The two local base images (`localhost/tmax-base:bookworm`, the default of `tmax run`; `localhost/tb-base:bookworm`,
// what the offline Terminal-Bench tasks build on), made through whatever engine tmax found, by the best route it
// has: tagged from a Debian image the engine can pull; else imported from a rootfs that mmdebstrap builds from
// Debian's mirror (root only); else one line saying what is missing. tb-base is built on tmax-base with python3
// and pytest from the mirror.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type Docker from "dockerode";
import { buildImage, imageExists } from "./build.js";
import { engineMessage, oneLine } from "./engine.js";
import { pullImage } from "./pull.js";
import { SandboxError } from "../types.js";

export const TMAX_BASE_IMAGE = "localhost/tmax-base:bookworm";
export const TB_BASE_IMAGE = "localhost/tb-base:bookworm";
/** The Debian image pulled for tmax-base; TMAX_SETUP_DEBIAN_IMAGE names another (a mirror, a local registry). */
export const DEBIAN_IMAGE = "debian:bookworm-slim";
const MIRROR = "http://deb.debian.org/debian";

export const TB_BASE_DOCKERFILE = (from: string) =>
  [
    `FROM ${from}`,
    "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pytest python-is-python3 procps ca-certificates && rm -rf /var/lib/apt/lists/*",
    "",
  ].join("\n");

export interface BaseImageStep {
  image: string;
  /** present: already there; pulled: tagged from a pulled Debian image; mmdebstrap: imported from a rootfs; built: Dockerfile. */
  how: "present" | "pulled" | "mmdebstrap" | "built";
  detail: string;
}

export interface BaseImageOptions {
  /** The names to make (tests use their own, to leave the real ones alone). */
  names?: { base: string; tb: string };
  /** The Debian image to pull (default $TMAX_SETUP_DEBIAN_IMAGE, else debian:bookworm-slim). */
  debianImage?: string;
  /** The routes to try, in order (default both). */
  routes?: ("pull" | "mmdebstrap")[];
  /** One line per step taken. */
  onStep?: (line: string) => void;
  /** The output of mmdebstrap and of the build, line by line. */
  onOutput?: (line: string) => void;
  uid?: number;
  signal?: AbortSignal;
}

function split(ref: string): { repo: string; tag: string } {
  const at = ref.lastIndexOf(":");
  return at > ref.lastIndexOf("/") ? { repo: ref.slice(0, at), tag: ref.slice(at + 1) } : { repo: ref, tag: "latest" };
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? "").split(path.delimiter).some((d) => d && existsSync(path.join(d, name)));
}

/** mmdebstrap's minbase bookworm as a tar on stdout, straight into the engine's image import. */
async function importRootfs(docker: Docker, target: string, onLog: (line: string) => void): Promise<void> {
  const child = spawn("mmdebstrap", ["--quiet", "--variant=minbase", "bookworm", "-", MIRROR], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
    for (const line of d.toString().split("\n")) if (line.trim()) onLog(line);
  });
  const exited = new Promise<number>((resolve) => {
    child.on("error", () => resolve(127));
    child.on("close", (code) => resolve(code ?? 1));
  });
  const { repo, tag } = split(target);
  try {
    const stream = await docker.importImage(child.stdout as unknown as string, { repo, tag, changes: 'CMD ["/bin/bash"]' } as Record<string, unknown>);
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())));
  } catch (err) {
    child.kill("SIGTERM");
    await exited;
    throw new Error(`the engine refused the rootfs: ${engineMessage(err)}`);
  }
  const code = await exited;
  if (code !== 0) throw new Error(`mmdebstrap exited ${code}: ${oneLine(stderr).slice(-300)}`);
}

/** Makes the base images that are missing; throws one line (SandboxError) when a route is needed and none works. */
export async function ensureBaseImages(docker: Docker, o: BaseImageOptions = {}): Promise<BaseImageStep[]> {
  const names = o.names ?? { base: TMAX_BASE_IMAGE, tb: TB_BASE_IMAGE };
  const onLog = o.onStep ?? (() => undefined);
  const onOutput = o.onOutput ?? (() => undefined);
  const uid = o.uid ?? (typeof process.getuid === "function" ? process.getuid() : 0);
  const steps: BaseImageStep[] = [];

  if (await imageExists(docker, names.base)) steps.push({ image: names.base, how: "present", detail: "already there" });
  else {
    const debian = o.debianImage ?? (process.env.TMAX_SETUP_DEBIAN_IMAGE?.trim() || DEBIAN_IMAGE);
    const why: string[] = [];
    for (const route of o.routes ?? ["pull", "mmdebstrap"]) {
      if (route === "pull") {
        try {
          onLog(`pulling ${debian}`);
          await pullImage(docker, debian, { signal: o.signal });
          await docker.getImage(debian).tag(split(names.base));
          steps.push({ image: names.base, how: "pulled", detail: `tagged from ${debian}` });
          break;
        } catch (err) {
          why.push(`the engine cannot pull ${debian} (${oneLine(err instanceof Error ? err.message : String(err)).slice(0, 200)})`);
        }
      } else {
        if (uid !== 0) {
          why.push("building from Debian's mirror with mmdebstrap needs root");
          continue;
        }
        if (!onPath("mmdebstrap")) {
          why.push("mmdebstrap is not installed (apt-get install mmdebstrap)");
          continue;
        }
        try {
          onLog(`building ${names.base} from ${MIRROR} with mmdebstrap (minbase)`);
          await importRootfs(docker, names.base, onOutput);
          steps.push({ image: names.base, how: "mmdebstrap", detail: `minbase bookworm from ${MIRROR}` });
          break;
        } catch (err) {
          why.push(`mmdebstrap failed: ${(err as Error).message}`);
        }
      }
    }
    if (!steps.length) throw new SandboxError(`cannot make ${names.base}: ${why.join("; ")}`, "create_failed");
  }

  if (await imageExists(docker, names.tb)) steps.push({ image: names.tb, how: "present", detail: "already there" });
  else {
    const ctx = mkdtempSync(path.join(os.tmpdir(), "tmax-tb-base-"));
    try {
      writeFileSync(path.join(ctx, "Dockerfile"), TB_BASE_DOCKERFILE(names.base));
      onLog(`building ${names.tb} (python3, pytest from Debian's mirror)`);
      const built = await buildImage({ contextDir: ctx, network: "bridge", timeoutSec: 1800 }, docker, { signal: o.signal, onLog: onOutput });
      await docker.getImage(built).tag(split(names.tb));
      // the build's own content-hash tag is not needed beside the name
      if (built !== names.tb) await docker.getImage(built).remove({ noprune: true }).catch(() => undefined);
      steps.push({ image: names.tb, how: "built", detail: `${names.base} + python3, pytest` });
    } finally {
      rmSync(ctx, { recursive: true, force: true });
    }
  }
  return steps;
}
