// The local backend (--unsafe): commands run directly on this machine, in a fresh temp dir, with the same
// exec semantics as a container (argv, caps, timeouts). No isolation at all, hence the opt-in.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { track, untrack } from "../cleanup.js";
import { DEFAULT_MAX_OUTPUT_BYTES, cappedBuffer } from "../bytes/execOutput.js";
import { newBudget, safeExtract } from "../bytes/safeExtract.js";
import { DEFAULT_READ_MAX_BYTES, packLocalPath } from "../bytes/tarball.js";
import { SandboxError, type ExecOptions, type ExecResult, type Sandbox, type SandboxBackend, type SandboxSpec } from "../types.js";

export interface LocalBackendOptions {
  /** Must be true: the caller acknowledges that commands run unconfined on this host. */
  unsafe?: boolean;
  /** Parent of the per-sandbox temp dirs (default os.tmpdir()). */
  rootDir?: string;
}

/** Env var marking every process a local sandbox started, so remove() can find stragglers it left running. */
const MARKER = "TMAX_LOCAL_SANDBOX";
const KILL_AFTER_MS = 10_000;
/** After the command exits, how long to wait for background children that still hold its stdout/stderr. */
const PIPE_GRACE_MS = 200;

export function localBackend(opts: LocalBackendOptions = {}): SandboxBackend {
  if (opts.unsafe !== true) {
    throw new Error("the local backend runs commands directly on this machine without isolation; pass --unsafe to allow it");
  }
  return {
    name: "local",
    create: (spec, createOpts) => createLocalSandbox(spec, opts.rootDir ?? os.tmpdir(), createOpts?.signal),
    // Local sandboxes live in temp dirs owned by one process; there is nothing engine-wide to prune.
    prune: async () => 0,
    listPrunable: async () => [],
    check: async () => ({ ok: true, detail: "local backend: commands run unconfined on this host in a temp dir (--unsafe)" }),
  };
}

async function createLocalSandbox(spec: SandboxSpec, rootDir: string, signal?: AbortSignal): Promise<Sandbox> {
  signal?.throwIfAborted();
  const name = (spec.name ?? "sandbox").replace(/[^a-zA-Z0-9_.-]+/g, "-").slice(0, 40) || "sandbox";
  const dir = await fs.mkdtemp(path.join(rootDir, `tmax-${name}-`));
  const workdir = spec.workdir ? path.resolve(dir, spec.workdir.replace(/^\/+/, "")) : dir;
  await fs.mkdir(workdir, { recursive: true });
  const id = `local-${randomBytes(6).toString("hex")}`;
  const baseEnv = sandboxEnv(workdir, id, spec.env);
  // Remote paths: relative ones resolve against the workdir; absolute ones are host paths (this IS the host).
  const resolve = (p: string) => path.resolve(workdir, p);
  let removing: Promise<void> | undefined;

  const sandbox: Sandbox = {
    id,
    backend: "local",
    image: "local",
    workdir,
    exec: (argv, opts = {}) => execLocal(argv, opts, workdir, baseEnv),
    async upload(localPath, remoteDir) {
      const target = resolve(remoteDir);
      await fs.mkdir(target, { recursive: true });
      await fs.cp(localPath, path.join(target, path.basename(path.resolve(localPath))), { recursive: true, verbatimSymlinks: true, force: true });
    },
    async download(remotePath, localDir, budget = newBudget()) {
      const source = resolve(remotePath);
      if (!(await fs.lstat(source).catch(() => null))) return false;
      // Same rules as a container's archive: packed as tar (links stay links) and extracted as plain data.
      await safeExtract(await packLocalPath(source, "/"), localDir, budget);
      return true;
    },
    async writeFile(remotePath, content, mode = 0o644) {
      const target = resolve(remotePath);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, content);
      await fs.chmod(target, mode);
    },
    async readFile(remotePath, opts = {}) {
      const maxBytes = opts.maxBytes ?? DEFAULT_READ_MAX_BYTES;
      try {
        const st = await fs.stat(resolve(remotePath));
        if (st.size > maxBytes) throw new SandboxError(`${remotePath} is larger than ${maxBytes} bytes (${st.size}): not read`, "exec_failed");
        return await fs.readFile(resolve(remotePath));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
        if (err instanceof SandboxError) throw err;
        throw new SandboxError(`cannot read ${remotePath}: ${(err as Error).message}`, "exec_failed");
      }
    },
    remove() {
      removing ??= (async () => {
        await killMarkedProcesses(id);
        await fs.rm(dir, { recursive: true, force: true });
        untrack(sandbox);
      })();
      return removing;
    },
  };
  track(sandbox);
  return sandbox;
}

