// Exec on a Daytona sandbox through the SDK's session API (see the header of daytona.ts for what the daemon
// does with a session command, and what is verified).
//
// Each exec takes an idle session of its sandbox (or creates one), starts one command there with runAsync,
// polls getSessionCommand until it has an exit code, then reads stdout and stderr separately with
// getSessionCommandLogs. The command is a small bash wrapper around the argv:
//   - the argv runs as a job under `set -m`, i.e. in its own process group (its pid, written to a file), with
//     cwd and env applied inside the job, stdin from /dev/null, and `timeout -k` when there is a limit;
//   - the job's two streams go to two files; once it has exited, the wrapper prints each file to its own stream,
//     the first `cap` bytes of it. A background child that keeps writing therefore never holds the answer, and
//     never reaches the daemon's log.
//   - so the daemon's line-based logging cannot change the output, every non-empty stream is printed with one
//     extra "\n" (the daemon appends one to an unterminated last line; this way there is none), which the host
//     strips; a stream cut at the cap ends with "\n" plus a trailer line naming the exec's nonce instead.
// Where this differs from the docker backend (from the daemon's sources, not observed): NUL bytes in the output
// are lost (the daemon reads lines with bash `read`), output that contains the daemon's stream prefixes
// (\x01\x01\x01, \x02\x02\x02) may be attributed to the wrong stream, and in an image without /usr/bin/timeout
// the host ends an overrunning command only KILL_AFTER_SEC + HOST_SLACK_SEC after its limit.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { oneLine, statusOf, type DaytonaSandboxLike } from "./sdk.js";
import { DEFAULT_MAX_OUTPUT_BYTES, decodeUtf8 } from "../bytes/execOutput.js";
import { SandboxError, type ExecOptions, type ExecResult } from "../types.js";
import { sleep } from "../../util/sleep.js";

/** `timeout -k`: grace between TERM and KILL, as in the docker backend. */
export const KILL_AFTER_SEC = 10;
/** The host gives up on a command this long after its in-sandbox deadline (and kills its process group). */
const HOST_SLACK_SEC = 15;
/** Longer wrapper scripts are uploaded as a file instead of going inline (Linux caps one argv string at 128 KiB). */
const INLINE_SCRIPT_MAX = 64 * 1024;
/** How long an aborted or overdue command may take to end after its process group was killed. */
const AFTER_KILL_WAIT_MS = 30_000;
/** A `direct` command's exit status file has been there this long without the daemon seeing the end: its wrapper is gone. */
const ORPHAN_GRACE_MS = 2_000;

export interface ExecTuning {
  /** First wait between polls of a running command; it grows by half each time up to `pollMaxMs`. */
  pollMs: number;
  pollMaxMs: number;
}

export const DEFAULT_TUNING: ExecTuning = { pollMs: 100, pollMaxMs: 1000 };

/** Single-quotes `s` for sh/bash: safe for any bytes but NUL. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const WRAPPER_FAILED = "tmax: cannot create";
const RECORDER = `"$@"; ec=$?; echo $ec >"$0"; exit $ec`;
const execDir = (nonce: string) => `/tmp/.tmax-exec-${nonce}`;
const cutTrailer = (nonce: string) => `__tmax_cut_${nonce}__`;

/** The bash wrapper that runs `argv` (see the header). Exit status: the command's; 127 when cwd is missing. */
export function execScript(argv: string[], o: { nonce: string; cwd: string; env?: Record<string, string>; timeoutSec?: number; cap: number; selfPath?: string; record?: boolean }): string {
  // record: the argv runs as the child of a small bash that writes its exit status to a file. A command that
  // kills every process but itself, its parent and PID 1 (the verifier's kill isolation) spares that recorder.
  // No `timeout` then: it would sit between the two and be killed with the rest (its child outlives it with
  // coreutils 9.1, tried; other versions not), so the host enforces the limit instead.
  const command = (o.record ? ["bash", "-c", RECORDER, `${execDir(o.nonce)}/rc`, ...argv] : argv).map(shellQuote).join(" ");
  const exports = Object.entries(o.env ?? {}).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  const run = o.timeoutSec && !o.record
    ? `if [ -x /usr/bin/timeout ]; then exec /usr/bin/timeout -k ${KILL_AFTER_SEC} ${o.timeoutSec} ${command}; else exec ${command}; fi` // absolute: never a timeout from the agent's PATH
    : `exec ${command}`;
  return [
    `d=${execDir(o.nonce)}`,
    `mkdir -p "$d" || { echo "${WRAPPER_FAILED} $d" >&2; exit 125; }`,
    `trap 'rm -rf "$d"${o.selfPath ? ` ${shellQuote(o.selfPath)}` : ""}' EXIT`,
    // The real stderr is kept on fd 3; bash's own notices (e.g. about a killed job) go nowhere.
    `exec 3>&2 2>/dev/null`,
    `set -m`,
    `(`,
    `cd -- ${shellQuote(o.cwd)} || exit 127`,
    ...exports,
    run,
    `) >"$d/o" 2>"$d/e" </dev/null 3>&- &`,
    `echo $! >"$d/pid"`,
    `wait $!`,
    `ec=$?`,
    `emit() { if [ "$(wc -c <"$1")" -gt ${o.cap} ]; then head -c ${o.cap} "$1"; printf '\\n%s\\n' ${cutTrailer(o.nonce)}; elif [ -s "$1" ]; then cat "$1"; printf '\\n'; fi; }`,
    `emit "$d/o"`,
    `emit "$d/e" >&3`,
    `exit $ec`,
  ].join("\n");
}

