// An in-process fake of the Daytona SDK surface tmax uses (src/sandbox/daytona/sdk.ts). Its sandboxes run the
// commands they are given on this machine, in a temp dir that stands in for the sandbox's filesystem, the way
// the Daytona daemon runs session commands (read from its sources, apps/daemon/pkg/session): one command at a
// time per session, each under `sh` in a process group of its own, stdout and stderr logged apart with a "\n"
// added to an unterminated last line, the exit code known once the command has ended, deleteSession killing
// what the session runs. Faults (429s, 5xx, dropped connections) can be queued per session method.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { daytonaBackend, type DaytonaBackendOptions } from "../../src/sandbox/daytona/backend.js";
import type { DaytonaClientLike, DaytonaCreateParams, DaytonaImageLike, DaytonaSandboxLike, DaytonaSdkLike, DaytonaSnapshotLike } from "../../src/sandbox/daytona/sdk.js";
import type { SandboxSpec } from "../../src/sandbox/types.js";

export const API_KEY = `sk-test-${randomBytes(6).toString("hex")}`;
/** Short backoffs, quota waits and polls for tests. */
export const FAST = { retry: { attempts: 4, baseMs: 5, capMs: 20 }, quotaWait: { attempts: 3, stepMs: 5, capMs: 10 }, poll: { firstMs: 10, maxMs: 40 } } satisfies Partial<DaytonaBackendOptions>;

/** A backend on a fresh fake and one sandbox of it, removed after the test. */
export async function withSandbox(t: { after: (fn: () => Promise<void>) => void }, spec: SandboxSpec = { image: "debian:12" }) {
  const { sdk, state } = fakeSdk();
  const backend = daytonaBackend({ sdk, apiKey: API_KEY, ...FAST });
  const sandbox = await backend.create(spec);
  t.after(() => sandbox.remove());
  return { sandbox, state, backend, root: (state.sandboxes.get(sandbox.id) as FakeSandbox).root };
}

type ProcessMethod = keyof DaytonaSandboxLike["process"];

export interface FakeState {
  configs: Array<{ apiKey?: string; apiUrl?: string; target?: string }>;
  created: DaytonaCreateParams[];
  dockerfiles: Array<{ path: string; text: string; contextFiles: string[] }>;
  sandboxes: Map<string, FakeSandbox>;
  snapshots: Map<string, DaytonaSnapshotLike>;
  /** Makes the next create fail with this error. */
  failCreate?: Error;
  failList?: Error;
  /** Errors thrown by the next calls of a session method (first in, first out), e.g. 429s. */
  faults: Partial<Record<ProcessMethod, Error[]>>;
  /** Calls per session method, failed ones included. */
  calls: Record<string, number>;
  sessionsCreated: string[];
  sessionsDeleted: string[];
  /** Paths given to fs.uploadFile and fs.downloadFile, in order (the backend's temp archives among them). */
  transfers: string[];
  /** Every session command's text, in order. */
  commands: string[];
  /** The daemon's habit of ending an unterminated last line with "\n" (on by default). */
  appendNewline: boolean;
}

export interface FakeSandbox extends DaytonaSandboxLike {
  root: string;
  deleted: boolean;
}

interface FakeCommand {
  id: string;
  exitCode?: number;
  stdout: string;
  stderr: string;
  done: Promise<void>;
}

export function errorWithStatus(message: string, statusCode: number, name = "DaytonaError"): Error {
  return Object.assign(new Error(message), { statusCode, name });
}

/** The daemon logs a stream line by line: an unterminated last line gets a "\n". */
function logged(bytes: Buffer, appendNewline: boolean): string {
  const text = bytes.toString("utf8");
  return appendNewline && text.length > 0 && !text.endsWith("\n") ? `${text}\n` : text;
}

