// Connection to a Docker-compatible engine (podman's compat API or Docker) and its error vocabulary.
import Docker from "dockerode";
import { SandboxError } from "../types.js";
import { withDeadline } from "../../util/deadline.js";

export const DEFAULT_DOCKER_HOST = "unix:///run/podman/podman.sock";

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

/** A dockerode client for `host` (default: $DOCKER_HOST, else podman's rootful socket). */
export function connectEngine(host = process.env.DOCKER_HOST || DEFAULT_DOCKER_HOST): Docker {
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
  return oneLine(fromJson ?? e?.message ?? String(err));
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
    `cannot reach the container engine at ${engineAddress(docker)}${code ? ` (${code})` : ""}; run \`npm run setup\` or set DOCKER_HOST`,
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