/** The session command for the wrapper: inline, or a script file uploaded before. Never `exec` (it would replace the session's shell). */
export function sessionCommand(script: { inline: string } | { file: string }): string {
  return "file" in script ? `bash ${shellQuote(script.file)}` : `bash -c ${shellQuote(script.inline)} tmax-exec`;
}

/**
 * One stream as the wrapper printed it (its first `cap` bytes), the extra newline or the cut trailer removed.
 * The daemon decoded those bytes: invalid ones and a character cut by the cap arrive as U+FFFD, as Python's
 * `bytes[:cap].decode(errors="replace")` gives them; the text is not cut again (a replacement character is
 * 3 bytes, so it may hold more bytes than the cap, never more characters).
 */
export function decodeStream(text: string | undefined, nonce: string): { text: string; truncated: boolean } {
  let s = text ?? "";
  const trailer = `\n${cutTrailer(nonce)}\n`;
  let truncated = false;
  if (s.endsWith(trailer)) {
    s = s.slice(0, -trailer.length);
    truncated = true;
  } else if (s.endsWith("\n")) {
    s = s.slice(0, -1);
  }
  return { text: s, truncated };
}

// ---------------------------------------------------------------------------------------------------------
// sessions

/**
 * The sessions of one sandbox. A session's shell runs its commands one after another, so an exec borrows an
 * idle session and a second exec at the same time gets a session of its own; usually there is just one.
 * All are deleted at close (the daemon then ends whatever they still run).
 */
export class SessionPool {
  private idle: string[] = [];
  private readonly all = new Set<string>();
  /** Sessions handed out before the last reset(): deleted instead of reused when they come back. */
  private stale = new Set<string>();
  private closed = false;

  constructor(private readonly remote: DaytonaSandboxLike) {}

  get size(): number {
    return this.all.size;
  }

  /** An idle session (fresh: false) or a new one. */
  async acquire(opts: { fresh?: boolean } = {}): Promise<{ id: string; fresh: boolean }> {
    if (this.closed) throw new SandboxError("the sandbox's sessions are closed", "exec_failed");
    const ready = opts.fresh ? undefined : this.idle.pop();
    if (ready) return { id: ready, fresh: false };
    const id = `tmax-${randomBytes(6).toString("hex")}`;
    this.all.add(id);
    try {
      await this.remote.process.createSession(id);
    } catch (err) {
      this.all.delete(id);
      throw err;
    }
    return { id, fresh: true };
  }

  release(id: string): void {
    if (!this.all.has(id)) return;
    if (this.closed || this.stale.has(id)) void this.discard(id);
    else this.idle.push(id);
  }

  /** Deletes a session whose command could not be seen to end, or whose shell is gone. */
  async discard(id: string): Promise<void> {
    this.all.delete(id);
    this.stale.delete(id);
    this.idle = this.idle.filter((s) => s !== id);
    await this.remote.process.deleteSession(id).catch(() => undefined);
  }

  /** After a command that may have killed every session's shell: none of today's sessions is used again. */
  async reset(): Promise<void> {
    const idle = this.idle;
    this.idle = [];
    for (const id of this.all) if (!idle.includes(id)) this.stale.add(id);
    await Promise.all(idle.map((id) => this.discard(id)));
  }

