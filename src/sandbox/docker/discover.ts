// Which container engine is there: each candidate of engineCandidates() asked in turn (/_ping, then /version for
// Docker or podman, then /info for rootless or rootful); the first that answers is the engine. Every failure
// carries a fix that works for a global npm install and that engine (never a script of a clone).
import { existsSync } from "node:fs";
import path from "node:path";
import Docker from "dockerode";
import { engineCandidates, engineMessage, oneLine, parseDockerHost, type EngineCandidate, type EngineEnv } from "./engine.js";

export type EngineKind = "docker" | "podman";

export interface EngineProbe {
  host: string;
  source: string;
  ok: boolean;
  kind?: EngineKind;
  rootless?: boolean;
  /** "Docker Engine 20.10.24", "Podman Engine 4.3.1". */
  version?: string;
  apiVersion?: string;
  /** Why it was not usable: "no socket", "EACCES", "ECONNREFUSED", the engine's message. */
  error?: string;
  fix?: string;
}

export interface Discovery {
  /** The first candidate that answered; undefined when none did. */
  engine?: EngineProbe;
  /** Every candidate looked at, in order, up to and including the engine. */
  tried: EngineProbe[];
  /** When nothing answered: what to do on this machine. */
  fix?: string;
}

export interface DiscoverOptions extends EngineEnv {
  /** For /_ping (default 3 s): a socket that accepts and never answers is given up on. */
  timeoutMs?: number;
  /** For /version and /info once /_ping answered (default 30 s). */
  detailTimeoutMs?: number;
  /** Is a program on PATH (tests replace it). */
  onPath?: (name: string) => boolean;
}

/** "Podman Engine 4.3.1 (rootful)" */
export function describeEngine(p: EngineProbe): string {
  const kind = p.kind === "podman" ? "podman" : p.kind === "docker" ? "Docker" : "an engine";
  return `${kind}${p.rootless === undefined ? "" : p.rootless ? " (rootless)" : " (rootful)"} ${p.version?.replace(/^\S+ (Engine )?/, "") ?? ""}`.trim();
}

/** Asks one candidate. Never throws. A unix socket that does not exist is not connected to. */
export async function probeEngine(c: EngineCandidate, o: DiscoverOptions = {}): Promise<EngineProbe> {
  const base = { host: c.host, source: c.source };
  const uid = o.uid ?? (typeof process.getuid === "function" ? process.getuid() : 0);
  if (c.error) return { ...base, ok: false, error: c.error, fix: "fix the context (`docker context ls`) or `docker context use default`" };
  let docker: Docker;
  try {
    docker = new Docker({ ...parseDockerHost(c.host), timeout: o.timeoutMs ?? 3000 });
  } catch (err) {
    return { ...base, ok: false, error: (err as Error).message, fix: "set DOCKER_HOST to unix:///path/to/socket or tcp://host:port" };
  }
  const socket = c.host.startsWith("unix://") ? c.host.slice("unix://".length) : undefined;
  if (socket && !existsSync(socket)) return { ...base, ok: false, error: "no socket", fix: fixFor(c, "ENOENT", uid) };
  try {
    await docker.ping();
  } catch (err) {
    const code = (err as { code?: string }).code;
    const error = code && (err as { statusCode?: number }).statusCode === undefined ? code : engineMessage(err);
    return { ...base, ok: false, error, fix: fixFor(c, code ?? "", uid) };
  }
  // it answers: it is the engine. /version and /info can take seconds on a loaded podman (measured: 8-12 s), so
  // they get more patience, and an engine that is slow to describe itself is still used
  const patient = new Docker({ ...parseDockerHost(c.host), timeout: o.detailTimeoutMs ?? 30_000 });
  try {
    const version = await patient.version();
    const components = (version.Components ?? []) as { Name?: string; Version?: string }[];
    const podman = components.find((x) => /podman/i.test(x.Name ?? ""));
    const kind: EngineKind = podman ? "podman" : "docker";
    const rootless = await isRootless(patient, kind);
    return {
      ...base,
      ok: true,
      kind,
      rootless,
      version: podman ? `Podman Engine ${podman.Version ?? version.Version}` : `Docker Engine ${version.Version}`,
      apiVersion: version.ApiVersion,
    };
  } catch (err) {
    return { ...base, ok: true, error: `answers /_ping, but /version failed: ${engineMessage(err)}` };
  }
}