/**
 * A small, explicit environment: the host's PATH and locale, HOME in the sandbox, plus spec env.
 * The rest of the host env (API keys above all) is deliberately not inherited.
 */
function sandboxEnv(workdir: string, id: string, extra?: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", HOME: workdir, [MARKER]: id };
  for (const key of ["LANG", "LC_ALL", "TZ", "USER", "SHELL"]) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return { ...env, ...extra };
}

function execLocal(argv: string[], opts: ExecOptions, workdir: string, baseEnv: Record<string, string>): Promise<ExecResult> {
  if (argv.length === 0) return Promise.reject(new SandboxError("exec needs a command (argv is empty)", "exec_failed"));
  if (opts.user !== undefined && opts.user !== os.userInfo().username && opts.user !== String(os.userInfo().uid)) {
    return Promise.reject(new SandboxError(`the local backend cannot run commands as user '${opts.user}'`, "exec_failed"));
  }
  opts.signal?.throwIfAborted();
  const started = performance.now();
  const cap = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const stdout = cappedBuffer(cap);
  const stderr = cappedBuffer(cap);
  const cwd = opts.cwd ? path.resolve(workdir, opts.cwd) : workdir;

  return new Promise((resolve, reject) => {
    // detached: the command leads its own process group, so a timeout kills everything it started.
    const child = spawn(argv[0], argv.slice(1), {
      cwd,
      env: { ...baseEnv, ...opts.env, [MARKER]: baseEnv[MARKER] },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let timedOut = false;
    let exitCode: number | undefined;
    const timers: NodeJS.Timeout[] = [];
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // group already gone
      }
    };
    if (opts.timeoutSec && opts.timeoutSec > 0) {
      timers.push(
        setTimeout(() => {
          timedOut = true;
          killGroup("SIGTERM");
          timers.push(setTimeout(() => killGroup("SIGKILL"), KILL_AFTER_MS));
        }, opts.timeoutSec * 1000),
      );
    }
    const onAbort = () => {
      killGroup("SIGKILL");
      finish(opts.signal?.reason ?? new Error("exec aborted"));
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    let settled = false;
    function finish(error?: unknown) {
      if (settled) return;
      settled = true;
      timers.forEach(clearTimeout);
      opts.signal?.removeEventListener("abort", onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      if (error !== undefined) return reject(error);
      resolve({
        stdout: stdout.text(),
        stderr: stderr.text(),
        exitCode: timedOut ? 124 : exitCode ?? -1,
        timedOut,
        truncated: stdout.truncated || stderr.truncated,
        durationMs: Math.round(performance.now() - started),
      });
    }

    child.stdout!.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (err: NodeJS.ErrnoException) => {
      // Spawn failures look like a shell's: 127 for a missing command, 126 for one that cannot run.
      exitCode = err.code === "ENOENT" ? 127 : 126;
      const why = !existsSync(cwd) ? `cannot chdir to ${cwd}: no such directory` : err.code === "ENOENT" ? "command not found" : err.message;
      stderr.push(Buffer.from(`${argv[0]}: ${why}\n`));
      finish();
    });
    child.on("exit", (code, signal) => {
      exitCode = code ?? 128 + (signal ? os.constants.signals[signal] ?? 0 : 0);
      // Background children may keep the pipes open; give them a moment to flush, then stop reading.
      timers.push(setTimeout(() => finish(), PIPE_GRACE_MS));
    });
    child.on("close", () => finish());
  });
}

/**
 * SIGKILLs every process still carrying this sandbox's marker (Linux /proc; elsewhere a no-op). A process in
 * the middle of an exec shows an empty environ for a moment, so one scan can miss it: the scan repeats until
 * three rounds in a row find nothing (about 50 ms when nothing is left).
 */
async function killMarkedProcesses(id: string): Promise<void> {
  const needle = `${MARKER}=${id}\0`;
  let quiet = 0;
  for (let round = 0; round < 100 && quiet < 3; round++) {
    quiet = (await killMarkedOnce(needle)) === 0 ? quiet + 1 : 0;
    if (quiet < 3) await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function killMarkedOnce(needle: string): Promise<number> {
  const pids = await fs.readdir("/proc").catch(() => [] as string[]);
  let killed = 0;
  await Promise.all(
    pids
      .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
      .map(async (p) => {
        const environ = await fs.readFile(`/proc/${p}/environ`, "latin1").catch(() => "");
        if (!environ.includes(needle)) return;
        try {
          process.kill(Number(p), "SIGKILL");
          killed++;
        } catch {
          // exited meanwhile
        }
      }),
  );
  return killed;
}
