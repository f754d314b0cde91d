// Connection to a Docker-compatible engine (podman's compat API or Docker) and its error vocabulary.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import { SandboxError } from "../types.js";
import { withDeadline } from "../../util/deadline.js";
import { withRootlessHint } from "./rootless.js";

/** The last resort when no engine answers (rootful podman, what `npm run setup` starts on Debian). */
export const DEFAULT_DOCKER_HOST = "unix:///run/podman/podman.sock";

/** Where an engine may listen, and why tmax looks there. */
export interface EngineCandidate {
  host: string;
  /** "DOCKER_HOST", "docker context <name>", "Docker Engine", "rootless podman", … */
  source: string;
  /** Why this candidate cannot be used at all (a broken context), without trying it. */
  error?: string;
}

/** What discovery reads instead of the real process (tests give a temp home, a fake uid). */
export interface EngineEnv {
  env?: NodeJS.ProcessEnv;
  home?: string;
  uid?: number;
  /** Prefix of the system-wide socket paths (/var/run, /run): tests put their fake sockets under a temp dir. */
  root?: string;
}

/**
 * The docker CLI's current context: DOCKER_CONTEXT, else `currentContext` of $DOCKER_CONFIG/config.json
 * (~/.docker/config.json); its endpoint is in contexts/meta/<sha256 of the name>/meta.json. Undefined for no
 * context or "default" (which means DOCKER_HOST or the default socket).
 */
export function dockerContext(e: EngineEnv = {}): { name: string; host?: string; error?: string } | undefined {
  const env = e.env ?? process.env;
  const dir = env.DOCKER_CONFIG || path.join(e.home ?? os.homedir(), ".docker");
  let name = env.DOCKER_CONTEXT?.trim();
  if (!name) {
    const file = path.join(dir, "config.json");
    if (!existsSync(file)) return undefined;
    try {
      const config = JSON.parse(readFileSync(file, "utf8")) as { currentContext?: unknown };
      name = typeof config.currentContext === "string" ? config.currentContext.trim() : undefined;
    } catch (err) {
      return { name: "?", error: `cannot read ${file}: ${oneLine((err as Error).message)}` };
    }
  }
  if (!name || name === "default") return undefined;
  const meta = path.join(dir, "contexts", "meta", createHash("sha256").update(name).digest("hex"), "meta.json");
  try {
    const parsed = JSON.parse(readFileSync(meta, "utf8")) as { Endpoints?: { docker?: { Host?: unknown } } };
    const host = parsed.Endpoints?.docker?.Host;
    if (typeof host !== "string" || !host) return { name, error: `context '${name}' has no docker endpoint (${meta})` };
    return { name, host };
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : oneLine((err as Error).message);
    return { name, error: `context '${name}' ${why} (${meta})` };
  }
}

/**
 * Where to look for an engine, in order: DOCKER_HOST alone when it is set (an explicit choice is never
 * second-guessed); else the current docker context, Docker Engine's socket, Docker Desktop's, rootless podman's
 * (not for root), rootful podman's, podman machine's.
 */
export function engineCandidates(e: EngineEnv = {}): EngineCandidate[] {
  const env = e.env ?? process.env;
  if (env.DOCKER_HOST?.trim()) return [{ host: env.DOCKER_HOST.trim(), source: "DOCKER_HOST" }];
  const home = e.home ?? os.homedir();
  const uid = e.uid ?? (typeof process.getuid === "function" ? process.getuid() : 0);
  const out: EngineCandidate[] = [];
  const ctx = dockerContext(e);
  if (ctx) out.push({ host: ctx.host ?? "", source: `docker context ${ctx.name}`, error: ctx.error });
  const sys = (p: string) => `unix://${path.join(e.root ?? "/", p)}`;
  out.push({ host: sys("/var/run/docker.sock"), source: "Docker Engine" });
  out.push({ host: `unix://${path.join(home, ".docker/desktop/docker.sock")}`, source: "Docker Desktop" });
  const runtime = env.XDG_RUNTIME_DIR || path.join(e.root ?? "/", `/run/user/${uid}`);
  if (uid !== 0) out.push({ host: `unix://${path.join(runtime, "podman/podman.sock")}`, source: "rootless podman" });
  // without XDG_RUNTIME_DIR (su, runuser, cron: no login session) and no /run/user/<uid> of its own, podman keeps
  // its runtime dir, and its service's socket, in $TMPDIR/podman-run-<uid>
  if (uid !== 0 && !env.XDG_RUNTIME_DIR) {
    out.push({ host: `unix://${path.join(e.root ?? "/", env.TMPDIR || "/tmp", `podman-run-${uid}`, "podman/podman.sock")}`, source: "rootless podman" });
  }
  out.push({ host: sys("/run/podman/podman.sock"), source: "rootful podman" });
  if (uid !== 0) out.push({ host: `unix://${path.join(runtime, "podman/podman-machine-default-api.sock")}`, source: "podman machine" });
  out.push({ host: `unix://${path.join(home, ".local/share/containers/podman/machine/podman.sock")}`, source: "podman machine" });
  const seen = new Set<string>();
  return out.filter((c) => (c.error ? true : !seen.has(c.host) && !!seen.add(c.host)));
}