/** podman: libpod's host.security.rootless; Docker (and podman without libpod): "name=rootless" in /info's SecurityOptions. */
async function isRootless(docker: Docker, kind: EngineKind): Promise<boolean | undefined> {
  if (kind === "podman") {
    const info = await new Promise<unknown>((resolve) =>
      docker.modem.dial({ path: "/v4.0.0/libpod/info", method: "GET", statusCodes: { 200: true }, options: {} }, (err, data) => resolve(err ? undefined : data)),
    );
    const rootless = (info as { host?: { security?: { rootless?: unknown } } } | undefined)?.host?.security?.rootless;
    if (typeof rootless === "boolean") return rootless;
  }
  try {
    const info = (await docker.info()) as { SecurityOptions?: unknown };
    const options = Array.isArray(info.SecurityOptions) ? info.SecurityOptions.map(String) : [];
    return options.some((s) => /(^|,)name=rootless(,|$)/.test(s));
  } catch {
    return undefined;
  }
}

/** The fix for one candidate that failed with `code` (ENOENT: no socket, EACCES, ECONNREFUSED, …). */
export function fixFor(c: EngineCandidate, code: string, uid: number): string {
  const podman = /podman/.test(c.source);
  const rootless = c.source === "rootless podman";
  const machine = c.source === "podman machine";
  if (c.source === "DOCKER_HOST") return code === "EACCES" ? "DOCKER_HOST names a socket you may not use: check its owner and group, or unset DOCKER_HOST" : "start the engine DOCKER_HOST names, or unset DOCKER_HOST to let tmax look for one";
  if (c.source.startsWith("docker context")) return "start that context's engine, or `docker context use default`";
  if (machine) return "`podman machine start`";
  if (code === "EACCES" || code === "EPERM") {
    if (!podman) return "`sudo usermod -aG docker $USER`, then log in again (or run `newgrp docker`)";
    return "this socket is root's: use rootless podman (`systemctl --user enable --now podman.socket`) or run tmax as root";
  }
  if (rootless) return "`systemctl --user enable --now podman.socket` (without systemd: `podman system service --time=0 &`)";
  if (podman) return uid === 0 ? "`systemctl enable --now podman.socket` (without systemd: `podman system service --time=0 &`)" : "use rootless podman: `systemctl --user enable --now podman.socket`";
  return c.source === "Docker Desktop" ? "start Docker Desktop" : "`sudo systemctl enable --now docker` (Docker Engine)";
}

function onPathDefault(name: string): boolean {
  return (process.env.PATH ?? "").split(path.delimiter).some((d) => d && existsSync(path.join(d, name)));
}

/** What to do when no candidate answered: start what is installed, else install one. */
export function noEngineFix(tried: EngineProbe[], o: DiscoverOptions = {}): string {
  const uid = o.uid ?? (typeof process.getuid === "function" ? process.getuid() : 0);
  const onPath = o.onPath ?? onPathDefault;
  // a socket that is there but refused us says most
  const present = tried.find((p) => p.error && p.error !== "no socket" && p.fix);
  if (present) return `${present.fix} (${present.source} at ${present.host}: ${present.error})`;
  if (tried.length === 1 && tried[0]!.source === "DOCKER_HOST") return tried[0]!.fix!;
  if (onPath("dockerd")) return "`sudo systemctl enable --now docker`" + (uid === 0 ? "" : ", and `sudo usermod -aG docker $USER` (then log in again)");
  if (onPath("podman")) return uid === 0 ? "`systemctl enable --now podman.socket` (without systemd: `podman system service --time=0 &`)" : "`systemctl --user enable --now podman.socket`";
  return uid === 0
    ? "install an engine: `apt-get install podman` (then `systemctl enable --now podman.socket`) or `apt-get install docker.io`"
    : "install an engine: `sudo apt-get install podman uidmap` then `systemctl --user enable --now podman.socket`; or `sudo apt-get install docker.io && sudo usermod -aG docker $USER`";
}

/** Asks the candidates in order; stops at the first that answers. */
export async function discoverEngine(o: DiscoverOptions = {}): Promise<Discovery> {
  const tried: EngineProbe[] = [];
  for (const c of engineCandidates(o)) {
    const p = await probeEngine(c, o);
    tried.push(p);
    if (p.ok) return { engine: p, tried };
  }
  return { tried, fix: noEngineFix(tried, o) };
}

/** One line for messages: "podman (rootful) 4.3.1 at unix:///run/podman/podman.sock (rootful podman)". */
export function engineLine(p: EngineProbe): string {
  return oneLine(`${describeEngine(p)}${p.apiVersion ? ` (API ${p.apiVersion})` : ""} at ${p.host}${p.source === "DOCKER_HOST" ? " (DOCKER_HOST)" : ` (found: ${p.source})`}`);
}