  async close(): Promise<void> {
    this.closed = true;
    const ids = [...this.all];
    this.idle = [];
    await Promise.all(ids.map((id) => this.discard(id)));
  }
}

/** A session command's state; the SDK can fail to parse a half-written exit code while it still runs. */
async function finished(remote: DaytonaSandboxLike, sessionId: string, cmdId: string): Promise<number | undefined> {
  try {
    const cmd = await remote.process.getSessionCommand(sessionId, cmdId);
    return typeof cmd.exitCode === "number" ? cmd.exitCode : undefined;
  } catch (err) {
    if (/exit code/i.test((err as Error)?.message ?? "")) return undefined;
    throw err;
  }
}

/**
 * Polls until the command has an exit code, or `until` (ms, performance.now) passes (undefined), or `signal`
 * aborts. With `orphaned`: "orphaned" once it has said yes for ORPHAN_GRACE_MS without the daemon seeing an end.
 */
async function waitForExit(
  remote: DaytonaSandboxLike,
  sessionId: string,
  cmdId: string,
  tuning: ExecTuning,
  o: { until?: number; signal?: AbortSignal; orphaned?: () => Promise<boolean> } = {},
): Promise<number | undefined | "orphaned"> {
  let delay = tuning.pollMs;
  let orphanSince: number | undefined;
  for (;;) {
    const code = await finished(remote, sessionId, cmdId);
    if (code !== undefined) return code;
    if (o.orphaned) {
      if (orphanSince !== undefined && performance.now() - orphanSince >= ORPHAN_GRACE_MS) return "orphaned";
      if (orphanSince === undefined && (await o.orphaned())) orphanSince = performance.now();
    }
    const left = o.until === undefined ? delay : Math.min(delay, o.until - performance.now());
    if (left <= 0) return undefined;
    await sleep(left, o.signal);
    delay = Math.min(tuning.pollMaxMs, Math.ceil(delay * 1.5));
  }
}

/**
 * Starts `command` with runAsync in an idle session, or in a new one when the idle one's shell is gone (a
 * command killed it: the daemon cannot write to it, 400, or has forgotten it, 404/410; the command did not
 * run then). Any other failure is final: whether the daemon took the command is unknown, so the session is
 * not used again. (A 429 was already waited out by resilientSandbox.)
 */
async function start(remote: DaytonaSandboxLike, pool: SessionPool, command: string, fresh = false): Promise<{ sessionId: string; cmdId: string }> {
  for (let tryFresh = fresh; ; tryFresh = true) {
    const { id, fresh: isNew } = await pool.acquire({ fresh: tryFresh });
    try {
      const { cmdId } = await remote.process.executeSessionCommand(id, { command, runAsync: true });
      return { sessionId: id, cmdId };
    } catch (err) {
      void pool.discard(id);
      const status = statusOf(err);
      if (isNew || !(status === 400 || status === 404 || status === 410)) throw err;
    }
  }
}

/** Runs a small helper script in a session and waits for it (bounded); true when it ended. */
async function runHelper(remote: DaytonaSandboxLike, pool: SessionPool, script: string, tuning: ExecTuning): Promise<boolean> {
  const { sessionId, cmdId } = await start(remote, pool, sessionCommand({ inline: script }));
  const code = await waitForExit(remote, sessionId, cmdId, tuning, { until: performance.now() + AFTER_KILL_WAIT_MS });
  if (code === undefined) await pool.discard(sessionId);
  else pool.release(sessionId);
  return code !== undefined;
}

/** SIGKILLs the process group of exec `nonce` from another session (the pid file may still be on its way). */
async function killGroup(remote: DaytonaSandboxLike, pool: SessionPool, nonce: string, tuning: ExecTuning): Promise<void> {
  const d = execDir(nonce);
  await runHelper(remote, pool, `for i in $(seq 50); do [ -s ${d}/pid ] && break; [ -d ${d} ] || [ $i -lt 20 ] || exit 0; sleep 0.1; done; p=$(cat ${d}/pid 2>/dev/null) && { kill -KILL -- -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; }; true`, tuning);
}

/**
 * After an abort or an overdue command: kills its group and waits for the command to end. Its exit code then,
 * with the session still the caller's to release; undefined when it did not end (the session is deleted).
 */
