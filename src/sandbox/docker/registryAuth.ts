// Registry credentials for image pulls, found where `docker login` and `podman login` leave them: the auth files
// ($REGISTRY_AUTH_FILE, podman's auth.json, Docker's config.json) with their `auths` entries, and the credential
// helpers those files name (`credHelpers` per registry, `credsStore` for all), asked over Docker's helper protocol:
// `docker-credential-<name> get`, the server URL on stdin, `{"ServerURL","Username","Secret"}` on stdout, a Username
// of `<token>` meaning the Secret is an identity token. The result goes to the engine in the X-Registry-Auth header
// only: never logged, never written to a file or a container. Messages about a failing helper never carry its output.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** What the engine receives as X-Registry-Auth (dockerode's `authconfig`). */
export interface RegistryAuth {
  username?: string;
  password?: string;
  /** An OAuth identity token (a helper's Username `<token>`); sent instead of username/password. */
  identitytoken?: string;
  serveraddress: string;
}

export interface AuthLookup {
  auth?: RegistryAuth;
  /** Where the credentials came from: a file path, or `docker-credential-<name>` (never the credentials). */
  source?: string;
  /** Helpers that failed on the way (one clause each), for the message when the pull then fails. */
  problems: string[];
}

export interface AuthLookupOptions {
  /** Auth files to read, most important first (default: authFiles(env)). */
  files?: string[];
  /** Environment for the default files and for the helpers (PATH); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Bound on one helper call (default 30 s: a keychain may ask the user). */
  helperTimeoutMs?: number;
}

/** Docker Hub's spellings in auth files; its helpers are asked for the first. */
const DOCKER_HUB = ["https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io"];

/** The registry host of an image reference (`docker.io` for Docker Hub short names). */
export function registryHost(ref: string): string {
  const first = ref.split("/")[0]!;
  if (ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost")) return first;
  return "docker.io";
}

/**
 * Where credentials are looked up, in order (the first file with credentials for the registry wins):
 * $REGISTRY_AUTH_FILE, podman's ${XDG_RUNTIME_DIR}/containers/auth.json (/run/containers/<uid>/auth.json without
 * XDG_RUNTIME_DIR), ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, then Docker's ${DOCKER_CONFIG:-~/.docker}/config.json.
 */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME ?? os.homedir();
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, "containers", "auth.json"));
  else if (typeof process.getuid === "function") files.push(path.join("/run/containers", String(process.getuid()), "auth.json"));
  files.push(path.join(env.XDG_CONFIG_HOME || path.join(home, ".config"), "containers", "auth.json"));
  files.push(path.join(env.DOCKER_CONFIG || path.join(home, ".docker"), "config.json"));
  return [...new Set(files)];
}

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string } | null>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/**
 * Credentials for the registry of `ref`. Per file, Docker's order: `credHelpers[host]`, else `credsStore`, else
 * the `auths` entry (podman's repository-scoped keys, `host/namespace/repo`, before the bare host). A helper
 * that has nothing for the host, or fails, passes the turn to the rest of that file and then the next file.
 */
export async function lookupAuth(ref: string, o: AuthLookupOptions = {}): Promise<AuthLookup> {
  const env = o.env ?? process.env;
  const host = registryHost(ref);
  const problems: string[] = [];
  for (const file of o.files ?? authFiles(env)) {
    let doc: AuthFile;
    try {
      doc = JSON.parse(readFileSync(file, "utf8")) as AuthFile;
    } catch {
      continue; // missing or unreadable: the next file
    }
    if (!doc || typeof doc !== "object") continue;
    const helpers = [credHelperFor(doc, host), typeof doc.credsStore === "string" && doc.credsStore ? doc.credsStore : undefined];
    for (const helper of new Set(helpers.filter((h): h is string => !!h))) {
      const got = await askHelper(helper, host, env, o.helperTimeoutMs ?? 30_000);
      if (got.auth) return { auth: got.auth, source: `docker-credential-${helper}`, problems };
      if (got.problem) problems.push(got.problem);
    }
    const auth = fromAuths(doc, ref, host);
    if (auth) return { auth, source: file, problems };
  }
  return { problems };
}

function credHelperFor(doc: AuthFile, host: string): string | undefined {
  const helpers = doc.credHelpers && typeof doc.credHelpers === "object" ? doc.credHelpers : {};
  const keys = host === "docker.io" ? DOCKER_HUB : [host];
  for (const [key, name] of Object.entries(helpers)) {
    if (typeof name === "string" && name && keys.includes(bareKey(key))) return name;
  }
  return undefined;
}

