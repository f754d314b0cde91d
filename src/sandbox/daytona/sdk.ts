// The slice of the Daytona TypeScript SDK (@daytonaio/sdk) that tmax uses, how it is loaded, and how its errors
// become one-line messages. Names and shapes are those of the 0.218.0 declarations (Daytona.d.ts, Sandbox.d.ts,
// Process.d.ts, Snapshot.d.ts, Image.d.ts, errors/DaytonaError.d.ts; 0.218.0 was also `latest` on npm when this
// was written). DaytonaSdkLike was checked for assignability against those declarations with tsc in a scratch
// project (`const x: DaytonaSdkLike = await import("@daytonaio/sdk")`); tests feed an in-process fake instead.
//
// The SDK is an optional dependency, loaded on first use (or injected), so tmax builds and runs without it.

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

export const SDK_MODULE = "@daytonaio/sdk";
export const SDK_INSTALL_FIX = "npm i @daytonaio/sdk";
export const MISSING_SDK_MESSAGE = `the daytona backend needs the Daytona SDK: ${SDK_INSTALL_FIX}`;
export const MISSING_KEY_MESSAGE = "the daytona backend needs an API key: set DAYTONA_API_KEY (create one in the Daytona dashboard)";

/** `await import("@daytonaio/sdk")`, with a one-line error when it is not installed or not the expected shape. */
export async function loadSdk(): Promise<DaytonaSdkLike> {
  // A variable specifier keeps tsc from resolving the (optional, usually absent) package.
  const specifier: string = SDK_MODULE;
  let mod: Partial<DaytonaSdkLike>;
  try {
    mod = (await import(specifier)) as Partial<DaytonaSdkLike>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if ((e.code === "ERR_MODULE_NOT_FOUND" || e.code === "MODULE_NOT_FOUND") && String(e.message).includes(SDK_MODULE)) {
      throw new Error(MISSING_SDK_MESSAGE);
    }
    throw new Error(`cannot load the Daytona SDK (${SDK_MODULE}): ${oneLine(e.message ?? String(err))}`);
  }
  if (typeof mod.Daytona !== "function" || typeof mod.Image?.fromDockerfile !== "function") {
    throw new Error(`the installed ${SDK_MODULE} does not export Daytona and Image as expected; tmax was written against 0.218`);
  }
  return mod as DaytonaSdkLike;
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