async function reap(remote: DaytonaSandboxLike, pool: SessionPool, sessionId: string, cmdId: string, nonce: string, tuning: ExecTuning): Promise<number | undefined> {
  try {
    await killGroup(remote, pool, nonce, tuning);
    const code = await waitForExit(remote, sessionId, cmdId, tuning, { until: performance.now() + AFTER_KILL_WAIT_MS });
    if (typeof code === "number") return code;
  } catch {
    // the session is deleted below
  }
  await pool.discard(sessionId);
  return undefined;
}

/** A file of the sandbox, or undefined when it is not there. */
async function fetchFile(remote: DaytonaSandboxLike, file: string): Promise<Buffer | undefined> {
  try {
    return Buffer.from(await remote.fs.downloadFile(file));
  } catch {
    return undefined;
  }
}

/** What a `direct` command whose wrapper was killed left behind: its exit code and output files. */
async function leftovers(remote: DaytonaSandboxLike, nonce: string, cap: number): Promise<{ exitCode: number; stdout: { text: string; truncated: boolean }; stderr: { text: string; truncated: boolean } } | undefined> {
  const d = execDir(nonce);
  const rc = (await fetchFile(remote, `${d}/rc`))?.toString().trim();
  if (!rc || !/^\d+$/.test(rc)) return undefined;
  const read = async (name: string) => {
    const bytes = (await fetchFile(remote, `${d}/${name}`)) ?? Buffer.alloc(0);
    if (bytes.length <= cap) return { text: decodeUtf8(bytes), truncated: false };
    return { text: decodeUtf8(bytes.subarray(0, cap)), truncated: true };
  };
  return { exitCode: Number(rc), stdout: await read("o"), stderr: await read("e") };
}

export interface ExecTarget {
  remote: DaytonaSandboxLike;
  pool: SessionPool;
  label: string;
  workdir: string;
  tuning: ExecTuning;
  /** Turns an SDK failure into a one-line SandboxError. */
  fail(err: unknown, what: string): SandboxError;
}