/** `https://ghcr.io/v1/` → `ghcr.io`; Docker Hub's URL key stays whole (it is one of DOCKER_HUB's spellings). */
function bareKey(key: string): string {
  if (key === DOCKER_HUB[0]) return key;
  return key.replace(/^https?:\/\//, "").replace(/\/+$/, "");
}

/** The most specific `auths` key for `ref`: `host/a/b`, then `host/a`, then `host` (podman); URL spellings too. */
function fromAuths(doc: AuthFile, ref: string, host: string): RegistryAuth | undefined {
  const auths = doc.auths && typeof doc.auths === "object" ? doc.auths : {};
  const byKey = new Map<string, NonNullable<AuthFile["auths"]>[string]>();
  for (const [key, entry] of Object.entries(auths)) {
    const bare = bareKey(key);
    // Docker's config keeps URL forms (`https://host/v1/`) of a bare host: only the host part counts there
    const asHost = /^https?:\/\//.test(key) && key !== DOCKER_HUB[0] ? bare.split("/")[0]! : bare;
    if (!byKey.has(asHost)) byKey.set(asHost, entry);
  }
  const repo = (host === "docker.io" && !ref.startsWith("docker.io/") ? `docker.io/${ref.includes("/") ? ref : `library/${ref}`}` : ref).replace(/[@:][^/]*$/, "");
  const candidates: string[] = [];
  for (let parts = repo.split("/"); parts.length > 1; parts = parts.slice(0, -1)) candidates.push(parts.join("/"));
  candidates.push(...(host === "docker.io" ? DOCKER_HUB : [host]));
  for (const key of candidates) {
    const entry = byKey.get(key);
    if (!entry || typeof entry !== "object") continue;
    if (entry.identitytoken) return { identitytoken: entry.identitytoken, serveraddress: host };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), serveraddress: host };
    }
    if (entry.username && entry.password) return { username: entry.username, password: entry.password, serveraddress: host };
  }
  return undefined;
}

/** One `docker-credential-<name> get`: credentials, nothing (the helper has none for this host), or a problem. */
async function askHelper(name: string, host: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ auth?: RegistryAuth; problem?: string }> {
  const program = `docker-credential-${name}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return { problem: `credential helper name ${JSON.stringify(name.slice(0, 40))} is not a plain name` };
  const serverUrl = host === "docker.io" ? DOCKER_HUB[0]! : host;
  const r = await runHelper(program, serverUrl, env, timeoutMs);
  if (r.error === "ENOENT") return { problem: `${program} is not on PATH` };
  if (r.error) return { problem: `${program} failed (${r.error})` };
  if (r.code !== 0) {
    // the protocol's "no credentials" answer: exit 1 and this text; anything else is a failure (its output not shown)
    if (/credentials not found/i.test(r.stdout + r.stderr)) return {};
    return { problem: `${program} get exited with ${r.code ?? r.signal}` };
  }
  let answer: { Username?: unknown; Secret?: unknown };
  try {
    answer = JSON.parse(r.stdout) as typeof answer;
  } catch {
    return { problem: `${program} get printed no JSON` };
  }
  const username = typeof answer?.Username === "string" ? answer.Username : "";
  const secret = typeof answer?.Secret === "string" ? answer.Secret : "";
  if (!secret) return {};
  if (username === "<token>") return { auth: { identitytoken: secret, serveraddress: host } };
  return { auth: { username, password: secret, serveraddress: host } };
}

function runHelper(program: string, input: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; error?: string }> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let error: string | undefined;
    let settled = false;
    const settle = (code: number | null, signal: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ...(error ? { error } : {}) });
    };
    const child = spawn(program, ["get"], { env, stdio: ["pipe", "pipe", "pipe"] });
    const cap = 64 * 1024;
    const timer = setTimeout(() => {
      error = `no answer in ${Math.round(timeoutMs / 1000)}s`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (d: Buffer) => (stdout = (stdout + d.toString("utf8")).slice(0, cap)));
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString("utf8")).slice(0, cap)));
    child.stdin.on("error", () => {}); // a helper that exits without reading stdin
    child.on("error", (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? "spawn failed";
      if (child.pid === undefined) settle(null, null); // never started: no close event to wait for
    });
    child.on("close", (code, signal) => settle(code, signal));
    child.stdin.end(input);
  });
}