/** The engine discovery chose for this process (set once by the CLI before a command runs). */
let discovered: string | undefined;

export function useEngineHost(host: string | undefined): void {
  discovered = host;
}

/**
 * The engine a client connects to by default: DOCKER_HOST, else the one discovery chose, else the first
 * candidate whose socket exists (no ping: this is synchronous), else rootful podman's socket.
 */
export function defaultEngineHost(e: EngineEnv = {}): string {
  const env = e.env ?? process.env;
  if (env.DOCKER_HOST?.trim()) return env.DOCKER_HOST.trim();
  if (discovered) return discovered;
  for (const c of engineCandidates(e)) {
    if (c.error) continue;
    if (!c.host.startsWith("unix://") || existsSync(c.host.slice("unix://".length))) return c.host;
  }
  return DEFAULT_DOCKER_HOST;
}

/** dockerode connection options for a DOCKER_HOST value (unix://, tcp://, http(s)://, ssh://). */
export function parseDockerHost(host: string): Docker.DockerOptions {
  if (host.startsWith("unix://")) {
    const socketPath = host.slice("unix://".length);
    if (!socketPath) throw new Error(`bad DOCKER_HOST '${host}': expected unix:///path/to/socket`);
    return { socketPath };
  }
  if (host.startsWith("/")) return { socketPath: host };
  let url: URL;
  try {
    url = new URL(host.includes("://") ? host : `tcp://${host}`);
  } catch {
    throw new Error(`bad DOCKER_HOST '${host}': expected unix:///path, tcp://host:port or ssh://user@host`);
  }
  const protocol = url.protocol.replace(/:$/, "");
  if (protocol === "ssh") {
    return { protocol: "ssh", host: url.hostname, port: url.port || 22, username: url.username || undefined };
  }
  if (protocol === "tcp" || protocol === "http" || protocol === "https") {
    const tls = protocol === "https" || process.env.DOCKER_TLS_VERIFY === "1" || url.port === "2376";
    return { protocol: tls ? "https" : "http", host: url.hostname, port: url.port || (tls ? 2376 : 2375) };
  }
  throw new Error(`bad DOCKER_HOST '${host}': unsupported scheme '${protocol}'`);
}

/** A dockerode client for `host` (default: see defaultEngineHost). */
export function connectEngine(host = defaultEngineHost()): Docker {
  return new Docker(parseDockerHost(host));
}

/** Where a client points, for messages. */
export function engineAddress(docker: Docker): string {
  const modem = docker.modem as { socketPath?: unknown; host?: string; port?: string | number; protocol?: string };
  if (typeof modem.socketPath === "string") return `unix://${modem.socketPath}`;
  return `${modem.protocol ?? "http"}://${modem.host}:${modem.port}`;
}

export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "EPERM", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "ECONNRESET", "EPIPE"]);

/** The engine's one-line error text (dockerode prefixes "(HTTP code 404) no such container - "). */
export function engineMessage(err: unknown): string {
  const e = err as { message?: string; json?: { message?: string; cause?: string } | string };
  const fromJson = typeof e?.json === "object" && e.json ? e.json.message ?? e.json.cause : undefined;
  return withRootlessHint(oneLine(fromJson ?? e?.message ?? String(err)));
}

export function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

/** True for socket-level failures (no HTTP status): the engine is down or the address is wrong. */
export function isUnreachable(err: unknown): boolean {
  const e = err as { code?: string; statusCode?: number };
  return !!e?.code && e.statusCode === undefined && UNREACHABLE_CODES.has(e.code);
}

export function unreachableError(docker: Docker, err: unknown): SandboxError {
  const code = (err as { code?: string })?.code;
  return new SandboxError(
    `cannot reach the container engine at ${engineAddress(docker)}${code ? ` (${code})` : ""}; run \`tmax doctor\` to see where tmax looked and how to start an engine, or set DOCKER_HOST`,
    "engine_unreachable",
  );
}

/** Maps any engine failure to a SandboxError of `kind` (or engine_unreachable), with a one-line message. */
export function engineError(docker: Docker, err: unknown, kind: SandboxError["kind"], context?: string): SandboxError {
  if (err instanceof SandboxError) return err;
  if (isUnreachable(err)) return unreachableError(docker, err);
  return new SandboxError(context ? `${context}: ${engineMessage(err)}` : engineMessage(err), kind);
}

/** Whether the engine answers: its name, version and API, or why not and how to fix it. */
export async function checkEngine(docker: Docker): Promise<{ ok: boolean; detail: string; fix?: string }> {
  const address = engineAddress(docker);
  const fix = "run `tmax doctor` (it lists where tmax looked for an engine and how to start one) or set DOCKER_HOST";
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