export function fakeSdk(): { sdk: DaytonaSdkLike; state: FakeState } {
  const state: FakeState = {
    configs: [],
    created: [],
    dockerfiles: [],
    sandboxes: new Map(),
    snapshots: new Map(),
    faults: {},
    calls: {},
    sessionsCreated: [],
    sessionsDeleted: [],
    transfers: [],
    commands: [],
    appendNewline: true,
  };
  const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" };

  /** Counts the call and throws the next injected fault of `method`, if any. */
  function enter(method: ProcessMethod): void {
    state.calls[method] = (state.calls[method] ?? 0) + 1;
    const fault = state.faults[method]?.shift();
    if (fault) throw fault;
  }

  async function newSandbox(params: DaytonaCreateParams): Promise<FakeSandbox> {
    const id = `fake-${randomBytes(4).toString("hex")}`;
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-fake-"));
    const env = { ...baseEnv, HOME: root, ...params.envVars };
    const sessions = new Map<string, { commands: Map<string, FakeCommand>; queue: Promise<void>; procs: Set<ChildProcess>; dead?: boolean }>();
    const session = (sid: string) => {
      const s = sessions.get(sid);
      if (!s) throw errorWithStatus(`session ${sid} not found`, 404, "DaytonaNotFoundError");
      return s;
    };

    function run(sid: string, command: string): FakeCommand {
      const s = session(sid);
      const cmd: FakeCommand = { id: randomBytes(6).toString("hex"), stdout: "", stderr: "", done: Promise.resolve() };
      // one command at a time per session, like the session's shell reading its stdin
      cmd.done = s.queue.then(
        () =>
          new Promise<void>((resolve) => {
            const child = spawn("sh", ["-c", command], { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
            s.procs.add(child);
            const out: Buffer[] = [];
            const err: Buffer[] = [];
            child.stdout!.on("data", (c: Buffer) => out.push(c));
            child.stderr!.on("data", (c: Buffer) => err.push(c));
            child.on("error", () => undefined);
            child.on("close", (code, signal) => {
              s.procs.delete(child);
              cmd.stdout = logged(Buffer.concat(out), state.appendNewline);
              cmd.stderr = logged(Buffer.concat(err), state.appendNewline);
              // Killed by a signal, the session's shell is gone: the daemon never learns an exit code, and
              // cannot write the session's next command.
              if (signal) s.dead = true;
              else cmd.exitCode = code ?? 1;
              resolve();
            });
          }),
      );
      s.queue = cmd.done;
      s.commands.set(cmd.id, cmd);
      return cmd;
    }

    const sb: FakeSandbox = {
      id,
      name: params.name,
      user: os.userInfo().username,
      labels: { ...params.labels },
      state: "started",
      cpu: params.resources?.cpu ?? 1,
      memory: params.resources?.memory ?? 1,
      disk: params.resources?.disk ?? 3,
      root,
      deleted: false,
      getWorkDir: async () => root,
      async delete() {
        if (sb.deleted) throw errorWithStatus(`sandbox ${id} not found`, 404);
        sb.deleted = true;
        for (const sid of [...sessions.keys()]) await sb.process.deleteSession(sid);
        await fs.rm(root, { recursive: true, force: true });
      },
      process: {
        async createSession(sid) {
          enter("createSession");
          if (sessions.has(sid)) throw errorWithStatus("session already exists", 409, "DaytonaConflictError");
          sessions.set(sid, { commands: new Map(), queue: Promise.resolve(), procs: new Set() });
          state.sessionsCreated.push(sid);
        },
        async executeSessionCommand(sid, req) {
          enter("executeSessionCommand");
          if (session(sid).dead) throw errorWithStatus("failed to write command: write |1: broken pipe", 400, "DaytonaValidationError");
          state.commands.push(req.command);
          const cmd = run(sid, req.command);
          if (req.runAsync) return { cmdId: cmd.id };
          await cmd.done;
          return { cmdId: cmd.id, exitCode: cmd.exitCode, stdout: cmd.stdout, stderr: cmd.stderr };
        },
        async getSessionCommand(sid, cmdId) {
          enter("getSessionCommand");
          const cmd = session(sid).commands.get(cmdId);
          if (!cmd) throw errorWithStatus(`command ${cmdId} not found`, 404, "DaytonaNotFoundError");
          return { id: cmd.id, ...(cmd.exitCode === undefined ? {} : { exitCode: cmd.exitCode }) };
        },
        async getSessionCommandLogs(sid, cmdId) {
          enter("getSessionCommandLogs");
          const cmd = session(sid).commands.get(cmdId);
          if (!cmd) throw errorWithStatus(`command ${cmdId} not found`, 404, "DaytonaNotFoundError");
          return { stdout: cmd.stdout, stderr: cmd.stderr, output: cmd.stdout + cmd.stderr };
        },
        async deleteSession(sid) {
          enter("deleteSession");
          const s = session(sid);
          for (const child of s.procs) {
            try {
              process.kill(-child.pid!, "SIGKILL");
            } catch {
              // gone
            }
          }
          sessions.delete(sid);
          state.sessionsDeleted.push(sid);
        },
      },
      fs: {
        // Like a plain HTTP upload: no parent directories are created for you.
        uploadFile: (file, remotePath) => {
          state.transfers.push(remotePath);
          return fs.writeFile(remotePath, file);
        },
        // A missing file comes back as an error without a status code (the SDK's untyped case).
        downloadFile: async (remotePath) => {
          state.transfers.push(remotePath);
          try {
            return await fs.readFile(remotePath);
          } catch (err) {
            throw new Error(`download failed: ${(err as NodeJS.ErrnoException).code}`);
          }
        },
      },
    };
    state.sandboxes.set(id, sb);
    return sb;
  }

  class FakeDaytona implements DaytonaClientLike {
    constructor(config: { apiKey?: string; apiUrl?: string; target?: string }) {
      state.configs.push(config);
    }
    async create(params: DaytonaCreateParams, options?: { onSnapshotCreateLogs?: (chunk: string) => void }) {
      state.created.push(params);
      if (params.image !== undefined) options?.onSnapshotCreateLogs?.("Step 1/2 : FROM base\n");
      if (state.failCreate) throw state.failCreate;
      if (params.snapshot !== undefined && state.snapshots.get(params.snapshot)?.state !== "active") throw errorWithStatus(`snapshot ${params.snapshot} not active`, 400);
      return newSandbox(params);
    }
    async *list(query?: { labels?: Record<string, string> }) {
      if (state.failList) throw state.failList;
      for (const sb of state.sandboxes.values()) {
        if (sb.deleted) continue;
        if (Object.entries(query?.labels ?? {}).every(([k, v]) => sb.labels?.[k] === v)) yield sb;
      }
    }
    snapshot = {
      async get(name: string) {
        const snap = state.snapshots.get(name);
        if (!snap) throw errorWithStatus(`Snapshot ${name} not found`, 404, "DaytonaNotFoundError");
        return snap;
      },
    };
  }

  const Image = {
    // Like the SDK: reads the Dockerfile at once and notes the context files next to it.
    fromDockerfile(file: string): DaytonaImageLike {
      const text = readFileSync(file, "utf8");
      const dir = path.dirname(file);
      const contextFiles = [...text.matchAll(/^\s*COPY\s+(\S+)/gim)].map((m) => path.join(dir, m[1]));
      for (const f of contextFiles) assert.ok(existsSync(f), `COPY source ${f} exists next to the Dockerfile`);
      state.dockerfiles.push({ path: file, text, contextFiles });
      return { dockerfile: text };
    },
  };

  return { sdk: { Daytona: FakeDaytona, Image }, state };
}

