// The slice of the Daytona TypeScript SDK (@daytonaio/sdk) that tmax uses, how it is loaded, and how its errors
// become one-line messages. Names and shapes are those of the 0.218.0 declarations (Daytona.d.ts, Sandbox.d.ts,
// Process.d.ts, Snapshot.d.ts, Image.d.ts, errors/DaytonaError.d.ts; 0.218.0 was also `latest` on npm when this
// was written). DaytonaSdkLike was checked for assignability against those declarations with tsc in a scratch
// project (`const x: DaytonaSdkLike = await import("@daytonaio/sdk")`); tests feed an in-process fake instead.
//
// The SDK is an optional peer dependency, loaded on first use (or injected), so tmax builds and runs without it.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** What `Image.fromDockerfile` returns; opaque to us. The real SDK tells an Image from an image name with instanceof. */
export interface DaytonaImageLike {
  readonly dockerfile: string;
}

/**
 * Daytona.create's params: either `image` (a name, which the SDK turns into `FROM <name>`, or an Image) with
 * `resources`, or `snapshot` (a snapshot carries its own resources).
 */
export interface DaytonaCreateParams {
  name?: string;
  image?: string | DaytonaImageLike;
  snapshot?: string;
  envVars?: Record<string, string>;
  labels?: Record<string, string>;
  /** cpu in cores, memory and disk in GiB. */
  resources?: { cpu?: number; memory?: number; disk?: number };
  networkBlockAll?: boolean;
  /** Minutes without activity before the sandbox is stopped (0 = never). */
  autoStopInterval?: number;
  /** Minutes after a stop before it is deleted (0 = at once); `ephemeral` sets it to 0. */
  autoDeleteInterval?: number;
  ephemeral?: boolean;
}

/** A session command as getSessionCommand reports it: exitCode appears once the command has finished. */
export interface DaytonaSessionCommandLike {
  id: string;
  exitCode?: number;
}

export interface DaytonaSandboxLike {
  id: string;
  name?: string;
  user?: string;
  labels?: Record<string, string>;
  state?: string;
  cpu?: number;
  memory?: number;
  disk?: number;
  getWorkDir(): Promise<string | undefined>;
  delete(timeout?: number): Promise<void>;
  process: {
    createSession(sessionId: string): Promise<void>;
    /** With runAsync the answer carries only cmdId; exitCode and logs come from the two calls below. */
    executeSessionCommand(sessionId: string, req: { command: string; runAsync?: boolean }, timeout?: number): Promise<{ cmdId: string; exitCode?: number; stdout?: string; stderr?: string }>;
    getSessionCommand(sessionId: string, commandId: string): Promise<DaytonaSessionCommandLike>;
    getSessionCommandLogs(sessionId: string, commandId: string): Promise<{ output?: string; stdout?: string; stderr?: string }>;
    deleteSession(sessionId: string): Promise<void>;
  };
  fs: {
    uploadFile(file: Buffer, remotePath: string, timeout?: number): Promise<void>;
    downloadFile(remotePath: string, timeout?: number): Promise<Buffer>;
  };
}

/** A snapshot as SnapshotService.get returns it (state: building, pending, pulling, active, inactive, error, ...). */
export interface DaytonaSnapshotLike {
  name: string;
  state: string;
  imageName?: string;
  errorReason?: string | null;
}

export interface DaytonaClientLike {
  create(params: DaytonaCreateParams, options?: { timeout?: number; onSnapshotCreateLogs?: (chunk: string) => void }): Promise<DaytonaSandboxLike>;
  list(query?: { labels?: Record<string, string>; limit?: number }): AsyncIterable<DaytonaSandboxLike>;
  snapshot: {
    get(idOrName: string): Promise<DaytonaSnapshotLike>;
  };
}

/** The module `@daytonaio/sdk` as far as tmax uses it (tests inject a fake). */
export interface DaytonaSdkLike {
  Daytona: new (config: { apiKey?: string; apiUrl?: string; target?: string }) => DaytonaClientLike;
  Image: { fromDockerfile(path: string): DaytonaImageLike };
}