export async function execInSandbox(t: ExecTarget, argv: string[], opts: ExecOptions): Promise<ExecResult> {
  const { remote, pool, label, tuning } = t;
  if (argv.length === 0) throw new SandboxError("exec needs a command (argv is empty)", "exec_failed");
  if (argv.some((a) => a.includes("\0"))) throw new SandboxError("exec arguments cannot contain NUL bytes", "exec_failed");
  for (const key of Object.keys(opts.env ?? {})) {
    if (!ENV_NAME.test(key)) throw new SandboxError(`the daytona backend cannot set environment variable '${key}' (not a shell name)`, "exec_failed");
  }
  if (opts.user !== undefined && opts.user !== remote.user) {
    throw new SandboxError(`the daytona backend runs commands as the sandbox user${remote.user ? ` '${remote.user}'` : ""}; cannot run as '${opts.user}'`, "exec_failed");
  }
  opts.signal?.throwIfAborted();
  const started = performance.now();
  const cap = Math.max(0, Math.floor(opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES));
  const limitSec = opts.timeoutSec && opts.timeoutSec > 0 ? Math.ceil(opts.timeoutSec) : undefined;
  const nonce = randomBytes(8).toString("hex");
  const cwd = opts.cwd ? path.posix.resolve(t.workdir, opts.cwd) : t.workdir;
  const direct = opts.direct === true;
  const elapsed = () => Math.round(performance.now() - started);

  let script = execScript(argv, { nonce, cwd, env: opts.env, timeoutSec: limitSec, cap, record: direct });
  let command: string;
  if (script.length > INLINE_SCRIPT_MAX) {
    const file = `/tmp/.tmax-exec-${nonce}.sh`;
    script = execScript(argv, { nonce, cwd, env: opts.env, timeoutSec: limitSec, cap, record: direct, selfPath: file });
    try {
      await remote.fs.uploadFile(Buffer.from(script), file);
    } catch (err) {
      throw t.fail(err, `exec in ${label} failed (uploading the command)`);
    }
    command = sessionCommand({ file });
  } else {
    command = sessionCommand({ inline: script });
  }

  let sessionId: string;
  let cmdId: string;
  try {
    // a `direct` command may kill every process but PID 1 (the daemon): it gets a session of its own
    ({ sessionId, cmdId } = await start(remote, pool, command, direct));
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    throw t.fail(err, `exec in ${label} failed`);
  }

  // The in-sandbox `timeout -k` ends the command; the host stops waiting (and kills the group) only well after
  // that, or right at the limit for a `direct` command, which runs without `timeout`.
  const until = limitSec === undefined ? undefined : started + (direct ? limitSec : limitSec + KILL_AFTER_SEC + HOST_SLACK_SEC) * 1000;
  // A `direct` command that killed its own wrapper and session shell never gets an exit code from the daemon;
  // its recorder (see execScript) leaves one in a file.
  const orphaned = direct ? async () => (await fetchFile(remote, `${execDir(nonce)}/rc`)) !== undefined : undefined;
  let waited: number | undefined | "orphaned";
  try {
    waited = await abortable(waitForExit(remote, sessionId, cmdId, tuning, { until, signal: opts.signal, orphaned }), opts.signal);
  } catch (err) {
    void reap(remote, pool, sessionId, cmdId, nonce, tuning).then((code) => code !== undefined && pool.release(sessionId));
    if (direct) void pool.reset();
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    throw t.fail(err, `exec in ${label} failed (waiting for the command)`);
  }

  if (direct) {
    // whatever it killed, no session made before it is trusted again
    await pool.reset();
    // The wrapper removes its directory when it ends; a pid file still there means it was killed (the daemon
    // then reports how its shell saw the wrapper die, not the command): the recorder's file has the answer.
    const wrapperKilled = waited === "orphaned" || (typeof waited === "number" && (await fetchFile(remote, `${execDir(nonce)}/pid`)) !== undefined);
    if (wrapperKilled) {
      const rcFile = `${execDir(nonce)}/rc`;
      const deadline = Math.min(until ?? Infinity, performance.now() + AFTER_KILL_WAIT_MS);
      while ((await fetchFile(remote, rcFile)) === undefined && performance.now() < deadline) await sleep(tuning.pollMaxMs, opts.signal);
      const left = await leftovers(remote, nonce, cap);
      await pool.discard(sessionId);
      await runHelper(remote, pool, `rm -rf ${execDir(nonce)}`, tuning).catch(() => undefined);
      if (left) {
        const timedOut = limitSec !== undefined && (left.exitCode === 124 || (left.exitCode === 137 && elapsed() >= limitSec * 1000));
        return { stdout: left.stdout.text, stderr: left.stderr.text, exitCode: left.exitCode, timedOut, truncated: left.stdout.truncated || left.stderr.truncated, durationMs: elapsed() };
      }
      throw new SandboxError(`exec in ${label} failed: the command ended its own session and left no exit status`, "exec_failed");
    }
  }

  let overdue = false;
  let exitCode: number;
  if (typeof waited === "number") {
    exitCode = waited;
  } else {
    overdue = true;
    const code = await reap(remote, pool, sessionId, cmdId, nonce, tuning);
    if (code === undefined) return { stdout: "", stderr: "", exitCode: 124, timedOut: true, truncated: false, durationMs: elapsed() };
    exitCode = code;
  }

  let logs: { stdout?: string; stderr?: string };
  try {
    logs = await remote.process.getSessionCommandLogs(sessionId, cmdId);
  } catch (err) {
    pool.release(sessionId);
    throw t.fail(err, `exec in ${label} failed (reading the output)`);
  }
  pool.release(sessionId);
  if ((exitCode === 125 && logs.stderr?.startsWith(WRAPPER_FAILED)) || (exitCode === 127 && !logs.stdout && /^(\S*\/)?sh: (\d+: )?bash: not found/.test(logs.stderr ?? ""))) {
    throw new SandboxError(`exec in ${label} failed: the sandbox could not run tmax's exec wrapper (needs bash and a writable /tmp): ${brief(logs.stderr ?? "")}`, "exec_failed");
  }
  const stdout = decodeStream(logs.stdout, nonce);
  const stderr = decodeStream(logs.stderr, nonce);
  const timedOut = overdue || (limitSec !== undefined && (exitCode === 124 || (exitCode === 137 && elapsed() >= limitSec * 1000)));
  return {
    stdout: stdout.text,
    stderr: stderr.text,
    exitCode: overdue ? 124 : exitCode,
    timedOut,
    truncated: stdout.truncated || stderr.truncated,
    durationMs: elapsed(),
  };
}

/** `work`, unless `signal` aborts first (then the abort reason; `work` goes on unobserved). */
function abortable<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  work.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** For messages: the first part of a stream, on one line. */
export function brief(text: string): string {
  return oneLine(text).slice(0, 300);
}