/** tmax's package folder (the same from src/ and dist/: both are two levels below it). */
const TMAX_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export const SDK_MODULE = "@daytonaio/sdk";
/** A global install is found wherever tmax runs from: a global tmax, `npx`, a checkout (see sdkSearchRoots). */
export const SDK_INSTALL_FIX = "npm i -g @daytonaio/sdk";
export const MISSING_SDK_MESSAGE = `the daytona backend needs the Daytona SDK: ${SDK_INSTALL_FIX}`;
export const MISSING_KEY_MESSAGE = "the daytona backend needs an API key: set DAYTONA_API_KEY (create one in the Daytona dashboard)";

/**
 * node_modules folders searched for the SDK when tmax's own resolution does not find it, in order: the folder
 * tmax itself is installed in (`<prefix>/lib/node_modules` for `npm i -g tmax`), then npm's global folder from
 * `npm_config_prefix` (set under npm and npx) and from the running node (`<node's dir>/../lib/node_modules`, npm's
 * default prefix). So `npm i -g @daytonaio/sdk` reaches a global tmax, an `npx` run and an `npm link`ed checkout.
 */
export function sdkSearchRoots(env: NodeJS.ProcessEnv = process.env, execPath: string = process.execPath, packageRoot: string = TMAX_ROOT): string[] {
  const globalOf = (prefix: string) => (process.platform === "win32" ? path.join(prefix, "node_modules") : path.join(prefix, "lib", "node_modules"));
  const roots: string[] = [];
  const parent = path.dirname(packageRoot);
  if (path.basename(parent) === "node_modules") roots.push(parent);
  const prefix = env.npm_config_prefix ?? env.NPM_CONFIG_PREFIX;
  if (prefix) roots.push(globalOf(prefix));
  roots.push(globalOf(process.platform === "win32" ? path.dirname(execPath) : path.dirname(path.dirname(execPath))));
  return [...new Set(roots.map((r) => path.resolve(r)))];
}

/**
 * `await import("@daytonaio/sdk")` from tmax's own node_modules, else from the first of `roots` that has it;
 * a one-line error when it is nowhere or not the expected shape.
 */
export async function loadSdk(roots: string[] = sdkSearchRoots()): Promise<DaytonaSdkLike> {
  // A variable specifier keeps tsc from resolving the (optional, usually absent) package.
  const specifier: string = SDK_MODULE;
  let mod: Partial<DaytonaSdkLike> & { default?: Partial<DaytonaSdkLike> };
  try {
    mod = await importFrom(specifier, roots);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if ((e.code === "ERR_MODULE_NOT_FOUND" || e.code === "MODULE_NOT_FOUND") && String(e.message).includes(SDK_MODULE)) {
      throw new Error(MISSING_SDK_MESSAGE);
    }
    throw new Error(`cannot load the Daytona SDK (${SDK_MODULE}): ${oneLine(e.message ?? String(err))}`);
  }
  // a CommonJS build imported by path may put its exports on `default`
  const sdk = typeof mod.Daytona === "function" ? mod : (mod.default ?? mod);
  if (typeof sdk.Daytona !== "function" || typeof sdk.Image?.fromDockerfile !== "function") {
    throw new Error(`the installed ${SDK_MODULE} does not export Daytona and Image as expected; tmax was written against 0.218`);
  }
  return sdk as DaytonaSdkLike;
}

async function importFrom<T>(specifier: string, roots: string[]): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") throw err;
    for (const root of roots) {
      if (!existsSync(path.join(root, specifier, "package.json"))) continue;
      // resolved as if required from a file in that folder: the package's own "exports"/"main" pick the entry
      const entry = createRequire(path.join(root, "_tmax_resolve.js")).resolve(specifier);
      return (await import(pathToFileURL(entry).href)) as T;
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// errors (the API key must never appear in a message)

export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

export function messageOf(err: unknown, ctx: { apiKey?: string }): string {
  const raw = oneLine((err as { message?: string })?.message ?? String(err));
  return ctx.apiKey ? raw.split(ctx.apiKey).join("***") : raw;
}

/** The HTTP status of an SDK error (DaytonaError.statusCode), if any. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown })?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** A DaytonaConnectionError (no response at all) or a Node socket error. */
export function isConnectionError(err: unknown): boolean {
  const name = (err as { name?: string })?.name ?? "";
  const code = (err as { code?: string })?.code ?? "";
  return /Connection/.test(name) || /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|EPIPE|UND_ERR_SOCKET)$/.test(code);
}
